package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// PeerState is what the handshakes of one outbound link showed.
type PeerState struct {
	// Subject and NotAfter describe the server certificate of the last
	// successful handshake (zero before one).
	Subject  string
	NotAfter time.Time
	// Problem is the last certificate problem in plain words, or "" when
	// the last handshake that got as far as the certificates succeeded.
	Problem string
}

// Peer follows the handshakes of one outbound link. Certificate problems
// (unknown authority, wrong name, expired, not TLS at all) are logged once
// per change, in plain words; a handshake that succeeds after one is logged
// too. It is safe for concurrent use; a nil *Peer ignores everything.
type Peer struct {
	log *slog.Logger

	mu sync.Mutex
	st PeerState
}

// NewPeer returns a Peer logging to log (nil discards).
func NewPeer(log *slog.Logger) *Peer { return &Peer{log: orDiscard(log)} }

// State returns what the last handshakes showed.
func (p *Peer) State() PeerState {
	if p == nil {
		return PeerState{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// CertificateError is a handshake that failed on a certificate, explained
// in plain words; the handshake's own error is its Err.
type CertificateError struct {
	Problem string
	Err     error
}

func (e *CertificateError) Error() string { return e.Problem }
func (e *CertificateError) Unwrap() error { return e.Err }

// observe records one handshake with server: cs after a success, else err,
// which it returns as a *CertificateError when it is about certificates.
// roots names the trusted CAs for the explanation.
func (p *Peer) observe(server, roots string, cs *tls.ConnectionState, err error) error {
	if err != nil {
		problem := explain(err, server, roots)
		if problem == "" {
			return err // not about certificates: refused, timed out
		}
		if p != nil {
			p.mu.Lock()
			if problem != p.st.Problem {
				p.st.Problem = problem
				p.log.Error("TLS certificate problem; retrying", "peer", server, "cause", problem)
			}
			p.mu.Unlock()
		}
		return &CertificateError{Problem: problem, Err: err}
	}
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	if p.st.Problem != "" {
		p.log.Info("TLS certificate problem resolved", "peer", server, "subject", leaf.Subject.String(),
			"expires", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	p.st = PeerState{Subject: leaf.Subject.String(), NotAfter: leaf.NotAfter}
	return nil
}

// explain says in plain words what is wrong with the certificate a failed
// client handshake with server met, or returns "" when err is not about
// certificates. roots names the CAs the client trusts.
func explain(err error, server, roots string) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown):
		issuer := "unknown"
		if unknown.Cert != nil {
			issuer = unknown.Cert.Issuer.String()
		}
		return fmt.Sprintf("the certificate of %s is signed by an authority that %s does not include (issuer %q)", server, roots, issuer)
	case errors.As(err, &hostname):
		return fmt.Sprintf("the certificate of %s is not valid for the name %s; it names %s", server, hostname.Host, certNames(hostname.Certificate))
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil:
		if time.Now().After(invalid.Cert.NotAfter) {
			return fmt.Sprintf("the certificate of %s expired on %s", server, invalid.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
		return fmt.Sprintf("the certificate of %s is not valid before %s (is this host's clock right?)", server, invalid.Cert.NotBefore.UTC().Format(time.RFC3339))
	case errors.As(err, &invalid):
		return fmt.Sprintf("the certificate of %s cannot be used: %s", server, oneLine(invalid.Error()))
	case errors.As(err, &record):
		return fmt.Sprintf("%s does not speak TLS (a plaintext server needs an http:// URL)", server)
	case strings.Contains(err.Error(), "remote error: tls: "):
		_, alert, _ := strings.Cut(err.Error(), "remote error: tls: ")
		return fmt.Sprintf("%s refused the handshake (%s): if it requires a client certificate, configure one its CA signed", server, oneLine(alert))
	}
	return ""
}

// certNames lists the names a certificate is valid for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "nothing"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "no name (no subject alternative names)"
	}
	return strings.Join(names, ", ")
}
