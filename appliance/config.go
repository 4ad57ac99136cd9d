package appliance

import (
	"errors"
	"flag"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultConfigFile is read when neither --config nor EDGEMC_CONFIG names a
// file; it is skipped when it does not exist.
const DefaultConfigFile = "/etc/edgemc/edgemc.toml"

// Config is edgemc's effective configuration. Every field is one setting of
// [Settings]; build it with [LoadConfig] (or [DefaultConfig] in tests).
type Config struct {
	ID, Region, DataDir string

	WebTransportListen, WebTransportAdvertise, GRPCListen, GRPCAdvertise, HTTPListen string

	GCURL, GCTokenFile, JWKSURL, JWTPublicKey string

	// The MC's own credentials at the Auth Controller.
	ACURL, ClientID, ClientSecretFile string

	MaxMeetings, MaxParticipants uint32

	MaxSessionsPerIdentity, SessionMessageRate, SessionMessageBurst uint32

	MaxPendingSessions, MaxPendingSessionsPerAddress                      uint32
	GRPCMaxConnections, GRPCMaxConnectionsPerAddress, GRPCMaxStreams      uint32
	HTTPMaxConnections, HTTPMaxConnectionsPerAddress, HTTPMaxEventStreams uint32

	TLSCert, TLSKey string

	// Transport security of the control plane: the gRPC server's TLS, the
	// trust of outbound calls, and the pins on callers' service tokens.
	GRPCTLSCert, GRPCTLSKey, GRPCClientCA                         string
	ControlPlaneCA, ControlPlaneClientCert, ControlPlaneClientKey string
	AllowPlaintextControlPlane                                    bool
	ServiceTokenIssuer, ServiceTokenAudience                      string
	ServiceTokenSubjects                                          []string

	DrainTimeout, DisconnectGrace, EmptyMeetingTimeout time.Duration

	StatusTokenFile, BindingSecretFile string

	LogFormat, LogLevel string

	GCBackoffBase, GCBackoffMax, FastHeartbeat, ComprehensiveHeartbeat time.Duration
	FirstFrameTimeout, SessionIdleTimeout, SweepInterval               time.Duration
	SlowClientTimeout, GRPCRequestTimeout, GRPCIdleTimeout             time.Duration

	CPUProfile string

	// ConfigFile is the TOML file that was read ("" if none).
	ConfigFile string
	// Given names the settings set by a flag, the environment or the file
	// rather than left at their default, in table order.
	Given []string
	// Warnings are problems that did not stop loading (such as an unknown
	// EDGEMC_* environment variable), for the caller to log once a logger
	// exists. They never contain setting values.
	Warnings []string
}

// ErrInvalidSetting is matched (errors.Is) by every *SettingError, and so
// by every error of [LoadConfig] and [Config.Validate] but flag syntax.
var ErrInvalidSetting = errors.New("invalid setting")

// SettingError is a setting whose value edgemc cannot use.
type SettingError struct {
	Setting string // setting name, e.g. "max-meetings", or a TOML key that is not one
	Value   string // the offending value ("" when there is none to show)
	Reason  string // what is wrong, phrased to follow the value: "is not a whole number"
	Source  string // where the value came from: "flag --x", "env EDGEMC_X", a file path, "default"
	// Missing marks a required setting that has no value.
	Missing bool
}

// Error is one line. It never shows the value of a secret-bearing setting
// (one that names a file holding a secret), in case a secret was given
// where its file name belongs.
func (e *SettingError) Error() string {
	var b strings.Builder
	if e.Missing {
		b.WriteString("missing setting ")
	} else {
		b.WriteString("invalid setting ")
	}
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

// hostName is this machine's host name, or "localhost" when it has none.
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
		_ = s.set(&c, defaultValue(s, host).text)
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

// loadConfig is LoadConfig with the host name and default file given.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string, environ []string, host, defaultFile string) (Config, error) {
	table := settings()
	flags, err := parseFlags(fs, args, table, defaultFile)
	if err != nil {
		return Config{}, err
	}
	path, fileValues, err := readConfigFile(flags.config, getenv, defaultFile, table)
	if err != nil {
		return Config{}, err
	}

	c := Config{ConfigFile: path}
	sources := make(map[string]string, len(table))
	for i, s := range table {
		raw := defaultValue(s, host)
		if v, ok := fileValues[s.name]; ok {
			raw = v
		}
		if v, ok := envValue(s, getenv); ok {
			raw = v
		}
		if v, ok := flags.value(i, s); ok {
			raw = v
		}
		if err := s.set(&c, raw.text); err != nil {
			return Config{}, &SettingError{Setting: s.name, Value: raw.text, Reason: err.Error(), Source: raw.source}
		}
		sources[s.name] = raw.source
		if raw.source != "default" {
			c.Given = append(c.Given, s.name)
		}
	}
	if err := c.crossCheck(); err != nil {
		return Config{}, err
	}
	if err := c.checkControlPlane(sources); err != nil {
		return Config{}, err
	}
	c.Warnings = unknownEnv(environ, table)
	return c, nil
}
