package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
	"github.com/edgemc/edgemc/webtransport"
)

// loadgenFlags are the options of `edgemc loadgen` that are not
// loadgen.Config fields as is.
type loadgenFlags struct {
	certHash, lab, statusTokenFile, keyFile, kid, assign, protocol, prefix string
	meetings                                                               int
	insecure, json, restartsStdin                                          bool
}

func loadgenFlagSet(cfg *loadgen.Config, f *loadgenFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("edgemc loadgen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&cfg.URL, "url", "", "WebTransport URL of the target, https://127.0.0.1:PORT/ (loopback only; from --lab when omitted)")
	fs.StringVar(&f.certHash, "cert-hash", "", "hex SHA-256 of the target's certificate (edgemc cert-hash prints it)")
	fs.BoolVar(&f.insecure, "insecure", false, "skip certificate verification")
	fs.StringVar(&f.lab, "lab", "", "status URL of an edgemc lab (http://127.0.0.1:8081): its issuer mints the tokens, for its demo meeting")
	fs.StringVar(&f.statusTokenFile, "status-token-file", "", "file holding the lab's status token, if it has one")
	fs.StringVar(&f.keyFile, "jwt-private-key", "", "Ed25519 private key PEM (PKCS#8) whose public key the target trusts (--jwt-public-key)")
	fs.StringVar(&f.kid, "jwt-kid", "edgemc-loadgen", "key id written in minted tokens")
	fs.StringVar(&f.assign, "assign-grpc", "", "gRPC host:port of the target: create the meetings first, as the GC would (needs --jwt-private-key)")
	fs.StringVar(&f.protocol, "protocol", string(loadgen.Signaling), "signaling (edgemc) or echo (the bare floor server of the benchmarks)")
	fs.IntVar(&f.meetings, "meetings", 1, "number of meetings; session i joins meeting i mod M and the first of each is its host")
	fs.StringVar(&f.prefix, "meeting-prefix", "loadgen-", "meeting ids are this prefix and a number")
	fs.IntVar(&cfg.Sessions, "sessions", 100, fmt.Sprintf("sessions to open (at most %d)", loadgen.MaxSessions))
	fs.Float64Var(&cfg.Rate, "rate", 0, "target joins per second; 0 joins as fast as --concurrency allows")
	fs.IntVar(&cfg.Concurrency, "concurrency", 64, "joins in flight at most (past 16, raise the target's max-pending-sessions-per-address: they come from one address)")
	fs.DurationVar(&cfg.JoinTimeout, "join-timeout", 10*time.Second, "bound of one join")
	fs.IntVar(&cfg.Mutes, "mutes", 0, "host-mute rounds per meeting after the joins (fan-out latency)")
	fs.IntVar(&cfg.MuteMeetings, "mute-meetings", 0, "run the host-mute rounds in the first N meetings only (0: all)")
	fs.DurationVar(&cfg.Settle, "settle", 0, "pause after the joins before the first host-mute round")
	fs.DurationVar(&cfg.MuteGap, "mute-gap", 20*time.Millisecond, "pause before each host-mute round")
	fs.DurationVar(&cfg.MuteTimeout, "mute-timeout", 5*time.Second, "bound of one host-mute round")
	fs.IntVar(&cfg.Reconnects, "reconnects", 0, "participants that drop and reconnect with their session binding")
	fs.DurationVar(&cfg.Hold, "hold", 0, "keep the sessions open this long after the joins")
	fs.BoolVar(&f.restartsStdin, "restarts-stdin", false, "after --hold, hold the sessions until standard input ends; each line read announces a restart of the server (a \"restored\" event follows once every session is back)")
	fs.BoolVar(&cfg.Rejoin, "rejoin", false, "reconnect sessions lost while held with their session binding, with backoff, until the hold ends")
	fs.DurationVar(&cfg.RejoinTimeout, "rejoin-timeout", 3*time.Second, "bound of one reconnection attempt (--rejoin)")
	fs.BoolVar(&cfg.Resume, "tls-resume", false, "keep each session's TLS session ticket so that its reconnections resume the TLS session")
	fs.BoolVar(&cfg.Leave, "leave", true, "close sessions cleanly at the end (false drops them)")
	fs.DurationVar(&cfg.MaxDuration, "duration", 5*time.Minute, fmt.Sprintf("bound of the whole run (at most %v)", loadgen.MaxRunTime))
	fs.BoolVar(&f.json, "json", false, "write phase events and the report as JSON lines")
	return fs
}

// loadgen runs `edgemc loadgen`.
func (c cli) loadgen(ctx context.Context, args []string) int {
	var (
		cfg loadgen.Config
		f   loadgenFlags
	)
	fs := loadgenFlagSet(&cfg, &f)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeCommandHelp(c.stdout, "loadgen")
			return exitOK
		}
		return c.usageError(flagError("loadgen", err))
	}
	if fs.NArg() > 0 {
		return c.usageError(fmt.Errorf("loadgen: unexpected argument %q", fs.Arg(0)))
	}
	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	ctx, stop := c.signalContext(ctx, log, "stopping the load")
	defer stop()
	if err := f.apply(ctx, &cfg); err != nil {
		if errors.Is(err, loadgen.ErrNotLoopback) || errors.Is(err, errLoadgenUsage) {
			return c.usageError(err)
		}
		fmt.Fprintf(c.stderr, "edgemc: loadgen: %v\n", err)
		return exitFailure
	}
	enc := json.NewEncoder(c.stdout)
	if f.json {
		cfg.Observe = func(e loadgen.Event) { _ = enc.Encode(e) }
	}
	if f.restartsStdin {
		if c.stdin == nil {
			return c.usageError(fmt.Errorf("loadgen: --restarts-stdin: no standard input"))
		}
		cfg.Restarts = readLines(c.stdin)
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, loadgen.ErrConfig) || errors.Is(err, loadgen.ErrNotLoopback) {
			return c.usageError(err)
		}
		fmt.Fprintf(c.stderr, "edgemc: loadgen: %v\n", err)
		return exitFailure
	}
	if f.json {
		_ = enc.Encode(struct {
			Event  string         `json:"event"`
			Report loadgen.Report `json:"report"`
		}{"report", rep})
	} else {
		writeLoadReport(c.stdout, rep)
	}
	return exitOK
}

// readLines sends a value for every line read from r and closes the channel
// when r ends.
func readLines(r io.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- struct{}{}
		}
	}()
	return ch
}

// errLoadgenUsage marks option combinations that cannot work.
var errLoadgenUsage = errors.New("loadgen")

// apply turns the options into the token source, dial options and meetings.
func (f *loadgenFlags) apply(ctx context.Context, cfg *loadgen.Config) error {
	usage := func(msg string) error { return fmt.Errorf("%w: %s", errLoadgenUsage, msg) }
	cfg.Protocol = loadgen.Protocol(f.protocol)
	if f.meetings < 1 {
		return usage("--meetings must be at least 1")
	}
	for i := range f.meetings {
		cfg.Meetings = append(cfg.Meetings, fmt.Sprint(f.prefix, i))
	}
	switch {
	case f.lab != "" && f.keyFile != "":
		return usage("give --lab or --jwt-private-key, not both")
	case f.assign != "" && f.keyFile == "":
		return usage("--assign-grpc needs --jwt-private-key (the service token is signed with it)")
	case f.lab != "":
		bearer := ""
		if f.statusTokenFile != "" {
			tok, err := readToken(f.statusTokenFile)
			if err != nil {
				return usage("--status-token-file: " + err.Error())
			}
			bearer = tok
		}
		lab, err := loadgen.NewLabTokens(f.lab, bearer)
		if err != nil {
			return err
		}
		info, err := lab.Info(ctx, true, "loadgen")
		if err != nil {
			return err
		}
		if f.meetings != 1 {
			return usage("the lab holds one meeting: --meetings must be 1")
		}
		cfg.Meetings, cfg.Tokens = []string{info.MeetingID}, lab
		if cfg.URL == "" {
			cfg.URL = info.URL
		}
		if f.certHash == "" && !f.insecure {
			f.certHash = info.CertSHA256
		}
	case f.keyFile != "":
		raw, err := os.ReadFile(f.keyFile)
		if err != nil {
			return usage("--jwt-private-key: " + err.Error())
		}
		priv, err := loadgen.ParsePrivateKeyPEM(raw)
		if err != nil {
			return usage("--jwt-private-key: " + err.Error())
		}
		tokens := loadgen.NewKeyTokens(priv, f.kid)
		cfg.Tokens = tokens
		if f.assign != "" {
			if cfg.Assign, err = tokens.Assigner(f.assign); err != nil {
				return err
			}
		}
	case cfg.Protocol != loadgen.Echo:
		return usage("give --jwt-private-key or --lab: the signaling protocol needs join tokens")
	}
	if cfg.URL == "" {
		return usage("--url is required (or --lab)")
	}
	cfg.Dial = webtransport.DialOptions{InsecureSkipVerify: f.insecure}
	if f.certHash != "" {
		h, err := hex.DecodeString(f.certHash)
		if err != nil || len(h) != 32 {
			return usage("--cert-hash must be 64 hex digits (a SHA-256)")
		}
		cfg.Dial.CertHashes = [][32]byte{[32]byte(h)}
	}
	return nil
}

// writeLoadReport prints a report for people.
func writeLoadReport(w io.Writer, r loadgen.Report) {
	fmt.Fprintf(w, "%s: %d of %d sessions joined %d meetings in %.2f s (%.0f joins/s)\n",
		r.Protocol, r.Joined, r.Sessions, r.Meetings, r.JoinSeconds, r.JoinsPerSecond)
	line := func(what string, s loadgen.Summary) {
		if s.Count > 0 {
			fmt.Fprintf(w, "  %-18s n=%d  p50 %.2f ms  p99 %.2f ms  p999 %.2f ms  max %.2f ms\n", what, s.Count, s.P50, s.P99, s.P999, s.Max)
		}
	}
	line("join latency", r.JoinLatency)
	line("fan-out latency", r.FanOut)
	line("reconnect latency", r.Reconnect)
	line("rejoin latency", r.Rejoin)
	if r.Reconnect.Count+r.Rejoin.Count > 0 {
		fmt.Fprintf(w, "  reconnections that recovered their participant: %d, that resumed their TLS session: %d\n", r.Recovered, r.Resumed)
	}
	for _, f := range []struct {
		what string
		m    map[string]int
	}{{"join failures", r.Failures}, {"fan-out failures", r.FanOutFailures}, {"reconnect failures", r.ReconnectFails}, {"rejoin attempts failed", r.RejoinFailures}} {
		keys := make([]string, 0, len(f.m))
		for k := range f.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s %d\n", f.what, k, f.m[k])
		}
	}
	if r.Lost > 0 {
		fmt.Fprintf(w, "  sessions lost while held: %d\n", r.Lost)
	}
}
