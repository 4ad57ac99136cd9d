package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/gctest"
	"github.com/edgemc/edgemc/gc/internalpb"
	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
)

// TestE2EControlPlaneStartRefusals checks that each unsafe or unusable
// control-plane setting stops serve before anything is created: exit 2,
// one line naming the setting, an untouched data directory.
func TestE2EControlPlaneStartRefusals(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "deployment CA")
	mc := tlstest.WritePair(t, dir, "mc", ca.Issue(t, tlstest.Options{}))
	other := tlstest.WritePair(t, dir, "other", ca.Issue(t, tlstest.Options{}))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "missing.pem") // a mode 0000 file is readable when tests run as root
	key := writeJWTKey(t, devissuer.NewIssuer())
	token := filepath.Join(dir, "gc-token") // gc-url needs edgemc's credentials
	if err := os.WriteFile(token, []byte("gc-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		setting string
		reason  string
	}{
		{"plaintext gc-url to a remote host", []string{"--gc-url=http://gc.example.net:50051", "--gc-token-file=" + token}, "gc-url", "is plaintext (http://) to a host that is not loopback"},
		{"key not matching the certificate", []string{"--grpc-tls-cert=" + mc.Cert, "--grpc-tls-key=" + other.Key}, "grpc-tls-key", "does not match the certificate"},
		{"unreadable certificate", []string{"--grpc-tls-cert=" + unreadable, "--grpc-tls-key=" + mc.Key}, "grpc-tls-cert", "cannot be read"},
		{"garbage certificate", []string{"--grpc-tls-cert=" + garbage, "--grpc-tls-key=" + mc.Key}, "grpc-tls-cert", "cannot be parsed"},
		{"garbage CA bundle", []string{"--control-plane-ca=" + garbage}, "control-plane-ca", "cannot be parsed"},
		{"https advertise without TLS", []string{"--grpc-advertise=https://mc-1.example.net:50052"}, "grpc-advertise", "the gRPC server has no TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", key, "--data-dir=" + data, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
				"--webtransport-listen=127.0.0.1:0"}, tc.args...)
			code, out, errOut := runEdgemc(t, args)
			prefix := "edgemc: invalid setting " + tc.setting + ": "
			if code != exitUsage || out != "" || strings.Count(errOut, "\n") != 1 ||
				!strings.HasPrefix(errOut, prefix) || !strings.Contains(errOut, tc.reason) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line %q…%q", code, out, errOut, prefix, tc.reason)
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Errorf("the data directory was created (%v)", err)
			}
		})
	}
}

// TestE2ETLSControlPlane runs the binary with TLS on every control-plane
// link and mutual TLS both ways: the fake GC (its own CA, asking for
// client certificates) gets the registration with an https:// endpoint,
// calls back over TLS with its client certificate, and the status page and
// metrics show each link; token pins refuse a GC that is not allowed.
func TestE2ETLSControlPlane(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "deployment CA")
	gcClients := tlstest.NewCA(t, "GC client CA")
	mcClients := tlstest.NewCA(t, "MC client CA")
	gc := gctest.StartTLS(t, &tls.Config{
		Certificates: []tls.Certificate{ca.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: mcClients.Pool(),
	})
	caFile := filepath.Join(dir, "ca.pem")
	tlstest.Replace(t, caFile, ca.PEM)
	gcCAFile := filepath.Join(dir, "gc-clients.pem")
	tlstest.Replace(t, gcCAFile, gcClients.PEM)
	server := tlstest.WritePair(t, dir, "grpc", ca.Issue(t, tlstest.Options{CommonName: "mc-tls"}))
	client := tlstest.WritePair(t, dir, "client", mcClients.Issue(t, tlstest.Options{CommonName: "mc-tls"}))
	issuer := devissuer.NewIssuer()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	token := filepath.Join(dir, "gc-token")
	if err := os.WriteFile(token, []byte("gc-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startEdgemc(t, []string{"serve", writeJWTKey(t, issuer), "--id=mc-tls",
		"--gc-url=" + gc.Target(), "--gc-token-file=" + token, "--control-plane-ca=" + caFile,
		"--control-plane-client-cert=" + client.Cert, "--control-plane-client-key=" + client.Key,
		"--grpc-listen=" + grpcAddr, "--grpc-advertise=https://" + grpcAddr,
		"--grpc-tls-cert=" + server.Cert, "--grpc-tls-key=" + server.Key, "--grpc-client-ca=" + gcCAFile,
		"--service-token-subjects=gc-1,gc-2",
		"--webtransport-listen=127.0.0.1:0", "--webtransport-advertise=https://127.0.0.1:4433/", "--http-listen=127.0.0.1:0",
	})
	a := &mc{p: p, issuer: issuer}
	a.ready()
	ctx := testCtx(t)
	regs, err := gc.WaitRegistrations(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := regs[0].Req.GrpcEndpoint; got != "https://"+grpcAddr {
		t.Fatalf("advertised %q", got)
	}

	gcTLS := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{gcClients.Issue(t, tlstest.Options{CommonName: "gc-1"}).TLS(t)}}
	req := &internalpb.AssignMeetingWithMhRequest{MeetingId: "m-tls", RequestingGcId: "gc-1"}
	resp, err := gctest.AssignTLS(ctx, regs[0].Req.GrpcEndpoint, issuer.ServiceToken("gc-1", "global-controller"), gcTLS, req)
	if err != nil || !resp.Accepted {
		t.Fatalf("a GC call over mutual TLS: %v %v", resp, err)
	}
	if _, err := gctest.Assign(ctx, grpcAddr, issuer.ServiceToken("gc-1", "global-controller"), req); err == nil {
		t.Fatal("a plaintext call to the TLS server succeeded")
	}
	noCert := &tls.Config{RootCAs: ca.Pool()}
	if _, err := gctest.AssignTLS(ctx, grpcAddr, issuer.ServiceToken("gc-1", "global-controller"), noCert, req); err == nil {
		t.Fatal("a call without a client certificate succeeded")
	}
	_, err = gctest.AssignTLS(ctx, grpcAddr, issuer.ServiceToken("gc-9", "global-controller"), gcTLS, req)
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a GC outside service-token-subjects: %v, want Unauthenticated", err)
	}

	links := map[string]map[string]any{}
	for _, l := range a.status(t)["control_plane"].([]any) {
		links[l.(map[string]any)["name"].(string)] = l.(map[string]any)
	}
	if l := links["grpc-server"]; l["tls"] != true || l["mtls"] != true || l["cert_subject"] != "CN=mc-tls,O=edgemc tests" || l["cert_days_left"] == nil {
		t.Errorf("gRPC server link %v", l)
	}
	if l := links["gc"]; l["tls"] != true || l["mtls"] != true || l["cert_subject"] != "CN=gc-1,O=edgemc tests" || l["warning"] != nil {
		t.Errorf("GC link %v", l)
	}
	body := httpBody(t, "http://"+a.http+"/metrics")
	for _, series := range []string{`mc_tls_cert_expiry_timestamp_seconds{link="grpc-server"} `, `mc_tls_cert_expiry_timestamp_seconds{link="gc"} `,
		`mc_service_token_pin_refusals_total{reason="subject_not_allowed"} 1`} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %q", series)
		}
	}
	if code := p.Stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// TestE2EPlaintextGRPCWarns checks that a gRPC server without TLS that is
// advertised across the network logs a WARN at start and is flagged on
// the status page.
func TestE2EPlaintextGRPCWarns(t *testing.T) {
	p := startEdgemc(t, []string{"serve", writeJWTKey(t, devissuer.NewIssuer()), "--grpc-advertise=http://mc-1.example.net:50052",
		"--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0", "--webtransport-listen=127.0.0.1:0"})
	a := &mc{p: p}
	a.ready()
	warn := p.WaitMsg("control-plane link without TLS")
	if warn.Str("level") != "WARN" || warn.Str("link") != "grpc-server" {
		t.Errorf("warning line %s", warn.Raw)
	}
	l := a.status(t)["control_plane"].([]any)[0].(map[string]any)
	if l["tls"] != false || !strings.Contains(fmt.Sprint(l["warning"]), "in the clear") {
		t.Errorf("gRPC server link %v", l)
	}
}

func httpBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
