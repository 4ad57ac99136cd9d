package web

import (
	"strings"
	"testing"
)

// TestFavicon checks that every page names its icon and that the icon is
// served there and at /favicon.ico, without the status token (browsers
// fetch icons before any sign-in).
func TestFavicon(t *testing.T) {
	srv := newServer(t, Options{StatusToken: statusToken, Lab: &fakeLab{}}, &fakeSource{s: sampleStatus()})
	for _, page := range []string{"index.html", "lab.html", "login.html"} {
		body, err := assetFS.ReadFile("assets/" + page)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), `<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">`) {
			t.Errorf("%s names no icon", page)
		}
	}
	for _, path := range []string{"/assets/favicon.svg", "/favicon.ico"} {
		resp, body := get(t, srv.URL+path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(body, "<svg") {
			t.Errorf("GET %s: %d %s %.40q", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}
