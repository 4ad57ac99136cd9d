package gc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/auth"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tlsfiles"
	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
)

// switchableCert serves whichever certificate was set last.
type switchableCert struct {
	cur atomic.Pointer[tls.Certificate]
}

func (s *switchableCert) set(c tls.Certificate) { s.cur.Store(&c) }
func (s *switchableCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// tlsLink runs a link to target trusting the CA bundle in caFile (with a
// client certificate when client is set) and returns it with its log.
func tlsLink(t *testing.T, target, caFile string, client *tlstest.Files) (*Link, *tlsfiles.Peer, events, *syncBuffer) {
	t.Helper()
	files := tlsfiles.ClientFiles{CAFile: caFile}
	if client != nil {
		files.CertFile, files.KeyFile = client.Cert, client.Key
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	trust, err := tlsfiles.NewClientTrust(files, log)
	if err != nil {
		t.Fatal(err)
	}
	p := tlsfiles.NewPeer(log)
	cfg := fastConfig(target)
	cfg.Credentials, cfg.Logger = trust.Credentials(p), log
	ev := make(events, 1000)
	cfg.Observer = ev
	l, _ := startLink(t, cfg, &fixedLoad{l: defaultLoad}, nil)
	return l, p, ev, &logs
}

func TestLinkOverMutualTLS(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	ca, clientCA := tlstest.NewCA(t, "deployment CA"), tlstest.NewCA(t, "MC client CA")
	gc := gctest.StartTLS(t, &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool(),
	})
	caFile := filepath.Join(dir, "ca.pem")
	tlstest.Replace(t, caFile, ca.PEM)
	client := tlstest.WritePair(t, dir, "mc", clientCA.Issue(t, tlstest.Options{CommonName: "mc-test"}))
	l, p, ev, _ := tlsLink(t, gc.Target(), caFile, &client)
	ev.await(t, ctx, "fast:ok")
	if !l.Status().Registered {
		t.Fatal("not registered over mutual TLS")
	}
	if st := p.State(); st.Subject != "CN=gc-1,O=edgemc tests" || st.Problem != "" || time.Until(st.NotAfter) < time.Hour {
		t.Fatalf("peer state %+v", st)
	}
}

// TestLinkCertificateProblemsRetryUntilFixed runs a link into each kind of
// certificate problem: each is logged once in plain words, the link keeps
// retrying, and once the cause is fixed (the CA bundle on disk, or the
// GC's certificate) it registers by itself.
func TestLinkCertificateProblemsRetryUntilFixed(t *testing.T) {
	ca, other := tlstest.NewCA(t, "deployment CA"), tlstest.NewCA(t, "some other CA")
	good := ca.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t)
	for _, tc := range []struct {
		name     string
		bundle   []byte          // the CA bundle at first
		cert     tls.Certificate // the GC's certificate at first
		want     string
		fixedCA  bool // fixed by writing the right bundle (else by renewing the GC's certificate)
		problems int
	}{
		{name: "unknown authority", bundle: other.PEM, cert: good, fixedCA: true,
			want: `signed by an authority that the CA bundle`},
		{name: "wrong name", bundle: ca.PEM, cert: ca.Issue(t, tlstest.Options{CommonName: "gc.example.net", DNSNames: []string{"gc.example.net"}}).TLS(t),
			want: `is not valid for the name 127.0.0.1; it names gc.example.net`},
		{name: "expired", bundle: ca.PEM, cert: ca.Issue(t, tlstest.Options{NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}).TLS(t),
			want: `expired on `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			var cert switchableCert
			cert.set(tc.cert)
			gc := gctest.StartTLS(t, &tls.Config{GetCertificate: cert.get})
			caFile := filepath.Join(t.TempDir(), "ca.pem")
			tlstest.Replace(t, caFile, tc.bundle)
			l, p, ev, logs := tlsLink(t, gc.Target(), caFile, nil)
			for range 3 {
				ev.await(t, ctx, "register:error")
			}
			if l.Status().Registered || len(gc.Registrations()) != 0 {
				t.Fatal("registered through a certificate problem")
			}
			if !strings.Contains(p.State().Problem, tc.want) {
				t.Fatalf("problem %q, want %q", p.State().Problem, tc.want)
			}
			// The link's own error (status page, retry lines) says it in plain words too.
			if !strings.Contains(l.Status().LastError, tc.want) {
				t.Fatalf("link error %q, want %q", l.Status().LastError, tc.want)
			}
			if n := strings.Count(logs.String(), "TLS certificate problem; retrying"); n != 1 || !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("want the problem logged once in plain words, got %d:\n%s", n, logs.String())
			}

			if tc.fixedCA {
				tlstest.Replace(t, caFile, append(append([]byte{}, other.PEM...), ca.PEM...))
			} else {
				cert.set(good)
			}
			ev.await(t, ctx, "fast:ok")
			if !l.Status().Registered || p.State().Problem != "" {
				t.Fatalf("after the fix: status %+v, peer %+v", l.Status(), p.State())
			}
			if !strings.Contains(logs.String(), "TLS certificate problem resolved") {
				t.Fatalf("recovery not logged:\n%s", logs.String())
			}
		})
	}
}

// tlsServerEnv is a NewServer serving TLS from certificate files.
type tlsServerEnv struct {
	addr   string
	files  tlstest.Files
	ca     *tlstest.CA
	gcTok  string
	issuer *devissuer.Issuer
}

func startTLSServer(t *testing.T, clientCA *tlstest.CA) *tlsServerEnv {
	t.Helper()
	dir := t.TempDir()
	e := &tlsServerEnv{ca: tlstest.NewCA(t, "deployment CA"), issuer: devissuer.NewIssuer()}
	e.files = tlstest.WritePair(t, dir, "grpc", e.ca.Issue(t, tlstest.Options{CommonName: "mc-1"}))
	sf := tlsfiles.ServerFiles{CertFile: e.files.Cert, KeyFile: e.files.Key}
	if clientCA != nil {
		sf.ClientCAFile = filepath.Join(dir, "clients.pem")
		tlstest.Replace(t, sf.ClientCAFile, clientCA.PEM)
	}
	stls, err := tlsfiles.NewServer(sf, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(auth.NewStaticKeys(e.issuer.PublicKey()), auth.VerifierOptions{})
	srv := NewServer(ServerConfig{Verifier: v, TLS: stls.Config()}, &heldAssigner{
		load: Load{MaxMeetings: 100, MaxParticipants: 10000, Health: internalpb.HealthStatus_HEALTHY},
		held: map[string][]MHAssignment{},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	e.addr = lis.Addr().String()
	e.gcTok = e.issuer.ServiceToken("gc-1", ServiceTypeGC)
	return e
}

// dialTLS opens a connection to the server trusting its CA.
func (e *tlsServerEnv) dial(t *testing.T, certs ...tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: e.ca.Pool(), Certificates: certs})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// assign calls AssignMeetingWithMh on conn and returns the certificate the
// server presented on the connection used.
func (e *tlsServerEnv) assign(ctx context.Context, conn *grpc.ClientConn, id string) (*x509.Certificate, error) {
	var p peer.Peer
	_, err := internalpb.NewMeetingControllerServiceClient(conn).AssignMeetingWithMh(withToken(ctx, e.gcTok), assignReq(id), grpc.Peer(&p))
	if err != nil {
		return nil, err
	}
	return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0], nil
}

func TestServerTLSAndRenewalUnderAnOpenConnection(t *testing.T) {
	ctx := testCtx(t)
	e := startTLSServer(t, nil)
	long := e.dial(t)
	first, err := e.assign(ctx, long, "m-1")
	if err != nil {
		t.Fatalf("a GC call over TLS: %v", err)
	}
	if first.Subject.CommonName != "mc-1" {
		t.Fatalf("served %s", first.Subject)
	}

	plain, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := internalpb.NewMeetingControllerServiceClient(plain).AssignMeetingWithMh(withToken(pctx, e.gcTok), assignReq("m-plain")); err == nil {
		t.Fatal("a plaintext call to the TLS server succeeded")
	}

	renewed := e.ca.Issue(t, tlstest.Options{CommonName: "mc-1 renewed"})
	tlstest.WritePair(t, filepath.Dir(e.files.Cert), "grpc", renewed)
	got, err := e.assign(ctx, e.dial(t), "m-2")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(renewed.Leaf) {
		t.Fatalf("a new connection got %s, want the renewed certificate", got.Subject)
	}
	again, err := e.assign(ctx, long, "m-3")
	if err != nil {
		t.Fatalf("the long-lived connection broke at the renewal: %v", err)
	}
	if !again.Equal(first) {
		t.Fatal("the long-lived connection was replaced")
	}
}

func TestServerMutualTLSRefusesCallsWithoutClientCertificate(t *testing.T) {
	ctx := testCtx(t)
	gcCA := tlstest.NewCA(t, "GC client CA")
	e := startTLSServer(t, gcCA)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := e.assign(cctx, e.dial(t), "m-1"); err == nil {
		t.Fatal("a call without a client certificate was served")
	}
	if _, err := e.assign(cctx, e.dial(t, e.ca.Issue(t, tlstest.Options{}).TLS(t)), "m-2"); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	withCert := e.dial(t, gcCA.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t))
	if _, err := e.assign(ctx, withCert, "m-3"); err != nil {
		t.Fatalf("a GC with a client certificate was refused: %v", err)
	}
	// The certificate comes in addition to the token, never instead.
	_, err := internalpb.NewMeetingControllerServiceClient(withCert).AssignMeetingWithMh(ctx, assignReq("m-4"))
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call with a client certificate but no token: %v, want Unauthenticated", err)
	}
}
