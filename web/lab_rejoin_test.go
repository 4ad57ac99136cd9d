package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rejoinLab is a fakeLab that can also rejoin the subjects it issued.
type rejoinLab struct{ fakeLab }

func (l *rejoinLab) RejoinInfo(ctx context.Context, role, name, sub string) (LabJoin, error) {
	if !strings.HasPrefix(sub, "lab-user-") {
		return LabJoin{}, ErrLabSubject
	}
	j, err := l.JoinInfo(ctx, role, name)
	j.Subject, j.ReconnectWindow = sub, 90*time.Second
	return j, err
}

func TestLabRejoinInfo(t *testing.T) {
	srv := httptest.NewServer(NewHandler(Options{Lab: &rejoinLab{}}, &fakeSource{s: sampleStatus()}))
	t.Cleanup(srv.Close)
	resp, body := get(t, srv.URL+"/lab/api/join-info?role=host&name=Ada&sub=lab-user-42", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rejoin: %d %s", resp.StatusCode, body)
	}
	m := decodeJSON(t, body)
	if m["sub"] != "lab-user-42" || m["reconnect_window_ms"] != float64(90000) || m["token"] != labToken {
		t.Fatalf("rejoin answer %v", m)
	}
	for _, q := range []string{"sub=someone-else", "sub=" + strings.Repeat("a", 129), "sub=a%20b"} {
		if resp, _ := get(t, srv.URL+"/lab/api/join-info?role=host&name=Ada&"+q, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
		}
	}

	// A lab that cannot rejoin refuses a sub.
	plain := httptest.NewServer(NewHandler(Options{Lab: &fakeLab{}}, &fakeSource{s: sampleStatus()}))
	t.Cleanup(plain.Close)
	if resp, _ := get(t, plain.URL+"/lab/api/join-info?role=host&name=Ada&sub=lab-user-42", nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("sub on a lab without rejoin: %d", resp.StatusCode)
	}
}
