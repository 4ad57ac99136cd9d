package web

import (
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Lab roles accepted by the demo.
const (
	RoleHost        = "host"
	RoleParticipant = "participant"
)

// MaxNameBytes is the longest display name the signaling protocol accepts.
const MaxNameBytes = 256

// Lab is optional (nil outside lab mode): the demo page asks the server for
// what it needs to join.
type Lab interface {
	// JoinInfo returns the WebTransport URL, the certificate's SHA-256
	// (raw bytes), the meeting id and a freshly minted join token for role
	// ("host"|"participant") and display name. It hands out no token for a
	// meeting that is not held: it waits for the demo meeting until ctx
	// ends, then returns an error wrapping ErrLabNotReady.
	JoinInfo(ctx context.Context, role, name string) (LabJoin, error)
}

// ErrLabNotReady means the lab's demo meeting is not held yet; join-info
// answers 503 with Retry-After, and the demo page retries.
var ErrLabNotReady = errors.New("the demo meeting is not ready yet")

// labJoinWait bounds how long join-info waits for the demo meeting before
// answering 503: well within the 10 s a client is likely to wait.
const labJoinWait = 5 * time.Second

// ErrLabSubject is returned by RejoinInfo for a subject the lab did not
// issue; the page gets 400.
var ErrLabSubject = errors.New("lab: not a subject of this lab")

// LabRejoin is implemented by a Lab whose demo page can come back as the
// same participant after a restart: it mints a fresh join token for the
// subject the page had (the page reconnects with its binding).
type LabRejoin interface {
	RejoinInfo(ctx context.Context, role, name, sub string) (LabJoin, error)
}

// LabJoin is what the demo page needs to join the demo meeting.
type LabJoin struct {
	URL        string
	CertSHA256 []byte
	MeetingID  string
	Token      string
	// Subject is the token's sub, which a rejoin asks for again.
	Subject string
	// ReconnectWindow is how long the page keeps trying to reconnect after
	// a RedirectToMc (the appliance's drain timeout and disconnect grace).
	ReconnectWindow time.Duration
}

// joinInfoBody is the JSON answer of /lab/api/join-info.
type joinInfoBody struct {
	URL        string `json:"url"`
	CertSHA256 string `json:"cert_sha256"` // hex
	MeetingID  string `json:"meeting_id"`
	Token      string `json:"token"`
	Role       string `json:"role"`
	Name       string `json:"name"`
	Sub        string `json:"sub,omitempty"`
	// ReconnectWindowMS is LabJoin.ReconnectWindow in milliseconds.
	ReconnectWindowMS int64 `json:"reconnect_window_ms,omitempty"`
}

// maxLabSubject bounds the sub of a rejoin.
const maxLabSubject = 128

// validLabSubject: 1 to 128 bytes of letters, digits, '.', '_', ':' and '-'.
func validLabSubject(sub string) bool {
	if sub == "" || len(sub) > maxLabSubject {
		return false
	}
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// errBadJoinQuery is returned by parseJoinQuery for an unusable role or name.
var errBadJoinQuery = errors.New("bad join-info query")

// parseJoinQuery validates the role and display name of a join-info request.
func parseJoinQuery(role, name string) (string, string, error) {
	if role != RoleHost && role != RoleParticipant {
		return "", "", errBadJoinQuery
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > MaxNameBytes || !utf8.ValidString(name) {
		return "", "", errBadJoinQuery
	}
	return role, name, nil
}

func (h *handler) joinInfo(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	role, name, err := parseJoinQuery(q.Get("role"), q.Get("name"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "role must be host or participant; name must be 1 to 256 bytes of UTF-8")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), labJoinWait)
	defer cancel()
	var j LabJoin
	if sub := q.Get("sub"); sub != "" {
		rl, ok := h.lab.(LabRejoin)
		if !ok || !validLabSubject(sub) {
			writeError(w, http.StatusBadRequest, "sub must be a subject this lab issued")
			return
		}
		j, err = rl.RejoinInfo(ctx, role, name, sub)
	} else {
		j, err = h.lab.JoinInfo(ctx, role, name)
	}
	if errors.Is(err, ErrLabSubject) {
		writeError(w, http.StatusBadRequest, "sub must be a subject this lab issued")
		return
	}
	if errors.Is(err, ErrLabNotReady) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "the demo meeting is not ready yet; try again in a moment")
		return
	}
	if err != nil {
		h.log.Error("lab join info", "role", role, "err", err)
		writeError(w, http.StatusInternalServerError, "could not prepare a join")
		return
	}
	writeJSON(w, http.StatusOK, joinInfoBody{
		URL:               j.URL,
		CertSHA256:        hex.EncodeToString(j.CertSHA256),
		MeetingID:         j.MeetingID,
		Token:             j.Token,
		Role:              role,
		Name:              name,
		Sub:               j.Subject,
		ReconnectWindowMS: j.ReconnectWindow.Milliseconds(),
	})
}
