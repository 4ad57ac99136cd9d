package main

// Headless Chromium for the browser tests, driven with chromedp.
//
// Flags: Chromium's WebTransport needs no extra flag in headless mode. The
// lab page pins edgemc's self-signed certificate with
// serverCertificateHashes, which Chromium accepts for an ECDSA certificate
// valid for at most 14 days (edgemc makes 13-day ones), so neither
// --ignore-certificate-errors nor --origin-to-force-quic-on is used. The
// flags below only make Chromium start quietly as root in a container:
// --no-sandbox (root), --disable-gpu, --disable-dev-shm-usage (small
// /dev/shm), no first-run, background networking, component updates or
// sync, and a fresh --user-data-dir per test.

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

// browserWait bounds each browser step; the whole lab test takes seconds.
const browserWait = 15 * time.Second

// newBrowser starts headless Chromium for the test and returns the chromedp
// context of its first tab; newTab opens more. It skips the test when
// Chromium is not installed.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("browser test skipped: %s not found (install Debian's chromium package to run it)", chromiumPath)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
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

// newTab opens another tab in the browser of ctx.
func newTab(t *testing.T, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("open tab: %v", err)
	}
	return tab
}

// browse runs steps in a tab with a deadline derived from the tab's context
// (a deadline on the tab's own context would close it).
func browse(t *testing.T, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// jsEval evaluates a JavaScript expression in a tab into T.
func jsEval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

// waitJS polls a JavaScript predicate in a tab until it is truthy. On a
// timeout it fails the test with what describe (a JavaScript expression)
// says about the page.
func waitJS(t *testing.T, tab context.Context, what, predicate, describe string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserWait)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(browserWait-time.Second)))
	if err != nil {
		t.Fatalf("waiting for %s: %v; page: %s", what, err, jsEval[string](t, tab, describe))
	}
}

// artifactDir is where screenshots go: $EDGEMC_ARTIFACTS, else a temp dir.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDGEMC_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves a full-page PNG of a tab as dir/name.
func screenshot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}
