package devac

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
)

func TestTokenEndpoint(t *testing.T) {
	srv := httptest.NewServer(Handler(Config{Issuer: devissuer.NewIssuer(), ClientID: "mc", Secret: "pw", TTL: time.Minute}))
	t.Cleanup(srv.Close)
	post := func(body string, basic bool) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+TokenPath, strings.NewReader(body))
		if basic {
			req.SetBasicAuth("mc", "pw")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for name, tc := range map[string]struct {
		body  string
		basic bool
		code  int
	}{
		"json credentials":  {`{"grant_type":"client_credentials","client_id":"mc","client_secret":"pw"}`, false, 200},
		"basic credentials": {`{"grant_type":"client_credentials"}`, true, 200},
		"wrong secret":      {`{"grant_type":"client_credentials","client_id":"mc","client_secret":"no"}`, false, 401},
		"bad grant_type":    {`{"grant_type":"password","client_id":"mc","client_secret":"pw"}`, false, 400},
		"not JSON":          {`grant_type=client_credentials`, true, 400},
	} {
		code, m := post(tc.body, tc.basic)
		if code != tc.code {
			t.Errorf("%s: HTTP %d, want %d (%v)", name, code, tc.code, m)
			continue
		}
		if code == 200 && (m["token_type"] != "Bearer" || m["expires_in"] != float64(60) || m["scope"] != Scopes || m["access_token"] == "") {
			t.Errorf("%s: answer %v", name, m)
		}
	}
}
