package appliance

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/BurntSushi/toml"
)

// DefaultConfigFile is read when neither --config nor EDGEMC_CONFIG names a
// file; it is skipped when it does not exist.
const DefaultConfigFile = "/etc/edgemc/edgemc.toml"

// envPrefix starts every edgemc environment variable.
const envPrefix = "EDGEMC_"

// hostPlaceholder in a default value is replaced by the host name.
const hostPlaceholder = "<host>"

// Config is edgemc's effective configuration. Every field is one setting of
// [Settings]; build it with [LoadConfig] (or [DefaultConfig] in tests).
type Config struct {
	ID, Region, DataDir string

	WebTransportListen, WebTransportAdvertise, GRPCListen, GRPCAdvertise, HTTPListen string

	GCURL, GCTokenFile, JWKSURL, JWTPublicKey string

	MaxMeetings, MaxParticipants uint32

	TLSCert, TLSKey string

	DrainTimeout, DisconnectGrace time.Duration

	StatusTokenFile, BindingSecretFile string

	LogFormat, LogLevel string

	GCBackoffBase, GCBackoffMax, FastHeartbeat, ComprehensiveHeartbeat time.Duration
	FirstFrameTimeout, SessionIdleTimeout, SweepInterval               time.Duration

	// ConfigFile is the TOML file that was read ("" if none).
	ConfigFile string
	// Warnings are problems that did not stop loading (such as an unknown
	// EDGEMC_* environment variable), for the caller to log once a logger
	// exists. They never contain setting values.
	Warnings []string
}

// SettingInfo describes one setting, for help text and documentation.
type SettingInfo struct {
	Name    string // flag name and TOML key, e.g. "max-meetings"
	Env     string // environment variable, e.g. "EDGEMC_MAX_MEETINGS"
	Default string // "" when unset by default; "<host>" stands for the host name
	Help    string
	// Advanced marks test and tuning settings that operators rarely change.
	Advanced bool
}

// ErrInvalidSetting is matched (errors.Is) by every *SettingError.
var ErrInvalidSetting = errors.New("invalid setting")

// SettingError is a setting whose value edgemc cannot use.
type SettingError struct {
	Setting string // setting name, e.g. "max-meetings", or a TOML key that is not one
	Value   string // the offending value ("" when there is none to show)
	Reason  string // what is wrong, phrased to follow the value: "is not a whole number"
	Source  string // where the value came from: "flag --x", "env EDGEMC_X", a file path, "default"
}

// Error is one line. It never shows the value of a secret-bearing setting
// (one that names a file holding a secret), in case a secret was given
// where its file name belongs.
func (e *SettingError) Error() string {
	var b strings.Builder
	b.WriteString("invalid setting ")
	b.WriteString(e.Setting)
	b.WriteString(": ")
	if e.Value != "" && !isSecretSetting(e.Setting) {
		b.WriteString(strconv.Quote(e.Value))
		b.WriteByte(' ')
	}
	b.WriteString(oneLine(e.Reason))
	if e.Source != "" {
		b.WriteString(" (from ")
		b.WriteString(oneLine(e.Source))
		b.WriteByte(')')
	}
	return b.String()
}

// oneLine collapses runs of white space, newlines included, to one space.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Is makes errors.Is(err, ErrInvalidSetting) true.
func (e *SettingError) Is(target error) bool { return target == ErrInvalidSetting }

// setting is one row of the table that flags, environment variables, TOML
// keys, defaults, help text and logging are all derived from.
type setting struct {
	name, def, help string
	advanced        bool
	// secret marks a setting naming a file whose contents are a secret.
	secret bool
	// field points at the setting's Config field: *string, *uint32 or
	// *time.Duration. The kind decides parsing; check adds rules for strings.
	field func(*Config) any
	check func(string) error
}

// settings is the table of every setting, in help order.
func settings() []setting {
	return []setting{
		{name: "id", def: hostPlaceholder, help: "this Meeting Controller's id, unique in the deployment",
			field: func(c *Config) any { return &c.ID }, check: identifier},
		{name: "region", def: "local", help: "region reported to the Global Controller",
			field: func(c *Config) any { return &c.Region }, check: identifier},
		{name: "data-dir", def: "./edgemc-data", help: "directory for the state database and generated keys",
			field: func(c *Config) any { return &c.DataDir }, check: nonEmpty},
		{name: "webtransport-listen", def: ":4433", help: "UDP host:port for WebTransport (clients)",
			field: func(c *Config) any { return &c.WebTransportListen }, check: listenAddr},
		{name: "webtransport-advertise", def: "https://" + hostPlaceholder + ":4433/", help: "WebTransport URL given to the Global Controller",
			field: func(c *Config) any { return &c.WebTransportAdvertise }, check: advertiseURL("https")},
		{name: "grpc-listen", def: ":50052", help: "TCP host:port for gRPC (Global Controller and media handlers)",
			field: func(c *Config) any { return &c.GRPCListen }, check: listenAddr},
		{name: "grpc-advertise", def: "http://" + hostPlaceholder + ":50052", help: "gRPC URL given to the Global Controller and media handlers",
			field: func(c *Config) any { return &c.GRPCAdvertise }, check: advertiseURL("http", "https")},
		{name: "http-listen", def: "127.0.0.1:8081", help: "TCP host:port for the status page, health and metrics",
			field: func(c *Config) any { return &c.HTTPListen }, check: listenAddr},
		{name: "gc-url", help: "Global Controller gRPC URL (http:// or https://); empty runs without a GC",
			field: func(c *Config) any { return &c.GCURL }, check: optional(advertiseURL("http", "https"))},
		{name: "gc-token-file", secret: true, help: "file holding the bearer token for calls to the Global Controller",
			field: func(c *Config) any { return &c.GCTokenFile }, check: optional(readableFile)},
		{name: "jwks-url", help: "JWKS URL of the Auth Controller (token signing keys)",
			field: func(c *Config) any { return &c.JWKSURL }, check: optional(advertiseURL("http", "https"))},
		{name: "jwt-public-key", help: "Ed25519 public key PEM file for tokens, instead of jwks-url on air-gapped hosts",
			field: func(c *Config) any { return &c.JWTPublicKey }, check: optional(ed25519PEMFile)},
		{name: "max-meetings", def: "1000", help: "meetings this controller accepts",
			field: func(c *Config) any { return &c.MaxMeetings }},
		{name: "max-participants", def: "10000", help: "participants this controller accepts, over all meetings",
			field: func(c *Config) any { return &c.MaxParticipants }},
		{name: "tls-cert", help: "TLS certificate PEM file (with tls-key); empty generates a self-signed one",
			field: func(c *Config) any { return &c.TLSCert }, check: optional(readableFile)},
		{name: "tls-key", help: "TLS private key PEM file (with tls-cert)",
			field: func(c *Config) any { return &c.TLSKey }, check: optional(readableFile)},
		{name: "drain-timeout", def: "30s", help: "how long a drain (SIGTERM) waits for meetings to end",
			field: func(c *Config) any { return &c.DrainTimeout }},
		{name: "disconnect-grace", def: "30s", help: "how long a disconnected participant may reconnect before leaving",
			field: func(c *Config) any { return &c.DisconnectGrace }},
		{name: "status-token-file", secret: true, help: "file holding the bearer token for the status page; empty leaves it open",
			field: func(c *Config) any { return &c.StatusTokenFile }, check: optional(readableFile)},
		{name: "binding-secret-file", secret: true, help: "file holding the session-binding secret; empty generates data-dir/binding.key",
			field: func(c *Config) any { return &c.BindingSecretFile }, check: optional(readableFile)},
		{name: "log-format", def: "auto", help: "auto, text or json; auto is text on a terminal, json otherwise and under systemd",
			field: func(c *Config) any { return &c.LogFormat }, check: oneOf("auto", "text", "json")},
		{name: "log-level", def: "info", help: "debug, info, warn or error",
			field: func(c *Config) any { return &c.LogLevel }, check: oneOf("debug", "info", "warn", "error")},
		{name: "gc-backoff-base", def: "1s", advanced: true, help: "first retry delay for GC registration, doubling up to gc-backoff-max",
			field: func(c *Config) any { return &c.GCBackoffBase }},
		{name: "gc-backoff-max", def: "30s", advanced: true, help: "longest retry delay for GC registration",
			field: func(c *Config) any { return &c.GCBackoffMax }},
		{name: "fast-heartbeat", def: "10s", advanced: true, help: "fast heartbeat interval when the GC's answer gives none",
			field: func(c *Config) any { return &c.FastHeartbeat }},
		{name: "comprehensive-heartbeat", def: "30s", advanced: true, help: "comprehensive heartbeat interval when the GC's answer gives none",
			field: func(c *Config) any { return &c.ComprehensiveHeartbeat }},
		{name: "first-frame-timeout", def: "10s", advanced: true, help: "how long a new session may take to send its join",
			field: func(c *Config) any { return &c.FirstFrameTimeout }},
		{name: "session-idle-timeout", def: "15s", advanced: true, help: "how long a silent client connection lives before the participant counts as disconnected",
			field: func(c *Config) any { return &c.SessionIdleTimeout }},
		{name: "sweep-interval", def: "10s", advanced: true, help: "how often expired state is removed",
			field: func(c *Config) any { return &c.SweepInterval }},
	}
}

// Settings describes every setting, in the order help lists them.
func Settings() []SettingInfo {
	table := settings()
	out := make([]SettingInfo, len(table))
	for i, s := range table {
		out[i] = SettingInfo{Name: s.name, Env: envName(s.name), Default: s.def, Help: s.help, Advanced: s.advanced}
	}
	return out
}

func isSecretSetting(name string) bool {
	return slices.ContainsFunc(settings(), func(s setting) bool { return s.name == name && s.secret })
}

// envName is the environment variable for a setting: EDGEMC_ and the name in
// upper case with '-' turned into '_'.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// set parses v into the setting's field of c. The error is the reason only.
func (s setting) set(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		if s.check != nil {
			if err := s.check(v); err != nil {
				return err
			}
		}
		*p = v
	case *uint32:
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && n > math.MaxUint32:
			return fmt.Errorf("is larger than %d", uint32(math.MaxUint32))
		case err != nil:
			return errors.New("is not a whole number")
		case n == 0:
			return errors.New("must be greater than zero")
		}
		*p = uint32(n)
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			return errors.New(`is not a duration (such as "30s" or "1m30s")`)
		case d <= 0:
			return errors.New("must be greater than zero")
		}
		*p = d
	default:
		panic(fmt.Sprintf("setting %s: unsupported field type %T", s.name, p))
	}
	return nil
}

// value is the setting's current value in c, for logging.
func (s setting) value(c *Config) slog.Value {
	switch p := s.field(c).(type) {
	case *string:
		return slog.StringValue(*p)
	case *uint32:
		return slog.Uint64Value(uint64(*p))
	case *time.Duration:
		return slog.StringValue(p.String())
	}
	return slog.Value{}
}

func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// DefaultConfig is the configuration with every setting at its default and
// <host> replaced by this machine's host name.
func DefaultConfig() Config { return defaultConfig(hostName()) }

func defaultConfig(host string) Config {
	var c Config
	for _, s := range settings() {
		// Defaults are valid by construction (a test checks); a host name
		// edgemc cannot use as an id is reported by LoadConfig.
		_ = s.set(&c, strings.ReplaceAll(s.def, hostPlaceholder, host))
	}
	return c
}

// LoadConfig builds the configuration from flags (args), the environment
// (getenv, and environ to spot unknown EDGEMC_* variables) and the TOML file,
// in that order of precedence over the defaults. fs is a FlagSet the caller
// owns (so subcommands can add their own flags); LoadConfig registers every
// setting and --config on it and parses args. The file is --config, else
// EDGEMC_CONFIG, else DefaultConfigFile when it exists.
//
// An error is one line: a *SettingError (errors.Is ErrInvalidSetting), a flag
// syntax error, or flag.ErrHelp when args ask for help.
func LoadConfig(fs *flag.FlagSet, args []string, getenv func(string) string, environ []string) (Config, error) {
	return loadConfig(fs, args, getenv, environ, hostName(), DefaultConfigFile)
}

// rawValue is a setting's value as text and where it came from.
type rawValue struct {
	text, source string
}

// flagValue records a flag's text; parsing waits until precedence is known.
type flagValue struct {
	text string
	set  bool
}

func (f *flagValue) String() string     { return f.text }
func (f *flagValue) Set(v string) error { f.text, f.set = v, true; return nil }

func loadConfig(fset *flag.FlagSet, args []string, getenv func(string) string, environ []string, host, defaultFile string) (Config, error) {
	table := settings()

	configFlag := &flagValue{}
	fset.Var(configFlag, "config", fmt.Sprintf("TOML configuration file (env %s; default %s when it exists)", envName("config"), defaultFile))
	flags := make([]*flagValue, len(table))
	for i, s := range table {
		flags[i] = &flagValue{text: s.def}
		fset.Var(flags[i], s.name, fmt.Sprintf("%s (env %s)", s.help, envName(s.name)))
	}
	if err := fset.Parse(args); err != nil {
		return Config{}, err
	}

	c := Config{}
	var fileValues map[string]rawValue
	path, source, explicit := defaultFile, "", false
	switch {
	case configFlag.set:
		path, source, explicit = configFlag.text, "flag --config", true
	case getenv(envName("config")) != "":
		path, source, explicit = getenv(envName("config")), "env "+envName("config"), true
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		c.ConfigFile = path
		if fileValues, err = parseTOML(data, path, table); err != nil {
			return Config{}, err
		}
	case explicit || !errors.Is(err, os.ErrNotExist):
		return Config{}, &SettingError{Setting: "config", Value: path, Reason: fileReason(err), Source: source}
	}

	for i, s := range table {
		raw := rawValue{text: strings.ReplaceAll(s.def, hostPlaceholder, host), source: "default"}
		if v, ok := fileValues[s.name]; ok {
			raw = v
		}
		if v := getenv(envName(s.name)); v != "" {
			raw = rawValue{text: v, source: "env " + envName(s.name)}
		}
		if flags[i].set {
			raw = rawValue{text: flags[i].text, source: "flag --" + s.name}
		}
		if err := s.set(&c, raw.text); err != nil {
			return Config{}, &SettingError{Setting: s.name, Value: raw.text, Reason: err.Error(), Source: raw.source}
		}
	}
	if err := c.crossCheck(); err != nil {
		return Config{}, err
	}
	c.Warnings = unknownEnv(environ, table)
	return c, nil
}

// crossCheck applies the rules that involve more than one setting.
func (c *Config) crossCheck() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		missing, other := "tls-key", "tls-cert"
		if c.TLSCert == "" {
			missing, other = other, missing
		}
		return &SettingError{Setting: missing, Reason: "must be set when " + other + " is"}
	}
	if c.GCBackoffBase > c.GCBackoffMax {
		return &SettingError{Setting: "gc-backoff-base", Value: c.GCBackoffBase.String(),
			Reason: "must not be longer than gc-backoff-max (" + c.GCBackoffMax.String() + ")"}
	}
	return nil
}

// unknownEnv warns about EDGEMC_* variables that name no setting (a typo
// would otherwise be silently ignored). Values are never included.
func unknownEnv(environ []string, table []setting) []string {
	var warnings []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, envPrefix) || name == envName("config") ||
			slices.ContainsFunc(table, func(s setting) bool { return envName(s.name) == name }) {
			continue
		}
		warnings = append(warnings, "unknown environment variable "+name+" is ignored")
	}
	return warnings
}

// parseTOML reads the settings a TOML file sets. Keys are setting names; a
// key that is not one is an error naming it. The decode target is a struct
// built from the table so that toml.MetaData.Undecoded reports exactly the
// unknown keys.
func parseTOML(data []byte, path string, table []setting) (map[string]rawValue, error) {
	fields := make([]reflect.StructField, len(table))
	for i, s := range table {
		fields[i] = reflect.StructField{
			Name: "S" + strconv.Itoa(i),
			Type: reflect.TypeFor[any](),
			Tag:  reflect.StructTag(`toml:"` + s.name + `"`),
		}
	}
	doc := reflect.New(reflect.StructOf(fields))
	md, err := toml.Decode(string(data), doc.Interface())
	if err != nil {
		return nil, &SettingError{Setting: "config", Value: path, Reason: "is not valid TOML: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	values := make(map[string]rawValue)
	for i, s := range table {
		if !md.IsDefined(s.name) {
			continue
		}
		var text string
		switch v := doc.Elem().Field(i).Interface().(type) {
		case string:
			text = v
		case int64:
			text = strconv.FormatInt(v, 10)
		default:
			return nil, &SettingError{Setting: s.name, Reason: "must be a string or a whole number, not a TOML " + strings.ToLower(md.Type(s.name)), Source: path}
		}
		values[s.name] = rawValue{text: text, source: path}
	}
	unknown := md.Undecoded()
	// The decoder also matches field names case-insensitively; only the
	// exact spelling is a setting.
	for _, key := range md.Keys() {
		if !slices.ContainsFunc(table, func(s setting) bool { return s.name == key[0] }) {
			unknown = append(unknown, key)
		}
	}
	if len(unknown) > 0 {
		return nil, &SettingError{Setting: unknown[0].String(), Reason: `is not a setting ("edgemc help" lists them)`, Source: path}
	}
	return values, nil
}

// Checks for string settings. Each returns the reason, phrased to follow the value.

func nonEmpty(v string) error {
	if strings.TrimSpace(v) == "" {
		return errors.New("must not be empty")
	}
	return nil
}

// identifier is a non-empty printable name without spaces, at most 255 bytes.
func identifier(v string) error {
	switch {
	case v == "":
		return errors.New("must not be empty")
	case len(v) > 255:
		return errors.New("is longer than 255 bytes")
	case strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }):
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

func optional(check func(string) error) func(string) error {
	return func(v string) error {
		if v == "" {
			return nil
		}
		return check(v)
	}
}

func oneOf(allowed ...string) func(string) error {
	return func(v string) error {
		if !slices.Contains(allowed, v) {
			return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
		}
		return nil
	}
}

func listenAddr(v string) error {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return errors.New(`is not host:port (such as ":4433" or "127.0.0.1:8081")`)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		return errors.New("does not end in a port number from 0 to 65535")
	}
	return nil
}

// advertiseURL accepts an absolute URL with one of the schemes and a host.
func advertiseURL(schemes ...string) func(string) error {
	want := strings.Join(schemes, ":// or ") + "://"
	return func(v string) error {
		u, err := url.Parse(v)
		if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.Hostname() == "" {
			return fmt.Errorf("is not an %s URL with a host", want)
		}
		if p := u.Port(); p != "" {
			if _, err := strconv.ParseUint(p, 10, 16); err != nil {
				return errors.New("has a port out of range")
			}
		}
		return nil
	}
}

// readableFile opens the file to prove it can be read. The reason never
// contains the path or the contents.
func readableFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return errors.New(fileReason(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return errors.New("is a directory, not a file")
	}
	if _, err := f.Read(make([]byte, 1)); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(fileReason(err))
	}
	return nil
}

// fileReason describes a file error without repeating the path.
func fileReason(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return "cannot be read: " + err.Error()
}

// ed25519PEMFile accepts a readable PEM file holding an Ed25519 public key
// (PKIX "PUBLIC KEY").
func ed25519PEMFile(path string) error {
	if err := readableFile(path); err != nil {
		return err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return errors.New(fileReason(err))
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return errors.New("is not a PEM file")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if _, ok := key.(ed25519.PublicKey); err != nil || !ok {
		return errors.New("does not hold an Ed25519 public key (PEM \"PUBLIC KEY\")")
	}
	return nil
}

// LogValue lists every setting by name for the start-up log: paths and
// addresses only, never the contents of the files they name.
func (c Config) LogValue() slog.Value {
	table := settings()
	attrs := make([]slog.Attr, 0, len(table)+1)
	attrs = append(attrs, slog.String("config", c.ConfigFile))
	for _, s := range table {
		attrs = append(attrs, slog.Attr{Key: s.name, Value: s.value(&c)})
	}
	return slog.GroupValue(attrs...)
}

// NewLogger builds edgemc's logger. format is "auto", "text" or "json"; auto
// means text when isTerminal, else JSON (the caller passes isTerminal false
// under systemd). level is "debug", "info", "warn" or "error". Attributes
// whose key names a token, secret, password or authorization are redacted,
// as a second line of defence.
func NewLogger(format, level string, w io.Writer, isTerminal bool) (*slog.Logger, error) {
	levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	lvl, ok := levels[level]
	if !ok {
		return nil, &SettingError{Setting: "log-level", Value: level, Reason: "must be one of debug, info, warn, error"}
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: redact}
	switch {
	case format == "text" || format == "auto" && isTerminal:
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case format == "json" || format == "auto":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &SettingError{Setting: "log-format", Value: format, Reason: "must be one of auto, text, json"}
}

// redact hides the value of any attribute whose key says it carries a
// secret, e.g. "token", "join_token", "binding_token", "authorization".
func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindGroup {
		return a
	}
	k := strings.ToLower(a.Key)
	for _, suffix := range []string{"token", "secret", "password", "authorization"} {
		if strings.HasSuffix(k, suffix) {
			return slog.String(a.Key, "REDACTED")
		}
	}
	return a
}
