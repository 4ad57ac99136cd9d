// Package webtest starts headless Chromium for edgemc's browser tests.
//
// Chromium's WebTransport needs no extra flag in headless mode: pages pin
// edgemc's self-signed certificate with serverCertificateHashes, which
// Chromium accepts for an ECDSA certificate valid for at most 14 days. The
// flags only make Chromium start quietly as root in a container:
// --no-sandbox (root), --disable-gpu, --disable-dev-shm-usage (small
// /dev/shm), no first run, background networking, component updates or
// sync, and a fresh --user-data-dir per test.
package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is Debian's chromium.
const ChromiumPath = "/usr/bin/chromium"

// NewBrowser starts headless Chromium for the test and returns the chromedp
// context of its first tab. It skips the test when Chromium is not
// installed; the browser stops when the test ends.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found (install Debian's chromium package to run it)", ChromiumPath)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(ChromiumPath),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// NewTab opens another tab in the browser of ctx.
func NewTab(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return tab
}

// Visible is a JavaScript expression that is true when the first element
// matching the CSS selector is shown to a person: it exists, takes up room
// on the page (neither it nor an ancestor is display:none, whatever the
// hidden attribute says), and is neither visibility:hidden nor transparent.
// Tests assert it rather than attributes such as hidden.
func Visible(selector string) string {
	return fmt.Sprintf(`((e) => !!e && e.checkVisibility({visibilityProperty: true, opacityProperty: true}) &&
		e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0)(document.querySelector(%s))`, jsString(selector))
}

// Shown is Visible for each selector, joined with &&; NotShown is true
// when none of them is visible.
func Shown(selectors ...string) string {
	parts := make([]string, len(selectors))
	for i, s := range selectors {
		parts[i] = Visible(s)
	}
	return "(" + strings.Join(parts, " && ") + ")"
}

// NotShown is true when none of the selectors matches a visible element.
func NotShown(selectors ...string) string {
	parts := make([]string, len(selectors))
	for i, s := range selectors {
		parts[i] = "!" + Visible(s)
	}
	return "(" + strings.Join(parts, " && ") + ")"
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
