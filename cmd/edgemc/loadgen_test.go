package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
	"github.com/edgemc/edgemc/gc/devissuer"
)

// writeKeyPair writes a fresh Ed25519 key pair and returns the paths of
// the private key (for loadgen) and the public key (for serve).
func writeKeyPair(t *testing.T) (privPath, pubPath string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := loadgen.MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	privPath, pubPath = filepath.Join(dir, "loadgen.pem"), filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(privPath, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pubPath, devissuer.NewIssuerFromKey("k", priv).PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return privPath, pubPath
}

func TestE2ELoadgenAgainstServe(t *testing.T) {
	privPath, pubPath := writeKeyPair(t)
	p := startEdgemc(t, append([]string{"serve", "--jwt-public-key=" + pubPath}, loopbackArgs()...))
	ready := p.WaitReady()
	code, out, errOut := runEdgemc(t, []string{"loadgen",
		"--url=https://" + ready.Str("webtransport") + "/", "--cert-hash=" + ready.Str("cert_sha256"),
		"--jwt-private-key=" + privPath, "--assign-grpc=" + ready.Str("grpc"),
		"--sessions=8", "--meetings=2", "--rate=100", "--mutes=2", "--mute-gap=1ms", "--reconnects=1", "--json"})
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	var events []string
	var rep loadgen.Report
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l struct {
			Event  string          `json:"event"`
			Report *loadgen.Report `json:"report"`
		}
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		events = append(events, l.Event)
		if l.Report != nil {
			rep = *l.Report
		}
	}
	if strings.Join(events, ",") != "prepared,joined,muted,reconnected,report" {
		t.Errorf("events %v", events)
	}
	if rep.Joined != 8 || rep.FanOut.Count != 4 || rep.Recovered != 1 || rep.Lost != 0 {
		t.Errorf("report %+v", rep)
	}
}

func TestLoadgenUsage(t *testing.T) {
	privPath, _ := writeKeyPair(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--url=https://192.0.2.1:4433/", "--protocol=echo"}, "not a loopback address"},
		{[]string{"--url=https://127.0.0.1:4433/"}, "needs join tokens"},
		{[]string{"--url=https://127.0.0.1:4433/", "--assign-grpc=127.0.0.1:1", "--protocol=echo"}, "needs --jwt-private-key"},
		{[]string{"--url=https://127.0.0.1:4433/", "--jwt-private-key=" + privPath, "--sessions=0"}, "sessions must be"},
		{[]string{"--url=https://127.0.0.1:4433/", "--protocol=echo", "--cert-hash=abc"}, "--cert-hash must be"},
		{[]string{"--bogus"}, "loadgen: unknown flag --bogus (edgemc help loadgen lists them)"},
	} {
		code, _, errOut := runCLI(t, nil, append([]string{"loadgen"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errOut, exitUsage, tc.want)
		}
	}
	code, out, _ := runCLI(t, nil, "loadgen", "-h")
	if code != exitOK || !strings.Contains(out, "-sessions") || !strings.Contains(out, "-rate") {
		t.Errorf("help: exit %d, stdout %q", code, out)
	}
}
