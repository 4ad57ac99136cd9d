package tlsfiles

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc/credentials"
)

// ClientFiles names the PEM files of the trust of outbound calls.
type ClientFiles struct {
	// CAFile is the bundle of CAs whose certificates servers may present;
	// empty trusts the system roots.
	CAFile string
	// CertFile and KeyFile, when set, are the client certificate presented
	// to servers that ask for one (mutual TLS).
	CertFile, KeyFile string
}

// ClientTrust is the trust of outbound TLS connections: which server
// certificates are accepted, and which client certificate is shown. Every
// connection reads the current files. A nil *ClientTrust trusts the system
// roots and has no client certificate.
type ClientTrust struct {
	roots *Pool    // nil: the system roots
	cert  *KeyPair // nil: no client certificate
}

// NewClientTrust reads the files; any that cannot be used is a *FileError.
// log receives reload errors (nil discards).
func NewClientTrust(files ClientFiles, log *slog.Logger) (*ClientTrust, error) {
	t := &ClientTrust{}
	var err error
	if files.CAFile != "" {
		if t.roots, err = LoadPool(files.CAFile, log); err != nil {
			return nil, err
		}
	}
	if files.CertFile != "" || files.KeyFile != "" {
		if t.cert, err = LoadKeyPair(files.CertFile, files.KeyFile, log); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Config is the configuration of one new connection (TLS 1.2 at least),
// from the files as they are now. The caller sets ServerName (gRPC's and
// HTTP's own dialers do). Build one per connection: the CA bundle is read
// when Config is called.
func (t *ClientTrust) Config() *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if t == nil {
		return c
	}
	if t.roots != nil {
		c.RootCAs = t.roots.CertPool()
	}
	if t.cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return t.cert.Certificate(), nil
		}
	}
	return c
}

// MutualTLS reports whether a client certificate is configured.
func (t *ClientTrust) MutualTLS() bool { return t != nil && t.cert != nil }

// roots names the trusted CAs for messages.
func (t *ClientTrust) rootsName() string {
	if t == nil || t.roots == nil {
		return "the system roots"
	}
	return "the CA bundle " + t.roots.File()
}

// Credentials are gRPC transport credentials (grpc.WithTransportCredentials)
// that build a fresh Config for every connection, so a changed CA bundle or
// client certificate is used from the next connection on. Each handshake is
// reported to p (which may be nil); a certificate problem fails it with a
// *CertificateError, which says what is wrong in plain words.
func (t *ClientTrust) Credentials(p *Peer) credentials.TransportCredentials {
	return clientCreds{t: t, p: p}
}

type clientCreds struct {
	t *ClientTrust
	p *Peer
}

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := credentials.NewTLS(c.t.Config()).ClientHandshake(ctx, authority, raw)
	var cs *tls.ConnectionState
	if ti, ok := info.(credentials.TLSInfo); ok && err == nil {
		cs = &ti.State
	}
	return conn, info, c.p.observe(authority, c.t.rootsName(), cs, err)
}

func (clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsfiles: client credentials cannot accept connections")
}

func (clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}

func (c clientCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is deprecated in gRPC and does nothing here: the
// server name is the host of the dialled address.
func (clientCreds) OverrideServerName(string) error { return nil }

// HTTPTransport is an HTTP transport whose TLS connections use a fresh
// Config each, reported to p (which may be nil). It never uses a proxy: the
// control plane is reached directly.
func (t *ClientTrust) HTTPTransport(p *Peer) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext: d.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			cfg := t.Config()
			if cfg.ServerName, _, err = net.SplitHostPort(addr); err != nil {
				cfg.ServerName = addr
			}
			conn := tls.Client(raw, cfg)
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := conn.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, p.observe(addr, t.rootsName(), nil, err)
			}
			cs := conn.ConnectionState()
			return conn, p.observe(addr, t.rootsName(), &cs, nil)
		},
		MaxIdleConns:    4,
		IdleConnTimeout: 90 * time.Second,
	}
}
