package appliance

import (
	"slices"
	"strings"
)

// envPrefix starts every edgemc environment variable.
const envPrefix = "EDGEMC_"

// hostPlaceholder in a default value is replaced by the host name.
const hostPlaceholder = "<host>"

// SettingInfo describes one setting, for help text and documentation.
type SettingInfo struct {
	Name    string // flag name and TOML key, e.g. "max-meetings"
	Env     string // environment variable, e.g. "EDGEMC_MAX_MEETINGS"
	Default string // "" when unset by default; "<host>" stands for the host name
	Help    string
	// Advanced marks test and tuning settings that operators rarely change.
	Advanced bool
}

// setting is one row of the table that flags, environment variables, TOML
// keys, defaults, help text and logging are all derived from.
type setting struct {
	name, def, help string
	advanced        bool
	// secret marks a setting naming a file whose contents are a secret.
	secret bool
	// field points at the setting's Config field: *string, *uint32,
	// *time.Duration, *bool or *[]string (a comma-separated list). The kind
	// decides parsing; check adds rules for strings and list entries.
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
		{name: "grpc-advertise", def: "http://" + hostPlaceholder + ":50052", help: "gRPC URL given to the Global Controller and media handlers; https:// by default when grpc-tls-cert is set",
			field: func(c *Config) any { return &c.GRPCAdvertise }, check: advertiseURL("http", "https")},
		{name: "http-listen", def: "127.0.0.1:8081", help: "TCP host:port for the status page, health and metrics",
			field: func(c *Config) any { return &c.HTTPListen }, check: listenAddr},
		{name: "gc-url", help: "Global Controller gRPC URL (https://, or http:// to loopback); empty runs without a GC",
			field: func(c *Config) any { return &c.GCURL }, check: optional(advertiseURL("http", "https"))},
		{name: "gc-token-file", secret: true, help: "file holding a fixed bearer token for calls to the Global Controller and media handlers, instead of ac-url",
			field: func(c *Config) any { return &c.GCTokenFile }, check: optional(readableFile)},
		{name: "ac-url", help: "Auth Controller URL from which edgemc obtains its own service token (https://, or http:// to loopback)",
			field: func(c *Config) any { return &c.ACURL }, check: optional(advertiseURL("http", "https"))},
		{name: "client-id", help: "edgemc's OAuth client id at the Auth Controller (with ac-url)",
			field: func(c *Config) any { return &c.ClientID }, check: optional(identifier)},
		{name: "client-secret-file", secret: true, help: "file holding edgemc's OAuth client secret at the Auth Controller (with ac-url)",
			field: func(c *Config) any { return &c.ClientSecretFile }, check: optional(readableFile)},
		{name: "jwks-url", help: "JWKS URL of the Auth Controller (token signing keys; https://, or http:// to loopback)",
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
		{name: "grpc-tls-cert", help: "certificate chain PEM file of the gRPC server (with grpc-tls-key), re-read when it changes; empty serves plaintext",
			field: func(c *Config) any { return &c.GRPCTLSCert }, check: optional(certificateFile)},
		{name: "grpc-tls-key", secret: true, help: "private key PEM file of grpc-tls-cert",
			field: func(c *Config) any { return &c.GRPCTLSKey }, check: optional(readableFile)},
		{name: "grpc-client-ca", help: "CA bundle PEM file: gRPC callers must also present a client certificate it signed (mutual TLS)",
			field: func(c *Config) any { return &c.GRPCClientCA }, check: optional(caBundleFile)},
		{name: "control-plane-ca", help: "CA bundle PEM file trusted for calls to the GC, the Auth Controller and media handlers; empty trusts the system roots",
			field: func(c *Config) any { return &c.ControlPlaneCA }, check: optional(caBundleFile)},
		{name: "control-plane-client-cert", help: "client certificate PEM file shown on control-plane calls (mutual TLS; with control-plane-client-key)",
			field: func(c *Config) any { return &c.ControlPlaneClientCert }, check: optional(certificateFile)},
		{name: "control-plane-client-key", secret: true, help: "private key PEM file of control-plane-client-cert",
			field: func(c *Config) any { return &c.ControlPlaneClientKey }, check: optional(readableFile)},
		{name: "allow-plaintext-control-plane", def: "false", help: "allow http:// control-plane URLs to hosts other than loopback, sending tokens in the clear",
			field: func(c *Config) any { return &c.AllowPlaintextControlPlane }},
		{name: "service-token-issuer", help: "when set, callers' service tokens must carry this iss",
			field: func(c *Config) any { return &c.ServiceTokenIssuer }, check: optional(identifier)},
		{name: "service-token-audience", help: "when set, callers' service tokens must carry this aud",
			field: func(c *Config) any { return &c.ServiceTokenAudience }, check: optional(identifier)},
		{name: "service-token-subjects", help: "when set, the only sub values accepted in callers' service tokens (e.g. the GC ids), comma-separated or a TOML list",
			field: func(c *Config) any { return &c.ServiceTokenSubjects }, check: identifier},
		{name: "drain-timeout", def: "30s", help: "how long a drain (SIGTERM) waits for meetings to end",
			field: func(c *Config) any { return &c.DrainTimeout }},
		{name: "disconnect-grace", def: "30s", help: "how long a disconnected participant may reconnect before leaving",
			field: func(c *Config) any { return &c.DisconnectGrace }},
		{name: "max-sessions-per-identity", def: "4", help: "participants one token subject may hold at once in one meeting; a further join replaces its oldest disconnected one, or is refused",
			field: func(c *Config) any { return &c.MaxSessionsPerIdentity }},
		{name: "session-message-rate", def: "20", help: "signaling messages per second a session may send on average",
			field: func(c *Config) any { return &c.SessionMessageRate }},
		{name: "session-message-burst", def: "50", help: "signaling messages a session may send at once above session-message-rate",
			field: func(c *Config) any { return &c.SessionMessageBurst }},
		{name: "empty-meeting-timeout", def: "5m", help: "how long a meeting with nobody in it (connected or within their grace) is kept before it ends",
			field: func(c *Config) any { return &c.EmptyMeetingTimeout }},
		{name: "max-pending-sessions", def: "256", help: "signaling sessions that have not sent a valid join yet, over all clients; past it new sessions get HTTP 503",
			field: func(c *Config) any { return &c.MaxPendingSessions }},
		{name: "max-pending-sessions-per-address", def: "16", help: "signaling sessions not joined yet from one client address (IPv6: one /64)",
			field: func(c *Config) any { return &c.MaxPendingSessionsPerAddress }},
		{name: "grpc-max-connections", def: "256", help: "open gRPC connections; past it, or past grpc-max-connections-per-address from one address, a new one is closed at once",
			field: func(c *Config) any { return &c.GRPCMaxConnections }},
		{name: "grpc-max-connections-per-address", def: "16", help: "open gRPC connections from one client address",
			field: func(c *Config) any { return &c.GRPCMaxConnectionsPerAddress }},
		{name: "grpc-max-streams", def: "32", help: "concurrent gRPC calls on one connection",
			field: func(c *Config) any { return &c.GRPCMaxStreams }},
		{name: "http-max-connections", def: "64", help: "open connections to http-listen; past it, or past http-max-connections-per-address from one address, a new one is closed at once",
			field: func(c *Config) any { return &c.HTTPMaxConnections }},
		{name: "http-max-connections-per-address", def: "16", help: "open connections to http-listen from one client address",
			field: func(c *Config) any { return &c.HTTPMaxConnectionsPerAddress }},
		{name: "http-max-event-streams", def: "8", help: "status pages following live updates at once; past it a new one gets HTTP 503 (the page then polls)",
			field: func(c *Config) any { return &c.HTTPMaxEventStreams }},
		{name: "status-token-file", secret: true, help: "file holding the bearer token for the status page; empty leaves it open",
			field: func(c *Config) any { return &c.StatusTokenFile }, check: optional(readableFile)},
		{name: "binding-secret-file", secret: true, help: "file holding the session-binding secret; empty generates data-dir/binding.key",
			field: func(c *Config) any { return &c.BindingSecretFile }, check: optional(readableFile)},
		{name: "log-format", def: "auto", help: "auto, text or json; auto is text on a terminal, the native journal protocol under systemd, json otherwise",
			field: func(c *Config) any { return &c.LogFormat }, check: oneOf("auto", "text", "json")},
		{name: "log-level", def: "info", help: "debug, info, warn or error",
			field: func(c *Config) any { return &c.LogLevel }, check: oneOf("debug", "info", "warn", "error")},
		{name: "gc-backoff-base", def: "1s", advanced: true, help: "first retry delay for GC registration and Auth Controller token requests, doubling up to gc-backoff-max; each wait is drawn between half and all of it",
			field: func(c *Config) any { return &c.GCBackoffBase }},
		{name: "gc-backoff-max", def: "30s", advanced: true, help: "longest retry delay for GC registration and Auth Controller token requests",
			field: func(c *Config) any { return &c.GCBackoffMax }},
		{name: "fast-heartbeat", def: "10s", advanced: true, help: "fast heartbeat interval when the GC's answer gives none",
			field: func(c *Config) any { return &c.FastHeartbeat }},
		{name: "comprehensive-heartbeat", def: "30s", advanced: true, help: "comprehensive heartbeat interval when the GC's answer gives none",
			field: func(c *Config) any { return &c.ComprehensiveHeartbeat }},
		{name: "first-frame-timeout", def: "5s", advanced: true, help: "how long a new session may take to send its join, and a new connection to open a session",
			field: func(c *Config) any { return &c.FirstFrameTimeout }},
		{name: "slow-client-timeout", def: "10s", advanced: true, help: "how long a signaling message may wait to be sent to its client before that client is dropped as too slow",
			field: func(c *Config) any { return &c.SlowClientTimeout }},
		{name: "grpc-request-timeout", def: "10s", advanced: true, help: "how long a new gRPC connection may take to set up, and a call to send its request after its headers",
			field: func(c *Config) any { return &c.GRPCRequestTimeout }},
		{name: "grpc-idle-timeout", def: "2m", advanced: true, help: "how long a gRPC connection without calls stays open (one that never made an authenticated call holds none)",
			field: func(c *Config) any { return &c.GRPCIdleTimeout }},
		{name: "session-idle-timeout", def: "15s", advanced: true, help: "how long a silent client connection lives before the participant counts as disconnected",
			field: func(c *Config) any { return &c.SessionIdleTimeout }},
		{name: "sweep-interval", def: "10s", advanced: true, help: "how often expired state is removed",
			field: func(c *Config) any { return &c.SweepInterval }},
		{name: "cpu-profile", advanced: true, help: "file to write a CPU profile (pprof) of the process to, from start until the drain begins; empty writes none",
			field: func(c *Config) any { return &c.CPUProfile }},
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

// isSetting reports whether name is exactly the name of a setting in table.
func isSetting(table []setting, name string) bool {
	return slices.ContainsFunc(table, func(s setting) bool { return s.name == name })
}

// isSecretSetting reports whether name is a setting that names a file
// holding a secret.
func isSecretSetting(name string) bool {
	return slices.ContainsFunc(settings(), func(s setting) bool { return s.name == name && s.secret })
}

// envName is the environment variable for a setting: EDGEMC_ and the name in
// upper case with '-' turned into '_'.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}
