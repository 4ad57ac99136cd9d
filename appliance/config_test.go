package appliance

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// cfgEnv is a fake environment for LoadConfig.
type cfgEnv map[string]string

func (e cfgEnv) get(k string) string { return e[k] }

func (e cfgEnv) list() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

// loadCfg runs loadConfig with a fresh FlagSet, host "testhost" and a default
// config file that does not exist unless the test passes one.
func loadCfg(t *testing.T, args []string, e cfgEnv, defaultFile string) (Config, error) {
	t.Helper()
	if defaultFile == "" {
		defaultFile = filepath.Join(t.TempDir(), "absent.toml")
	}
	fs := flag.NewFlagSet("edgemc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return loadConfig(fs, args, e.get, e.list(), "testhost", defaultFile)
}

func writeCfgFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func ed25519PEM(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writeCfgFile(t, "jwt.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))
}

func TestDefaults(t *testing.T) {
	c, err := loadCfg(t, nil, cfgEnv{}, "")
	if err != nil {
		t.Fatalf("defaults do not load: %v", err)
	}
	want := Config{
		ID: "testhost", Region: "local", DataDir: "./edgemc-data",
		WebTransportListen: ":4433", WebTransportAdvertise: "https://testhost:4433/",
		GRPCListen: ":50052", GRPCAdvertise: "http://testhost:50052", HTTPListen: "127.0.0.1:8081",
		MaxMeetings: 1000, MaxParticipants: 10000,
		MaxSessionsPerIdentity: 4, SessionMessageRate: 20, SessionMessageBurst: 50,
		MaxPendingSessions: 256, MaxPendingSessionsPerAddress: 16,
		GRPCMaxConnections: 256, GRPCMaxConnectionsPerAddress: 16, GRPCMaxStreams: 32,
		HTTPMaxConnections: 64, HTTPMaxConnectionsPerAddress: 16, HTTPMaxEventStreams: 8,
		DrainTimeout: 30 * time.Second, DisconnectGrace: 30 * time.Second, EmptyMeetingTimeout: 5 * time.Minute,
		LogFormat: "auto", LogLevel: "info",
		GCBackoffBase: time.Second, GCBackoffMax: 30 * time.Second,
		FastHeartbeat: 10 * time.Second, ComprehensiveHeartbeat: 30 * time.Second,
		FirstFrameTimeout: 5 * time.Second, SessionIdleTimeout: 15 * time.Second, SweepInterval: 10 * time.Second,
		SlowClientTimeout: 10 * time.Second, GRPCRequestTimeout: 10 * time.Second, GRPCIdleTimeout: 2 * time.Minute,
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	if d := defaultConfig("testhost"); !reflect.DeepEqual(d, want) {
		t.Errorf("defaultConfig differs from loaded defaults:\n got %+v\nwant %+v", d, want)
	}
	if h, _ := os.Hostname(); h != "" && DefaultConfig().ID != h {
		t.Errorf("DefaultConfig().ID = %q, want host name %q", DefaultConfig().ID, h)
	}
}

// TestSettingsTable checks that the table covers every Config field exactly
// once and that every setting is reachable as a flag and documented.
func TestSettingsTable(t *testing.T) {
	var c Config
	covered := map[uintptr]string{}
	base := reflect.ValueOf(&c).Pointer()
	for _, s := range settings() {
		off := reflect.ValueOf(s.field(&c)).Pointer() - base
		if prev, dup := covered[off]; dup {
			t.Errorf("settings %s and %s share a field", prev, s.name)
		}
		covered[off] = s.name
	}
	ct := reflect.TypeFor[Config]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		if _, ok := covered[f.Offset]; !ok && f.Name != "ConfigFile" && f.Name != "Given" && f.Name != "Warnings" {
			t.Errorf("Config.%s has no setting", f.Name)
		}
	}

	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := loadConfig(fs, nil, cfgEnv{}.get, nil, "h", filepath.Join(t.TempDir(), "none")); err != nil {
		t.Fatal(err)
	}
	for _, info := range Settings() {
		f := fs.Lookup(info.Name)
		if f == nil {
			t.Errorf("setting %s has no flag", info.Name)
			continue
		}
		if info.Help == "" || !strings.Contains(f.Usage, info.Env) {
			t.Errorf("setting %s: help %q, flag usage %q lacks %s", info.Name, info.Help, f.Usage, info.Env)
		}
	}
	if got := envName("webtransport-advertise"); got != "EDGEMC_WEBTRANSPORT_ADVERTISE" {
		t.Errorf("envName = %q", got)
	}
}

// TestPrecedence checks flag > env > file > default for each kind of setting.
func TestPrecedence(t *testing.T) {
	pemA, pemB, pemC := ed25519PEM(t), ed25519PEM(t), ed25519PEM(t)
	kinds := []struct {
		name                                     string
		file, env, flag                          string // values at each layer; file values are TOML literals
		wantDefault, wantFile, wantEnv, wantFlag any
	}{
		{name: "region", file: `"eu"`, env: "us", flag: "ap",
			wantDefault: "local", wantFile: "eu", wantEnv: "us", wantFlag: "ap"},
		{name: "http-listen", file: `"127.0.0.1:1"`, env: "127.0.0.1:2", flag: "[::1]:3",
			wantDefault: "127.0.0.1:8081", wantFile: "127.0.0.1:1", wantEnv: "127.0.0.1:2", wantFlag: "[::1]:3"},
		{name: "grpc-advertise", file: `"http://a:1"`, env: "http://b:2", flag: "http://c:3",
			wantDefault: "http://testhost:50052", wantFile: "http://a:1", wantEnv: "http://b:2", wantFlag: "http://c:3"},
		{name: "allow-plaintext-control-plane", file: `true`, env: "false", flag: "true",
			wantDefault: false, wantFile: true, wantEnv: false, wantFlag: true},
		{name: "max-meetings", file: `7`, env: "8", flag: "9",
			wantDefault: uint32(1000), wantFile: uint32(7), wantEnv: uint32(8), wantFlag: uint32(9)},
		{name: "max-participants", file: `"70"`, env: "80", flag: "90",
			wantDefault: uint32(10000), wantFile: uint32(70), wantEnv: uint32(80), wantFlag: uint32(90)},
		{name: "drain-timeout", file: `"1m"`, env: "2s", flag: "3ms",
			wantDefault: 30 * time.Second, wantFile: time.Minute, wantEnv: 2 * time.Second, wantFlag: 3 * time.Millisecond},
		{name: "jwt-public-key", file: `'` + pemA + `'`, env: pemB, flag: pemC,
			wantDefault: "", wantFile: pemA, wantEnv: pemB, wantFlag: pemC},
		{name: "log-level", file: `"debug"`, env: "warn", flag: "error",
			wantDefault: "info", wantFile: "debug", wantEnv: "warn", wantFlag: "error"},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			var s setting
			for _, x := range settings() {
				if x.name == k.name {
					s = x
				}
			}
			get := func(c Config) any { return reflect.ValueOf(s.field(&c)).Elem().Interface() }
			file := writeCfgFile(t, "edgemc.toml", k.name+" = "+k.file+"\n")
			flagArgs := []string{"--" + k.name + "=" + k.flag}
			e := cfgEnv{envName(k.name): k.env}
			layers := []struct {
				name string
				args []string
				env  cfgEnv
				def  string
				want any
			}{
				{"default", nil, cfgEnv{}, "", k.wantDefault},
				{"default file", nil, cfgEnv{}, file, k.wantFile},
				{"explicit file", []string{"--config", file}, cfgEnv{}, "", k.wantFile},
				{"env over file", nil, e, file, k.wantEnv},
				{"flag over env and file", flagArgs, e, file, k.wantFlag},
				{"flag over default", flagArgs, cfgEnv{}, "", k.wantFlag},
			}
			for _, l := range layers {
				c, err := loadCfg(t, l.args, l.env, l.def)
				if err != nil {
					t.Fatalf("%s: %v", l.name, err)
				}
				if got := get(c); got != l.want {
					t.Errorf("%s: %s = %v, want %v", l.name, k.name, got, l.want)
				}
			}
		})
	}
}

func TestConfigFileFromEnv(t *testing.T) {
	file := writeCfgFile(t, "x.toml", `region = "from-env-file"`)
	c, err := loadCfg(t, nil, cfgEnv{"EDGEMC_CONFIG": file}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "from-env-file" || c.ConfigFile != file {
		t.Errorf("region %q, config file %q", c.Region, c.ConfigFile)
	}
	// --config wins over EDGEMC_CONFIG.
	other := writeCfgFile(t, "y.toml", `region = "from-flag-file"`)
	c, err = loadCfg(t, []string{"-config", other}, cfgEnv{"EDGEMC_CONFIG": file}, "")
	if err != nil || c.Region != "from-flag-file" {
		t.Errorf("got %q, %v", c.Region, err)
	}
}

func TestMissingConfigFile(t *testing.T) {
	if c, err := loadCfg(t, nil, cfgEnv{}, "/nonexistent/edgemc.toml"); err != nil || c.ConfigFile != "" {
		t.Errorf("missing default file: config file %q, err %v", c.ConfigFile, err)
	}
	missing := filepath.Join(t.TempDir(), "nope.toml")
	for _, tc := range []struct {
		name string
		args []string
		env  cfgEnv
	}{
		{"flag", []string{"--config", missing}, cfgEnv{}},
		{"env", nil, cfgEnv{"EDGEMC_CONFIG": missing}},
	} {
		_, err := loadCfg(t, tc.args, tc.env, "")
		checkOneLine(t, err, "config", "no such file")
	}
	// A default file that exists but cannot be read is an error too.
	dir := t.TempDir()
	_, err := loadCfg(t, nil, cfgEnv{}, dir)
	checkOneLine(t, err, "config", "cannot be read")
}

// checkOneLine asserts err is a one-line *SettingError naming setting and
// containing want.
func checkOneLine(t *testing.T, err error, setting, want string) {
	t.Helper()
	var se *SettingError
	if !errors.As(err, &se) || !errors.Is(err, ErrInvalidSetting) {
		t.Fatalf("error %v (%T) is not a *SettingError", err, err)
	}
	msg := err.Error()
	if se.Setting != setting || !strings.HasPrefix(msg, "invalid setting "+setting+": ") {
		t.Errorf("error %q names %q, want %q", msg, se.Setting, setting)
	}
	if !strings.Contains(msg, want) {
		t.Errorf("error %q does not contain %q", msg, want)
	}
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error is not one line: %q", msg)
	}
}

func TestInvalidValues(t *testing.T) {
	dir := t.TempDir()
	notPEM := writeCfgFile(t, "notpem", "hello")
	cases := []struct {
		setting, value, want string
	}{
		{"max-meetings", "abc", `"abc" is not a whole number`},
		{"max-meetings", "0", "must be greater than zero"},
		{"max-participants", "4294967296", "is larger than 4294967295"},
		{"max-participants", "-1", "must be greater than zero"},
		{"drain-timeout", "30", "is not a duration"},
		{"sweep-interval", "-1s", "must be greater than zero"},
		{"fast-heartbeat", "0s", "must be greater than zero"},
		{"http-listen", "8081", "is not host:port"},
		{"grpc-listen", "host:99999", "port number"},
		{"webtransport-listen", "x:http", "port number"},
		{"webtransport-advertise", "http://h:4433/", "https:// URL"},
		{"webtransport-advertise", "https:///", "https:// URL"},
		{"grpc-advertise", "h:50052", "http:// or https:// URL"},
		{"gc-url", "ftp://gc", "http:// or https:// URL"},
		{"jwks-url", "not a url", "URL"},
		{"jwt-public-key", filepath.Join(dir, "absent.pem"), "no such file"},
		{"jwt-public-key", notPEM, "not a PEM file"},
		{"tls-cert", dir, "is a directory"},
		{"log-format", "xml", "must be one of auto, text, json"},
		{"log-level", "verbose", "must be one of debug, info, warn, error"},
		{"id", "my host", "spaces"},
		{"region", "", "must not be empty"},
		{"data-dir", " ", "must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.setting+"="+tc.value, func(t *testing.T) {
			// The same bad value fails the same way from every source, and
			// the error says which source.
			_, err := loadCfg(t, []string{"--" + tc.setting + "=" + tc.value}, cfgEnv{}, "")
			checkOneLine(t, err, tc.setting, tc.want)
			checkOneLine(t, err, tc.setting, "(from flag --"+tc.setting+")")

			if tc.value != "" { // an empty variable counts as unset
				_, err = loadCfg(t, nil, cfgEnv{envName(tc.setting): tc.value}, "")
				checkOneLine(t, err, tc.setting, tc.want)
				checkOneLine(t, err, tc.setting, "(from env "+envName(tc.setting)+")")
			}

			file := writeCfgFile(t, "edgemc.toml", tc.setting+" = '"+tc.value+"'")
			_, err = loadCfg(t, nil, cfgEnv{}, file)
			checkOneLine(t, err, tc.setting, tc.want)
			checkOneLine(t, err, tc.setting, "(from "+file+")")
		})
	}
}

func TestBadValueOverriddenIsFine(t *testing.T) {
	file := writeCfgFile(t, "edgemc.toml", `max-meetings = "lots"`)
	c, err := loadCfg(t, []string{"--max-meetings", "5"}, cfgEnv{}, file)
	if err != nil || c.MaxMeetings != 5 {
		t.Errorf("got %d, %v", c.MaxMeetings, err)
	}
}

func TestErrorFormat(t *testing.T) {
	_, err := loadCfg(t, []string{"--max-meetings=abc"}, cfgEnv{}, "")
	want := `invalid setting max-meetings: "abc" is not a whole number (from flag --max-meetings)`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestSecretSettingValueNotEchoed(t *testing.T) {
	const secret = "eyJhbGciOiJFZERTQSJ9.secret-token"
	for _, name := range []string{"gc-token-file", "status-token-file", "binding-secret-file"} {
		_, err := loadCfg(t, []string{"--" + name, secret}, cfgEnv{}, "")
		checkOneLine(t, err, name, "no such file")
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "secret-token") {
			t.Errorf("%s error echoes its value: %v", name, err)
		}
	}
	// A readable file is accepted; its contents are not read into Config.
	tok := writeCfgFile(t, "tok", secret)
	c, err := loadCfg(t, []string{"--status-token-file", tok}, cfgEnv{}, "")
	if err != nil || c.StatusTokenFile != tok {
		t.Errorf("got %q, %v", c.StatusTokenFile, err)
	}
}

func TestCrossChecks(t *testing.T) {
	cert, key := writeCfgFile(t, "c.pem", "c"), writeCfgFile(t, "k.pem", "k")
	_, err := loadCfg(t, []string{"--tls-cert", cert}, cfgEnv{}, "")
	checkOneLine(t, err, "tls-key", "must be set when tls-cert is")
	_, err = loadCfg(t, []string{"--tls-key", key}, cfgEnv{}, "")
	checkOneLine(t, err, "tls-cert", "must be set when tls-key is")
	if c, err := loadCfg(t, []string{"--tls-cert", cert, "--tls-key", key}, cfgEnv{}, ""); err != nil || c.TLSCert != cert || c.TLSKey != key {
		t.Errorf("both set: %+v, %v", c, err)
	}
	_, err = loadCfg(t, []string{"--gc-backoff-base", "1m"}, cfgEnv{}, "")
	checkOneLine(t, err, "gc-backoff-base", "gc-backoff-max (30s)")
}

func TestTOMLErrors(t *testing.T) {
	cases := []struct {
		name, toml, setting, want string
	}{
		{"unknown key", "region = 'x'\nmax_meetings = 3\n", "max_meetings", "is not a setting"},
		{"wrong case", "MAX-MEETINGS = 3\n", "MAX-MEETINGS", "is not a setting"},
		{"unknown table", "[server]\nport = 1\n", "server", "is not a setting"},
		{"table under a setting", "[region]\nname = 'x'\n", "region", "not a TOML hash"},
		{"float", "max-meetings = 1.5\n", "max-meetings", "not a TOML float"},
		{"bool", "region = true\n", "region", "not a TOML bool"},
		{"array", "region = ['a']\n", "region", "not a TOML array"},
		{"syntax", "region = \n", "config", "is not valid TOML: line 1"},
		{"duplicate", "region = 'a'\nregion = 'b'\n", "config", "is not valid TOML"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := writeCfgFile(t, "edgemc.toml", tc.toml)
			_, err := loadCfg(t, []string{"--config", file}, cfgEnv{}, "")
			checkOneLine(t, err, tc.setting, tc.want)
		})
	}
}

func TestUnknownEnvIsAWarning(t *testing.T) {
	c, err := loadCfg(t, nil, cfgEnv{"EDGEMC_MAX_MEETING": "5", "EDGEMC_REGION": "eu", "EDGEMC_CONFIG": "", "HOME": "/root"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "EDGEMC_MAX_MEETING") || strings.Contains(c.Warnings[0], "5") {
		t.Errorf("warnings = %q, want one naming EDGEMC_MAX_MEETING without its value", c.Warnings)
	}
	if c.Region != "eu" {
		t.Errorf("region = %q", c.Region)
	}
}

func TestFlagErrors(t *testing.T) {
	if _, err := loadCfg(t, []string{"--no-such-flag"}, cfgEnv{}, ""); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: %v", err)
	}
	if _, err := loadCfg(t, []string{"-h"}, cfgEnv{}, ""); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	// Arguments after the flags are left for the caller.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	if _, err := loadConfig(fs, []string{"--region", "eu", "extra"}, cfgEnv{}.get, nil, "h", "/nonexistent"); err != nil || fs.Arg(0) != "extra" {
		t.Errorf("args %q, %v", fs.Args(), err)
	}
}

func TestLogValue(t *testing.T) {
	const secret = "very-secret-status-token"
	tok := writeCfgFile(t, "status.token", secret)
	c, err := loadCfg(t, []string{"--status-token-file", tok}, cfgEnv{}, "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log, err := NewLogger("json", "info", &buf, OutputPipe)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("config", "config", c)
	var line struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.Bytes())
	}
	if strings.Contains(buf.String(), secret) {
		t.Errorf("log contains the token: %s", buf.Bytes())
	}
	for key, want := range map[string]any{"status-token-file": tok, "max-meetings": float64(1000), "drain-timeout": "30s", "id": "testhost"} {
		if got := line.Config[key]; got != want {
			t.Errorf("logged %s = %v, want %v", key, got, want)
		}
	}
	if len(line.Config) != len(settings())+1 {
		t.Errorf("logged %d settings, want %d", len(line.Config), len(settings())+1)
	}
}

func TestNewLogger(t *testing.T) {
	cases := []struct {
		format string
		out    LogOutput
		json   bool
	}{
		{"auto", OutputTerminal, false},
		{"auto", OutputPipe, true},
		{"text", OutputPipe, false},
		{"json", OutputTerminal, true},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		log, err := NewLogger(tc.format, "info", &buf, tc.out)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hello", "join_token", "abc.def.ghi", "binding_token", "0badc0de", "Authorization", "Bearer x", "token_file", "/etc/t")
		out := buf.String()
		if isJSON := json.Valid(bytes.TrimSpace(buf.Bytes())); isJSON != tc.json {
			t.Errorf("%s/output %v: JSON=%v, want %v: %s", tc.format, tc.out, isJSON, tc.json, out)
		}
		for _, leak := range []string{"abc.def.ghi", "0badc0de", "Bearer x"} {
			if strings.Contains(out, leak) {
				t.Errorf("%s log leaks %q: %s", tc.format, leak, out)
			}
		}
		if !strings.Contains(out, "/etc/t") {
			t.Errorf("%s log lost a non-secret attribute: %s", tc.format, out)
		}
	}

	var buf bytes.Buffer
	log, err := NewLogger("text", "warn", &buf, OutputTerminal)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("quiet")
	log.Warn("loud")
	if strings.Contains(buf.String(), "quiet") || !strings.Contains(buf.String(), "loud") {
		t.Errorf("level warn: %s", buf.String())
	}
	if _, err := NewLogger("xml", "info", io.Discard, OutputPipe); !errors.Is(err, ErrInvalidSetting) {
		t.Errorf("bad format: %v", err)
	}
	if _, err := NewLogger("json", "loud", io.Discard, OutputPipe); !errors.Is(err, ErrInvalidSetting) {
		t.Errorf("bad level: %v", err)
	}
}

func BenchmarkLoadConfig(b *testing.B) {
	file := filepath.Join(b.TempDir(), "edgemc.toml")
	if err := os.WriteFile(file, []byte("region = 'eu'\nmax-meetings = 500\ndrain-timeout = '10s'\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	e := cfgEnv{"EDGEMC_LOG_LEVEL": "debug"}
	for b.Loop() {
		fs := flag.NewFlagSet("edgemc", flag.ContinueOnError)
		if _, err := loadConfig(fs, []string{"--config", file, "--http-listen=127.0.0.1:0"}, e.get, e.list(), "h", ""); err != nil {
			b.Fatal(err)
		}
	}
}
