package tlsfiles_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/tlsfiles"
	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
)

// logBuffer collects log lines safely across goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string       { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func TestKeyPairReloadsAndKeepsTheOldOneOnGarbage(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	first, second := ca.Issue(t, tlstest.Options{}), ca.Issue(t, tlstest.Options{})
	files := tlstest.WritePair(t, dir, "server", first)
	var logs logBuffer
	kp, err := tlsfiles.LoadKeyPair(files.Cert, files.Key, logs.logger())
	if err != nil {
		t.Fatal(err)
	}
	if !kp.Leaf().Equal(first.Leaf) {
		t.Fatal("first certificate not served")
	}

	tlstest.WritePair(t, dir, "server", second)
	if !kp.Leaf().Equal(second.Leaf) {
		t.Fatal("renewed certificate not picked up")
	}

	// A renewal that does not parse: the previous certificate stays, one
	// ERROR names the file, however often the certificate is asked for.
	tlstest.Replace(t, files.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	for range 5 {
		if !kp.Leaf().Equal(second.Leaf) {
			t.Fatal("a garbage renewal replaced the certificate")
		}
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 || !strings.Contains(logs.String(), "file="+files.Cert) {
		t.Fatalf("want one ERROR naming %s, got %d:\n%s", files.Cert, n, logs.String())
	}

	// A certificate whose key has not been written yet (a renewal half
	// done) blames the key file, then the finished renewal is used.
	third := ca.Issue(t, tlstest.Options{})
	tlstest.Replace(t, files.Cert, third.CertPEM)
	if !kp.Leaf().Equal(second.Leaf) {
		t.Fatal("a certificate without its key was used")
	}
	if !strings.Contains(logs.String(), "does not match the certificate") || !strings.Contains(logs.String(), "file="+files.Key) {
		t.Fatalf("mismatch not logged against the key file:\n%s", logs.String())
	}
	tlstest.Replace(t, files.Key, third.KeyPEM)
	if !kp.Leaf().Equal(third.Leaf) {
		t.Fatal("completed renewal not picked up")
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	good := tlstest.WritePair(t, dir, "good", ca.Issue(t, tlstest.Options{}))
	other := tlstest.WritePair(t, dir, "other", ca.Issue(t, tlstest.Options{}))
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.pem", "not PEM at all")
	bad := write("bad.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
	for _, tc := range []struct {
		name, cert, key, file, reason string
	}{
		{"missing cert", filepath.Join(dir, "none"), good.Key, filepath.Join(dir, "none"), "cannot be read"},
		{"directory", dir, good.Key, dir, "is a directory"},
		{"garbage cert", garbage, good.Key, garbage, "holds no PEM certificate"},
		{"unparsable cert", bad, good.Key, bad, "cannot be parsed"},
		{"key in cert file", good.Key, good.Key, good.Key, `"PRIVATE KEY" block`},
		{"garbage key", good.Cert, garbage, garbage, "holds no PEM private key"},
		{"key of another cert", good.Cert, other.Key, other.Key, "does not match the certificate in " + good.Cert},
	} {
		_, err := tlsfiles.LoadKeyPair(tc.cert, tc.key, nil)
		var fe *tlsfiles.FileError
		if !errors.As(err, &fe) || fe.File != tc.file || !strings.Contains(err.Error(), tc.reason) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v; want a one-line *FileError for %s saying %q", tc.name, err, tc.file, tc.reason)
		}
	}
	if _, err := tlsfiles.LoadPool(good.Key, nil); err == nil || !strings.Contains(err.Error(), "only certificates") {
		t.Errorf("a key as CA bundle: %v", err)
	}
	if _, err := tlsfiles.LoadPool(garbage, nil); err == nil {
		t.Error("garbage CA bundle accepted")
	}
}

// echoServer serves TLS with cfg on loopback, echoing lines back.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return lis.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, msg string) error {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
	return nil
}

func TestServerServesRenewedCertificateKeepingOpenConnections(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "ca")
	first, second := ca.Issue(t, tlstest.Options{}), ca.Issue(t, tlstest.Options{})
	files := tlstest.WritePair(t, dir, "server", first)
	srv, err := tlsfiles.NewServer(tlsfiles.ServerFiles{CertFile: files.Cert, KeyFile: files.Key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := echoServer(t, srv.Config())
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}

	open, err := tls.Dial("tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := roundTrip(t, open, "before"); err != nil {
		t.Fatal(err)
	}
	if !open.ConnectionState().PeerCertificates[0].Equal(first.Leaf) {
		t.Fatal("first certificate not served")
	}

	tlstest.WritePair(t, dir, "server", second)
	fresh, err := tls.Dial("tcp", addr, client)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if !fresh.ConnectionState().PeerCertificates[0].Equal(second.Leaf) {
		t.Fatal("a new handshake did not get the renewed certificate")
	}
	if err := roundTrip(t, open, "after"); err != nil {
		t.Fatalf("the open connection broke at the renewal: %v", err)
	}
	if !srv.Leaf().Equal(second.Leaf) || srv.MutualTLS() {
		t.Fatal("Leaf or MutualTLS wrong")
	}
}

func TestServerRequiresClientCertificateWithClientCA(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca")
	files := tlstest.WritePair(t, dir, "server", ca.Issue(t, tlstest.Options{}))
	caFile := filepath.Join(dir, "clients.pem")
	tlstest.Replace(t, caFile, clientCA.PEM)
	srv, err := tlsfiles.NewServer(tlsfiles.ServerFiles{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: caFile}, nil)
	if err != nil || !srv.MutualTLS() {
		t.Fatal(err)
	}
	addr := echoServer(t, srv.Config())
	dial := func(certs ...tls.Certificate) error {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: certs})
		if err != nil {
			return err
		}
		defer c.Close()
		return roundTrip(t, c, "hello") // TLS 1.3 reports a refused client certificate on first read
	}
	if err := dial(); err == nil {
		t.Error("a client without a certificate was served")
	}
	if err := dial(ca.Issue(t, tlstest.Options{}).TLS(t)); err == nil {
		t.Error("a client certificate from another CA was accepted")
	}
	if err := dial(clientCA.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t)); err != nil {
		t.Errorf("a client certificate of the client CA was refused: %v", err)
	}
}

func TestClientTrustExplainsProblemsOnceAndRecovers(t *testing.T) {
	dir := t.TempDir()
	ca, other := tlstest.NewCA(t, "Right CA"), tlstest.NewCA(t, "Other CA")
	serve := func(p tlstest.Pair) string {
		return echoServer(t, &tls.Config{Certificates: []tls.Certificate{p.TLS(t)}, NextProtos: []string{"h2"}})
	}
	good := serve(ca.Issue(t, tlstest.Options{}))
	wrongName := serve(ca.Issue(t, tlstest.Options{CommonName: "gc.example.net", DNSNames: []string{"gc.example.net"}}))
	expired := serve(ca.Issue(t, tlstest.Options{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	go func() {
		for {
			c, err := plain.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()

	caFile := filepath.Join(dir, "ca.pem")
	tlstest.Replace(t, caFile, other.PEM) // the wrong CA at first
	trust, err := tlsfiles.NewClientTrust(tlsfiles.ClientFiles{CAFile: caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	peer := tlsfiles.NewPeer(logs.logger())
	creds := trust.Credentials(peer)
	handshake := func(addr string) error {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := creds.ClientHandshake(ctx, addr, raw)
		if err == nil {
			c.Close()
		}
		return err
	}

	for range 3 {
		if handshake(good) == nil {
			t.Fatal("a server of an untrusted CA was accepted")
		}
	}
	want := `signed by an authority that the CA bundle ` + caFile + ` does not include (issuer \"CN=Right CA,O=edgemc tests\")`
	if got := peer.State().Problem; !strings.Contains(got, strings.ReplaceAll(want, `\"`, `"`)) {
		t.Fatalf("problem %q, want it to say %q", got, want)
	}
	if n := strings.Count(logs.String(), "TLS certificate problem"); n != 1 {
		t.Fatalf("the same problem was logged %d times:\n%s", n, logs.String())
	}

	// The bundle is fixed on disk: the next handshake trusts it.
	tlstest.Replace(t, caFile, append(append([]byte("# the deployment's CA\n"), ca.PEM...), other.PEM...))
	if err := handshake(good); err != nil {
		t.Fatalf("after fixing the bundle: %v", err)
	}
	st := peer.State()
	if st.Problem != "" || st.Subject != "CN=127.0.0.1,O=edgemc tests" || st.NotAfter.Before(time.Now()) {
		t.Fatalf("state after success: %+v", st)
	}
	if !strings.Contains(logs.String(), "TLS certificate problem resolved") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}

	for addr, want := range map[string]string{
		wrongName:             "is not valid for the name 127.0.0.1; it names gc.example.net",
		expired:               "expired on ",
		plain.Addr().String(): "does not speak TLS",
	} {
		if handshake(addr) == nil {
			t.Fatalf("%s: handshake succeeded", want)
		}
		if got := peer.State().Problem; !strings.Contains(got, want) {
			t.Errorf("problem %q, want %q", got, want)
		}
	}
	if n := strings.Count(logs.String(), "TLS certificate problem;"); n != 4 {
		t.Errorf("%d problems logged, want 4 (one per change):\n%s", n, logs.String())
	}
}

func TestClientTrustPresentsClientCertificateOverHTTP(t *testing.T) {
	dir := t.TempDir()
	ca, clientCA := tlstest.NewCA(t, "server-ca"), tlstest.NewCA(t, "client-ca")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, tlstest.Options{}).TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool(),
	}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(dir, "ca.pem")
	tlstest.Replace(t, caFile, ca.PEM)
	mc := tlstest.WritePair(t, dir, "mc", clientCA.Issue(t, tlstest.Options{CommonName: "mc-1"}))
	trust, err := tlsfiles.NewClientTrust(tlsfiles.ClientFiles{CAFile: caFile, CertFile: mc.Cert, KeyFile: mc.Key}, nil)
	if err != nil || !trust.MutualTLS() {
		t.Fatal(err)
	}
	peer := tlsfiles.NewPeer(nil)
	client := &http.Client{Transport: trust.HTTPTransport(peer), Timeout: 10 * time.Second}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "mc-1" || peer.State().Subject == "" {
		t.Fatalf("server saw %q, peer state %+v", body, peer.State())
	}
}

func TestNilClientTrustUsesSystemRoots(t *testing.T) {
	var trust *tlsfiles.ClientTrust
	c := trust.Config()
	if c.RootCAs != nil || c.MinVersion != tls.VersionTLS12 || trust.MutualTLS() {
		t.Fatalf("nil trust config: %+v", c)
	}
}
