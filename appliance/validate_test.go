package appliance

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	key := ed25519PEM(t)
	notKey := writeCfgFile(t, "not-a-key.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
	junk := writeCfgFile(t, "junk.pem", "not a certificate")
	base := func() Config {
		c := defaultConfig("testhost")
		c.DataDir = filepath.Join(t.TempDir(), "data")
		c.JWKSURL = "https://ac.example.net/.well-known/jwks.json"
		return c
	}
	cases := []struct {
		name    string
		lab     bool
		edit    func(*Config)
		setting string // "" when valid
		want    string
	}{
		{"jwks-url", false, func(*Config) {}, "", ""},
		{"jwt-public-key", false, func(c *Config) { c.JWKSURL, c.JWTPublicKey = "", key }, "", ""},
		{"no token keys", false, func(c *Config) { c.JWKSURL = "" }, "jwks-url", "missing setting jwks-url: set jwks-url (or jwt-public-key)"},
		{"no token keys in lab mode", true, func(c *Config) { c.JWKSURL = "" }, "", ""},
		{"unusable key", false, func(c *Config) { c.JWKSURL, c.JWTPublicKey = "", notKey }, "jwt-public-key", "is not usable"},
		{"bad certificate pair", false, func(c *Config) { c.TLSCert, c.TLSKey = junk, junk }, "tls-cert", "not a usable certificate pair"},
		{"short binding secret", false, func(c *Config) { c.BindingSecretFile = writeCfgFile(t, "short.key", "abcd") }, "binding-secret-file", "shorter than 32 bytes"},
		{"binding secret", false, func(c *Config) { c.BindingSecretFile = writeCfgFile(t, "b.key", strings.Repeat("ab", 32)) }, "", ""},
		{"empty status token", false, func(c *Config) { c.StatusTokenFile = writeCfgFile(t, "status.token", " \n") }, "status-token-file", "empty file"},
		{"status token", false, func(c *Config) { c.StatusTokenFile = writeCfgFile(t, "status.token", "s3cret\n") }, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.edit(&c)
			err := c.Validate(RunOptions{Lab: tc.lab})
			var se *SettingError
			switch {
			case tc.setting == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.setting != "" && (!errors.As(err, &se) || se.Setting != tc.setting || !errors.Is(err, ErrInvalidSetting) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v, want an error about %s containing %q", err, tc.setting, tc.want)
			}
			if err != nil && strings.ContainsAny(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if _, err := os.Stat(c.DataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Validate created %s (%v)", c.DataDir, err)
			}
		})
	}
}

// TestRunChecksFirst: a configuration Run cannot use leaves no data-dir behind.
func TestRunChecksFirst(t *testing.T) {
	c := defaultConfig("testhost")
	c.DataDir = filepath.Join(t.TempDir(), "data")
	if err := Run(context.Background(), c, RunOptions{}); !errors.Is(err, ErrInvalidSetting) {
		t.Fatalf("Run: %v, want an invalid setting", err)
	}
	if _, err := os.Stat(c.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run created %s (%v)", c.DataDir, err)
	}
}

func TestGiven(t *testing.T) {
	file := writeCfgFile(t, "edgemc.toml", `drain-timeout = "10s"`)
	c, err := loadCfg(t, []string{"--region", "eu", "--config", file}, cfgEnv{"EDGEMC_MAX_MEETINGS": "5"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"region", "max-meetings", "drain-timeout"}; !slices.Equal(c.Given, want) {
		t.Errorf("Given = %q, want %q", c.Given, want)
	}
	if c, _ := loadCfg(t, nil, cfgEnv{}, ""); c.Given != nil {
		t.Errorf("defaults: Given = %q, want none", c.Given)
	}
}

func TestLabListeners(t *testing.T) {
	c := defaultConfig("testhost")
	got := labListeners(c)
	if got.WebTransportListen != "127.0.0.1:4433" || got.GRPCListen != "127.0.0.1:50052" || got.HTTPListen != "127.0.0.1:8081" {
		t.Errorf("lab listeners %s %s %s, want all on 127.0.0.1", got.WebTransportListen, got.GRPCListen, got.HTTPListen)
	}
	c.Given = []string{"grpc-listen"}
	if got := labListeners(c); got.GRPCListen != ":50052" || got.WebTransportListen != "127.0.0.1:4433" {
		t.Errorf("a grpc-listen the user set became %s", got.GRPCListen)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"[::]:50052":     "127.0.0.1:50052",
		"0.0.0.0:4433":   "127.0.0.1:4433",
		":8081":          "127.0.0.1:8081",
		"127.0.0.1:4433": "127.0.0.1:4433",
		"[::1]:4433":     "[::1]:4433",
		"10.1.2.3:4433":  "10.1.2.3:4433",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestProcessCPU: edgemc's CPU share is measured over at least a second,
// on the scale of all the host's CPUs.
func TestProcessCPU(t *testing.T) {
	var p processCPU
	t0 := time.Now()
	if got := p.sample(t0); got != 0 {
		t.Errorf("first sample %v, want 0", got)
	}
	for start := cpuUsed(); cpuUsed()-start < 20*time.Millisecond; { // burn some CPU
	}
	got := p.sample(t0.Add(time.Second))
	if got <= 0 || got > 100 {
		t.Errorf("after burning CPU: %v %%, want in (0, 100]", got)
	}
	if again := p.sample(t0.Add(1500 * time.Millisecond)); again != got {
		t.Errorf("a sample within a second of the last gives %v, want the last figure %v", again, got)
	}
}

func cpuUsed() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
