package appliance

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/edgemc/edgemc/webtransport"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// ClientJoinOptions are the inputs of `edgemc client join`.
type ClientJoinOptions struct {
	URL, MeetingID, Token, Name string
	// CertHash is the hex SHA-256 of the server certificate to trust
	// (as browsers do with serverCertificateHashes).
	CertHash string
	// Insecure skips certificate verification (lab use only).
	Insecure bool
	// CorrelationID and BindingToken reconnect to an earlier session.
	CorrelationID, BindingToken string
	Timeout                     time.Duration
}

// ClientJoin joins a meeting as a participant and writes every server
// message to w as one JSON line, until the server closes the session or ctx
// ends. It is a small signaling client for operators and tests.
func ClientJoin(ctx context.Context, w io.Writer, o ClientJoinOptions) error {
	dial := webtransport.DialOptions{InsecureSkipVerify: o.Insecure, Timeout: o.Timeout}
	if o.CertHash != "" {
		h, err := hex.DecodeString(o.CertHash)
		if err != nil || len(h) != 32 {
			return fmt.Errorf("--cert-hash must be 64 hex digits (a SHA-256)")
		}
		dial.CertHashes = [][32]byte{[32]byte(h)}
	}
	conn, err := webtransport.Dial(ctx, o.URL, dial)
	if err != nil {
		return fmt.Errorf("connect %s: %w", o.URL, err)
	}
	defer conn.Close()
	err = conn.Send(&pb.ClientMessage{Message: &pb.ClientMessage_JoinRequest{JoinRequest: &pb.JoinRequest{
		MeetingId: o.MeetingID, JoinToken: o.Token, ParticipantName: o.Name,
		CorrelationId: o.CorrelationID, BindingToken: o.BindingToken,
	}}})
	if err != nil {
		return fmt.Errorf("send join request: %w", err)
	}
	for {
		msg, err := conn.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var closed *webtransport.SessionClosedError
			if errors.As(err, &closed) {
				fmt.Fprintf(w, "{\"closed\":{\"code\":%d,\"reason\":%q}}\n", closed.Code, closed.Reason)
				return nil
			}
			return err
		}
		line, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
		fmt.Fprintf(w, "%s\n", line)
	}
}

// CertHash returns the hex SHA-256 and expiry of the certificate edgemc
// serves WebTransport with (creating the self-signed one if needed).
func CertHash(cfg Config) (string, time.Time, error) {
	var (
		m   *webtransport.CertManager
		err error
	)
	if cfg.TLSCert != "" {
		m, err = webtransport.NewFileCertManager(cfg.TLSCert, cfg.TLSKey)
	} else {
		m, err = webtransport.NewSelfSignedManager(cfg.DataDir, nil)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	c := m.Current()
	return c.HashHex(), c.NotAfter, nil
}
