package appliance

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
)

// TestControlPlaneLinks checks what each link shows and which links warn
// at start: plaintext across the network warns, loopback does not.
func TestControlPlaneLinks(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "deployment CA")
	srv := tlstest.WritePair(t, dir, "grpc", ca.Issue(t, tlstest.Options{CommonName: "mc-1"}))

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := DefaultConfig()
	cfg.GCURL, cfg.AllowPlaintextControlPlane = "http://gc.lan:50051", true
	cfg.JWKSURL = "https://ac.example.net/.well-known/jwks.json"
	cp, err := newControlPlane(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	links := cp.links(cfg, "http://127.0.0.1:50052")
	if len(links) != 3 || links[0].Name != "grpc-server" || links[1].Name != "gc" || links[2].Name != "jwks" {
		t.Fatalf("links %+v", links)
	}
	if l := links[0]; l.TLS || l.Warning != "" {
		t.Errorf("a plaintext server on loopback: %+v", l)
	}
	if l := links[1]; l.TLS || !strings.Contains(l.Warning, "allow-plaintext-control-plane") {
		t.Errorf("an allowed plaintext GC link: %+v", l)
	}
	if l := links[2]; !l.TLS || l.Warning != "" || l.CertSubject != "" || l.MutualTLS {
		t.Errorf("a TLS link before any handshake: %+v", l)
	}
	cp.warnPlaintext(cfg, "http://127.0.0.1:50052", log)
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 || !strings.Contains(logs.String(), "link=gc") {
		t.Errorf("want one WARN for the GC link, got %d:\n%s", n, logs.String())
	}

	// With TLS the server link shows its own certificate.
	cfg.GRPCTLSCert, cfg.GRPCTLSKey = srv.Cert, srv.Key
	if cp, err = newControlPlane(cfg, log); err != nil {
		t.Fatal(err)
	}
	if l := cp.links(cfg, "https://mc-1.example.net:50052")[0]; !l.TLS || l.MutualTLS || l.CertSubject != "CN=mc-1,O=edgemc tests" || l.CertDaysLeft == nil {
		t.Errorf("a TLS server link: %+v", l)
	}
}
