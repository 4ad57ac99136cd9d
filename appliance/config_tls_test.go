package appliance

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/edgemc/edgemc/gc/tlsfiles/tlstest"
)

// tlsFiles are PEM files for the control-plane settings: a server pair, a
// key of another pair, a CA bundle, and files that are not what they say.
type tlsFiles struct {
	cert, key, otherKey, ca, notPEM, garbage, unreadable string
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "deployment CA")
	pair := tlstest.WritePair(t, dir, "mc", ca.Issue(t, tlstest.Options{}))
	other := tlstest.WritePair(t, dir, "other", ca.Issue(t, tlstest.Options{}))
	f := tlsFiles{cert: pair.Cert, key: pair.Key, otherKey: other.Key,
		ca:         filepath.Join(dir, "ca.pem"),
		notPEM:     writeCfgFile(t, "notpem.pem", "hello"),
		garbage:    writeCfgFile(t, "garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		unreadable: filepath.Join(dir, "absent.pem"),
	}
	tlstest.Replace(t, f.ca, ca.PEM)
	return f
}

func TestControlPlaneSettingsLoad(t *testing.T) {
	f := writeTLSFiles(t)
	c, err := loadCfg(t, []string{
		"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.key, "--grpc-client-ca", f.ca,
		"--control-plane-ca", f.ca, "--control-plane-client-cert", f.cert, "--control-plane-client-key", f.key,
		"--gc-url", "https://gc.example.net", "--gc-token-file", writeCfgFile(t, "gc-token", "token"),
		"--jwks-url", "https://ac.example.net/.well-known/jwks.json",
		"--service-token-issuer", "https://ac.example.net", "--service-token-audience", "edgemc-eu",
		"--service-token-subjects", " gc-1, gc-2,,",
	}, cfgEnv{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCTLSCert != f.cert || c.ControlPlaneCA != f.ca || c.ServiceTokenAudience != "edgemc-eu" ||
		!slices.Equal(c.ServiceTokenSubjects, []string{"gc-1", "gc-2"}) {
		t.Errorf("loaded %+v", c)
	}
	// A grpc-advertise left at its default follows the server's TLS.
	if c.GRPCAdvertise != "https://testhost:50052" {
		t.Errorf("default grpc-advertise with TLS = %q, want https://testhost:50052", c.GRPCAdvertise)
	}

	// Lists and switches from the file, as an operator writes them.
	file := writeCfgFile(t, "edgemc.toml", "service-token-subjects = [\"gc-eu-1\", \"gc-eu-2\"]\n"+
		"allow-plaintext-control-plane = true\ngc-url = \"http://gc.lan:50051\"\n"+
		"gc-token-file = \""+writeCfgFile(t, "gc-token", "token")+"\"\n")
	c, err = loadCfg(t, nil, cfgEnv{}, file)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.ServiceTokenSubjects, []string{"gc-eu-1", "gc-eu-2"}) || !c.AllowPlaintextControlPlane {
		t.Errorf("from the file: subjects %q, allow %v", c.ServiceTokenSubjects, c.AllowPlaintextControlPlane)
	}
	// A bare switch flag means true; an empty list is no list.
	token := writeCfgFile(t, "gc-token", "token") // gc-url needs edgemc's credentials
	c, err = loadCfg(t, []string{"--allow-plaintext-control-plane", "--gc-url=http://gc.lan", "--gc-token-file=" + token, "--service-token-subjects="}, cfgEnv{}, "")
	if err != nil || !c.AllowPlaintextControlPlane || c.ServiceTokenSubjects != nil {
		t.Errorf("bare switch: allow %v, subjects %q, err %v", c.AllowPlaintextControlPlane, c.ServiceTokenSubjects, err)
	}
	// Loopback needs no TLS.
	for _, u := range []string{"http://127.0.0.1:50051", "http://localhost:1", "http://[::1]:2", "http://127.9.9.9"} {
		if _, err := loadCfg(t, []string{"--gc-url", u, "--gc-token-file", token, "--jwks-url", u + "/jwks.json"}, cfgEnv{}, ""); err != nil {
			t.Errorf("loopback %s refused: %v", u, err)
		}
	}
}

// TestControlPlaneRefusals checks every start-up refusal: one line naming
// the setting, the source and what to do.
func TestControlPlaneRefusals(t *testing.T) {
	f := writeTLSFiles(t)
	tlsArgs := []string{"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.key}
	token := writeCfgFile(t, "gc-token", "token") // gc-url needs edgemc's credentials
	cases := []struct {
		name    string
		args    []string
		setting string
		want    string
	}{
		{"plaintext gc-url", []string{"--gc-url", "http://gc.example.net:50051", "--gc-token-file", token}, "gc-url",
			`"http://gc.example.net:50051" is plaintext (http://) to a host that is not loopback: use https:// (trusting control-plane-ca), or set allow-plaintext-control-plane = true`},
		{"plaintext gc-url to a LAN address", []string{"--gc-url", "http://10.0.0.5:50051", "--gc-token-file", token}, "gc-url", "is plaintext"},
		{"plaintext jwks-url", []string{"--jwks-url", "http://ac.example.net/.well-known/jwks.json"}, "jwks-url", "is plaintext"},
		{"key of another certificate", []string{"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.otherKey}, "grpc-tls-key",
			"holds a private key that does not match the certificate in " + f.cert},
		{"garbage certificate", []string{"--grpc-tls-cert", f.garbage, "--grpc-tls-key", f.key}, "grpc-tls-cert", "holds a certificate (number 1) that cannot be parsed"},
		{"certificate not PEM", []string{"--grpc-tls-cert", f.notPEM, "--grpc-tls-key", f.key}, "grpc-tls-cert", "holds no PEM certificate"},
		{"key as certificate", []string{"--grpc-tls-cert", f.key, "--grpc-tls-key", f.key}, "grpc-tls-cert", `"PRIVATE KEY" block`},
		{"unreadable certificate", []string{"--grpc-tls-cert", f.unreadable, "--grpc-tls-key", f.key}, "grpc-tls-cert", "no such file"},
		{"unreadable key", []string{"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.unreadable}, "grpc-tls-key", "no such file"},
		{"key not PEM", []string{"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.notPEM}, "grpc-tls-key", "holds no PEM private key"},
		{"certificate without key", []string{"--grpc-tls-cert", f.cert}, "grpc-tls-key", "must be set when grpc-tls-cert is (from flag --grpc-tls-cert)"},
		{"key without certificate", []string{"--control-plane-client-key", f.key}, "control-plane-client-cert", "must be set when control-plane-client-key is (from flag --control-plane-client-key)"},
		{"client key of another certificate", []string{"--control-plane-client-cert", f.cert, "--control-plane-client-key", f.otherKey},
			"control-plane-client-key", "does not match"},
		{"client CA without TLS", []string{"--grpc-client-ca", f.ca}, "grpc-client-ca", "needs grpc-tls-cert"},
		{"garbage client CA", append([]string{"--grpc-client-ca", f.garbage}, tlsArgs...), "grpc-client-ca", "cannot be parsed"},
		{"control-plane CA not PEM", []string{"--control-plane-ca", f.notPEM}, "control-plane-ca", "holds no PEM certificate"},
		{"unreadable control-plane CA", []string{"--control-plane-ca", f.unreadable}, "control-plane-ca", "no such file"},
		{"https advertise without TLS", []string{"--grpc-advertise", "https://mc-1.example.net:50052"}, "grpc-advertise",
			"is https:// but the gRPC server has no TLS"},
		{"http advertise with TLS", append([]string{"--grpc-advertise", "http://mc-1.example.net:50052"}, tlsArgs...), "grpc-advertise",
			"is http:// but the gRPC server serves TLS"},
		{"switch not a boolean", []string{"--allow-plaintext-control-plane=yes please"}, "allow-plaintext-control-plane", "is not true or false"},
		{"subject with a space", []string{"--service-token-subjects", "gc-1,gc 2"}, "service-token-subjects",
			`has an entry "gc 2" that must not contain spaces`},
		{"issuer with a space", []string{"--service-token-issuer", "my issuer"}, "service-token-issuer", "spaces"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadCfg(t, tc.args, cfgEnv{}, "")
			checkOneLine(t, err, tc.setting, tc.want)
			if !strings.Contains(tc.want, "(from ") {
				checkOneLine(t, err, tc.setting, "(from flag --"+tc.setting+")")
			}
		})
	}
	// A key's path is never echoed: it might be the key itself.
	_, err := loadCfg(t, []string{"--grpc-tls-cert", f.cert, "--grpc-tls-key", f.otherKey}, cfgEnv{}, "")
	if strings.Contains(err.Error(), f.otherKey) {
		t.Errorf("error echoes the key's path: %v", err)
	}
}

func TestControlPlaneTOMLKinds(t *testing.T) {
	for _, tc := range []struct{ body, setting, want string }{
		{`region = true`, "region", "must be a string or a whole number, not a TOML bool"},
		{`region = ["eu"]`, "region", "must be a string or a whole number, not a TOML array"},
		{`allow-plaintext-control-plane = 1.5`, "allow-plaintext-control-plane", "must be true or false, not a TOML float"},
		{`service-token-subjects = ["gc-1", 2]`, "service-token-subjects", "must be a list of strings"},
		{`service-token-subjects = ["gc-1,gc-2"]`, "service-token-subjects", `has an entry "gc-1,gc-2" with a comma`},
		{`service-token-subjects = { a = 1 }`, "service-token-subjects", "must be a list of strings, not a TOML hash"},
	} {
		_, err := loadCfg(t, nil, cfgEnv{}, writeCfgFile(t, "edgemc.toml", tc.body+"\n"))
		checkOneLine(t, err, tc.setting, tc.want)
	}
}

// FuzzSettingValue feeds arbitrary text to every setting's parser: nothing
// panics, errors are one line, and accepted lists hold clean entries.
func FuzzSettingValue(f *testing.F) {
	table := settings()
	for i, seed := range []string{"", "true", "FALSE", "1", "gc-1, gc-2", ",,,", "a,\x00b", "  x  ", "https://ac.example.net", strings.Repeat("a,", 300)} {
		f.Add(uint8(i), seed)
	}
	f.Fuzz(func(t *testing.T, which uint8, v string) {
		s := table[int(which)%len(table)]
		if strings.HasSuffix(s.name, "-file") || s.name == "data-dir" || strings.Contains(s.name, "-ca") ||
			strings.Contains(s.name, "cert") || strings.Contains(s.name, "key") {
			return // file settings open files; their parsers have their own fuzz targets
		}
		var c Config
		err := s.set(&c, v)
		if err != nil {
			if strings.ContainsAny((&SettingError{Setting: s.name, Value: v, Reason: err.Error()}).Error(), "\r\n") {
				t.Fatalf("%s: error is not one line: %v", s.name, err)
			}
			return
		}
		for _, e := range c.ServiceTokenSubjects {
			if e == "" || strings.ContainsAny(e, ", \t\n") {
				t.Fatalf("list entry %q accepted from %q", e, v)
			}
		}
	})
}
