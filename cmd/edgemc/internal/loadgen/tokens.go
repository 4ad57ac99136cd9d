package loadgen

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/edgemc/edgemc/gc/devgc"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
)

// Tokens mints the join token of one session.
type Tokens interface {
	// JoinToken returns a token for user sub in meetingID, with the host
	// role when host is true.
	JoinToken(ctx context.Context, sub, meetingID string, host bool) (string, error)
}

// KeyTokens mints tokens locally with an Ed25519 private key that the
// appliance trusts (its --jwt-public-key, or a key its JWKS serves).
type KeyTokens struct{ iss *devissuer.Issuer }

// ParsePrivateKeyPEM decodes a PKCS#8 ("PRIVATE KEY") PEM block holding an
// Ed25519 private key.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("loadgen: no PEM block found")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("loadgen: PEM block is %q, want \"PRIVATE KEY\"", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("loadgen: parsing private key: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("loadgen: private key is %T, want Ed25519", key)
	}
	return priv, nil
}

// MarshalPrivateKeyPEM encodes priv as a PKCS#8 PEM block, the form
// ParsePrivateKeyPEM reads.
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("loadgen: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewKeyTokens signs tokens with priv under kid.
func NewKeyTokens(priv ed25519.PrivateKey, kid string) *KeyTokens {
	return &KeyTokens{iss: devissuer.NewIssuerFromKey(kid, priv)}
}

// JoinToken mints a meeting token.
func (k *KeyTokens) JoinToken(_ context.Context, sub, meetingID string, host bool) (string, error) {
	role := "participant"
	if host {
		role = "host"
	}
	return k.iss.MeetingToken(sub, meetingID, devissuer.WithRole(role)), nil
}

// Assigner returns a Config.Assign that creates meetings on the appliance
// whose gRPC listener is addr (host:port, loopback only), as the Global
// Controller would, with a service token signed by the same key.
func (k *KeyTokens) Assigner(addr string) (func(ctx context.Context, meetingID string) error, error) {
	if err := checkLoopbackHost(addr); err != nil {
		return nil, err
	}
	return func(ctx context.Context, meetingID string) error {
		token := k.iss.ServiceToken("edgemc-loadgen", "global-controller")
		resp, err := devgc.Assign(ctx, addr, token, &internalpb.AssignMeetingWithMhRequest{MeetingId: meetingID, RequestingGcId: "edgemc-loadgen"})
		if err != nil {
			return err
		}
		if !resp.GetAccepted() {
			return fmt.Errorf("loadgen: meeting %s not assigned: %s", meetingID, resp.GetRejectionReason())
		}
		return nil
	}, nil
}

// LabTokens asks an `edgemc lab` for tokens: its development issuer answers
// /lab/api/join-info on the status listener, for the demo meeting only.
type LabTokens struct {
	base   string // e.g. http://127.0.0.1:8081
	bearer string // the status token, when the appliance has one
	client *http.Client
}

// LabJoinInfo is the lab's answer: where and how to join the demo meeting.
type LabJoinInfo struct {
	URL        string `json:"url"`
	CertSHA256 string `json:"cert_sha256"`
	MeetingID  string `json:"meeting_id"`
	Token      string `json:"token"`
}

// NewLabTokens uses the lab appliance whose status page is at base
// (loopback only). statusToken may be empty.
func NewLabTokens(base, statusToken string) (*LabTokens, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("loadgen: lab URL %q is not an http(s) URL", base)
	}
	if err := checkLoopbackHost(u.Host); err != nil {
		return nil, err
	}
	return &LabTokens{base: u.Scheme + "://" + u.Host, bearer: statusToken, client: &http.Client{Timeout: 10 * time.Second}}, nil
}

// labNotReadyTries bounds how often Info asks a lab whose demo meeting is
// not ready yet (each answer comes after the lab waited some seconds).
const labNotReadyTries = 10

// Info fetches one join: the URL, certificate hash, meeting and a token.
// While the lab's demo meeting is not ready yet (503) it asks again.
func (l *LabTokens) Info(ctx context.Context, host bool, name string) (LabJoinInfo, error) {
	role := "participant"
	if host {
		role = "host"
	}
	q := url.Values{"role": {role}, "name": {name}}
	for try := 1; ; try++ {
		info, notReady, err := l.info(ctx, q)
		if !notReady || try == labNotReadyTries {
			return info, err
		}
		t := time.NewTimer(time.Second) // the lab's Retry-After
		select {
		case <-ctx.Done():
			t.Stop()
			return LabJoinInfo{}, fmt.Errorf("loadgen: lab join info: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// info asks once; notReady reports a 503 (the demo meeting not held yet).
func (l *LabTokens) info(ctx context.Context, q url.Values) (_ LabJoinInfo, notReady bool, _ error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.base+"/lab/api/join-info?"+q.Encode(), nil)
	if err != nil {
		return LabJoinInfo{}, false, err
	}
	if l.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+l.bearer)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return LabJoinInfo{}, false, fmt.Errorf("loadgen: lab join info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return LabJoinInfo{}, resp.StatusCode == http.StatusServiceUnavailable, fmt.Errorf("loadgen: lab join info: HTTP %d", resp.StatusCode)
	}
	info, err := DecodeLabJoinInfo(io.LimitReader(resp.Body, 64<<10))
	return info, false, err
}

// DecodeLabJoinInfo decodes and checks a join-info answer.
func DecodeLabJoinInfo(r io.Reader) (LabJoinInfo, error) {
	var info LabJoinInfo
	if err := json.NewDecoder(r).Decode(&info); err != nil {
		return LabJoinInfo{}, fmt.Errorf("loadgen: lab join info: %w", err)
	}
	if h, err := hex.DecodeString(info.CertSHA256); err != nil || len(h) != 32 {
		return LabJoinInfo{}, errors.New("loadgen: lab join info: cert_sha256 is not a hex SHA-256")
	}
	if info.URL == "" || info.MeetingID == "" || info.Token == "" {
		return LabJoinInfo{}, errors.New("loadgen: lab join info: url, meeting_id or token missing")
	}
	return info, nil
}

// JoinToken fetches a fresh token from the lab issuer. The lab chooses the
// user, so sub is only used as the display name, and only its demo meeting
// exists.
func (l *LabTokens) JoinToken(ctx context.Context, sub, meetingID string, host bool) (string, error) {
	info, err := l.Info(ctx, host, sub)
	if err != nil {
		return "", err
	}
	if info.MeetingID != meetingID {
		return "", fmt.Errorf("loadgen: the lab issues tokens for meeting %q only", info.MeetingID)
	}
	return info.Token, nil
}
