package webtransport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	wt "github.com/quic-go/webtransport-go"

	"github.com/edgemc/edgemc/webtransport/signalingpb"
)

// maxHashedCertValidity is the longest validity browsers accept for a
// certificate pinned with serverCertificateHashes.
const maxHashedCertValidity = 14 * 24 * time.Hour

// closeWait bounds how long Recv waits, after the server ended the stream,
// for the session close that carries the code and reason.
const closeWait = 5 * time.Second

// ErrCertHashMismatch reports a server certificate that matches none of
// DialOptions.CertHashes, or that browsers would refuse to pin.
var ErrCertHashMismatch = errors.New("webtransport: server certificate does not match a pinned hash")

// SessionClosedError is returned by ClientConn.Recv when the server closed
// the session; Code and Reason are the ones it closed with.
type SessionClosedError struct {
	Code   uint32
	Reason string
}

func (e *SessionClosedError) Error() string {
	return fmt.Sprintf("webtransport: session closed by server: code %d: %s", e.Code, e.Reason)
}

// DialOptions says how Dial verifies the server. With CertHashes it behaves
// like a browser using serverCertificateHashes: the leaf's SHA-256 must match
// one hash and the certificate must be valid now, for at most 14 days.
// Otherwise RootCAs (or the system roots) verify the chain and name, unless
// InsecureSkipVerify.
type DialOptions struct {
	CertHashes         [][32]byte
	InsecureSkipVerify bool
	RootCAs            *x509.CertPool
	Timeout            time.Duration // bounds Dial; 0 = only ctx
	// SessionCache keeps TLS session tickets, so that a later Dial with the
	// same cache resumes the session (no certificate exchange); nil makes
	// every Dial a full handshake.
	SessionCache tls.ClientSessionCache
	// LocalAddr is the UDP address to send from; nil picks any.
	LocalAddr *net.UDPAddr
}

// ClientConn is a client's signaling session: one WebTransport session on
// its own QUIC connection and UDP socket, with one bidirectional stream.
// Send may be called concurrently with Recv; Recv calls must not overlap.
type ClientConn struct {
	udp   *net.UDPConn
	tr    *quic.Transport
	qconn *quic.Conn
	sess  *wt.Session
	str   *wt.Stream

	wmu  sync.Mutex
	wbuf []byte
	rbuf []byte
}

// Dial opens a WebTransport session to url (https://host:port/any/path) and
// its one bidirectional stream.
func Dial(ctx context.Context, url string, opts DialOptions) (*ClientConn, error) {
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	tlsConf, err := clientTLSConfig(url, opts)
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", opts.LocalAddr)
	if err != nil {
		return nil, fmt.Errorf("webtransport: dial: %w", err)
	}
	c := &ClientConn{udp: udp, tr: &quic.Transport{Conn: udp}}
	// Like a browser: a 30 s idle timeout and a PING after 15 s of silence
	// (Chromium's PING timeout), which quic-go shortens to half of a
	// shorter idle timeout the server asks for.
	qconf := SignalingQUICConfig(30 * time.Second)
	qconf.KeepAlivePeriod = 15 * time.Second
	d := &wt.Transport{
		TLSClientConfig: tlsConf,
		QUICConfig:      qconf,
		DialAddr: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			c.qconn, err = c.tr.DialEarly(ctx, ua, tlsConf, conf)
			return c.qconn, err
		},
	}
	_, sess, err := d.Dial(ctx, url, nil)
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("webtransport: dial %s: %w", url, err)
	}
	c.sess = sess
	if c.str, err = sess.OpenStreamSync(ctx); err != nil {
		c.Abort()
		return nil, fmt.Errorf("webtransport: open stream: %w", err)
	}
	return c, nil
}

func clientTLSConfig(rawURL string, opts DialOptions) (*tls.Config, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("webtransport: dial: %w", err)
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{http3.NextProtoH3},
		ServerName: u.Hostname(),
		RootCAs:    opts.RootCAs,

		ClientSessionCache: opts.SessionCache,
	}
	switch {
	case len(opts.CertHashes) > 0:
		hashes := opts.CertHashes
		conf.InsecureSkipVerify = true // replaced by the hash check below
		conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyCertHash(raw, hashes, time.Now())
		}
	case opts.InsecureSkipVerify:
		conf.InsecureSkipVerify = true
	}
	return conf, nil
}

// verifyCertHash applies the browser rules for serverCertificateHashes.
func verifyCertHash(raw [][]byte, hashes [][32]byte, now time.Time) error {
	if len(raw) == 0 {
		return ErrCertHashMismatch
	}
	sum := sha256.Sum256(raw[0])
	matched := false
	for _, h := range hashes {
		if bytes.Equal(h[:], sum[:]) {
			matched = true
		}
	}
	if !matched {
		return fmt.Errorf("%w: sha-256 %x", ErrCertHashMismatch, sum)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("webtransport: server certificate: %w", err)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) || cert.NotAfter.Sub(cert.NotBefore) > maxHashedCertValidity {
		return fmt.Errorf("%w: validity %s to %s", ErrCertHashMismatch, cert.NotBefore, cert.NotAfter)
	}
	return nil
}

// Send frames and writes m.
func (c *ClientConn) Send(m *signalingpb.ClientMessage) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := AppendFrame(c.wbuf[:0], m)
	if err != nil {
		return err
	}
	c.wbuf = b
	return c.write(b)
}

// SendRaw writes b as is (tests of garbage and oversized frames).
func (c *ClientConn) SendRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(b)
}

func (c *ClientConn) write(b []byte) error {
	if _, err := c.str.Write(b); err != nil {
		return fmt.Errorf("webtransport: write: %w", err)
	}
	return nil
}

// Recv returns the next server message. When the server closed the session
// it returns a *SessionClosedError with the close code and reason. After a
// Recv ended by ctx, the stream may be mid-frame: close the ClientConn.
func (c *ClientConn) Recv(ctx context.Context) (*signalingpb.ServerMessage, error) {
	b, err := c.RecvFrame(ctx)
	if err != nil {
		return nil, err
	}
	return DecodeServerMessage(b)
}

// RecvFrame is Recv without decoding: the payload of the next frame, valid
// until the next call.
func (c *ClientConn) RecvFrame(ctx context.Context) ([]byte, error) {
	dl, _ := ctx.Deadline()
	_ = c.str.SetReadDeadline(dl)
	stop := context.AfterFunc(ctx, func() { _ = c.str.SetReadDeadline(time.Unix(1, 0)) })
	b, err := ReadFrame(c.str, c.rbuf)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.closedError(ctx, err)
	}
	if cap(b) > cap(c.rbuf) {
		c.rbuf = b[:0]
	}
	return b, nil
}

// closedError turns a read failure into a *SessionClosedError when the
// server closed the session. A server closing gracefully ends the stream
// first; answering with our own FIN lets it send the close.
func (c *ClientConn) closedError(ctx context.Context, err error) error {
	wait := 0 * time.Second // only ask whether the session is already closed
	if errors.Is(err, io.EOF) {
		c.wmu.Lock()
		_ = c.str.Close()
		c.wmu.Unlock()
		wait = closeWait
	}
	var se *wt.SessionError
	if !errors.As(err, &se) {
		wctx, cancel := context.WithTimeout(ctx, wait)
		_, aerr := c.sess.AcceptStream(wctx) // fails with the close reason once closed
		cancel()
		errors.As(aerr, &se)
	}
	if se != nil && se.Remote {
		return &SessionClosedError{Code: uint32(se.ErrorCode), Reason: se.Message}
	}
	if errors.Is(err, io.EOF) {
		return err
	}
	// The QUIC connection's own end (an idle timeout, a stateless reset) is
	// what a caller deciding to reconnect needs; HTTP/3 may report another.
	if cause := context.Cause(c.qconn.Context()); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("webtransport: read: %w (connection: %w)", err, cause)
	}
	return fmt.Errorf("webtransport: read: %w", err)
}

// Resumed reports whether the TLS handshake resumed an earlier session.
func (c *ClientConn) Resumed() bool { return c.qconn.ConnectionState().TLS.DidResume }

// Close closes the session cleanly (code 0) and the connection.
func (c *ClientConn) Close() error {
	_ = c.sess.CloseWithError(0, "")
	_ = c.qconn.CloseWithError(0, "")
	return c.shutdown()
}

// Abort drops the connection without telling the server, as a network loss
// would: the UDP socket is closed and nothing more is sent.
func (c *ClientConn) Abort() error { return c.shutdown() }

func (c *ClientConn) shutdown() error {
	err := c.tr.Close() // closes udp too: the Transport owns it once used
	if cerr := c.udp.Close(); err == nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	return err
}
