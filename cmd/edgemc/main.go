// Command edgemc is the Dark Tower Meeting Controller appliance: one static
// binary that runs meetings over WebTransport, registers with the Global
// Controller over gRPC and serves a status page. `edgemc help` lists its
// subcommands and settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/edgemc/edgemc/appliance"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the appliance or a command failed while running
	exitUsage   = 2 // bad command line or configuration
)

// cli is what a command may touch of the process, so tests can run commands
// in-process.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	environ        []string
	// stderrTerminal is true when stderr is a terminal, stderrJournal when
	// it is systemd's journal (JOURNAL_STREAM names it), for log-format auto.
	stderrTerminal, stderrJournal bool
	// exit ends the process; a second signal calls it.
	exit func(int)
}

func main() {
	c := cli{
		stdin:          os.Stdin,
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		getenv:         os.Getenv,
		environ:        os.Environ(),
		stderrTerminal: isTerminal(os.Stderr),
		stderrJournal:  isJournal(),
		exit:           os.Exit,
	}
	os.Exit(c.run(context.Background(), os.Args[1:]))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// isJournal reports whether stderr is systemd's journal stream.
func isJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return ok && err == nil
}

// command is one subcommand.
type command struct {
	name, args, summary string
	run                 func(c cli, ctx context.Context, args []string) int
}

func commands() []command {
	return []command{
		{"serve", "[settings]", "run the Meeting Controller (what the systemd unit runs)", cli.serve},
		{"lab", "[settings]", "run it with a development Global Controller, Auth Controller, media handler and token issuer on loopback", cli.lab},
		{"cert-hash", "[settings]", "print the SHA-256 of the WebTransport certificate (for serverCertificateHashes)", cli.certHash},
		{"client", "join [options]", "join a meeting and print every server message as a JSON line", cli.client},
		{"loadgen", "[options]", "generate signaling load against an edgemc", cli.loadgen},
		{"version", "", "print the version", cli.version},
		{"help", "[command]", "print this help, or a command's options", cli.help},
	}
}

// run dispatches to a subcommand and returns the exit code.
func (c cli) run(ctx context.Context, args []string) int {
	if len(args) == 0 {
		writeUsage(c.stderr)
		return exitUsage
	}
	for _, cmd := range commands() {
		if cmd.name == args[0] {
			return cmd.run(c, ctx, args[1:])
		}
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		return c.help(ctx, nil)
	}
	return c.usageError(fmt.Errorf("unknown command %q (edgemc help lists them)", args[0]))
}

// usageError prints err as the one line a usage or configuration error gets
// (with the error priority journald reads, under systemd).
func (c cli) usageError(err error) int {
	prefix := ""
	if c.stderrJournal {
		prefix = "<3>"
	}
	fmt.Fprintf(c.stderr, "%sedgemc: %v\n", prefix, err)
	return exitUsage
}

// buildVersion is version, or for an unstamped build the VCS revision the
// Go toolchain recorded.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev == "" {
		return version
	}
	return version + "-" + rev + dirty
}

func (c cli) version(_ context.Context, args []string) int {
	if len(args) > 0 {
		return c.usageError(errors.New("version takes no arguments"))
	}
	fmt.Fprintf(c.stdout, "edgemc %s (%s %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

// loadConfig parses the settings of a serving command. done is true when
// the command should return code at once (help was asked for, or an error).
func (c cli) loadConfig(name string, args []string) (cfg appliance.Config, code int, done bool) {
	fs := flag.NewFlagSet("edgemc "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := appliance.LoadConfig(fs, args, c.getenv, c.environ)
	switch {
	case errors.Is(err, flag.ErrHelp):
		writeCommandHelp(c.stdout, name)
		return cfg, exitOK, true
	case err != nil && !errors.Is(err, appliance.ErrInvalidSetting):
		return cfg, c.usageError(flagError(name, err)), true
	case err != nil:
		return cfg, c.usageError(err), true
	case fs.NArg() > 0:
		return cfg, c.usageError(fmt.Errorf("%s: unexpected argument %q", name, fs.Arg(0))), true
	}
	return cfg, exitOK, false
}

// logger builds the logger the configuration asks for and logs the
// warnings and the effective configuration.
func (c cli) logger(cfg appliance.Config) (*slog.Logger, error) {
	out := appliance.OutputPipe
	switch {
	case c.stderrJournal:
		out = appliance.OutputJournal
	case c.stderrTerminal && c.getenv("INVOCATION_ID") == "":
		// Under systemd without the journal (StandardError=tty, say): JSON.
		out = appliance.OutputTerminal
	}
	log, err := appliance.NewLogger(cfg.LogFormat, cfg.LogLevel, c.stderr, out)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	log.Info("edgemc starting", "version", buildVersion(), "settings", cfg)
	return log, nil
}

func (c cli) serve(ctx context.Context, args []string) int {
	return c.runAppliance(ctx, "serve", args, false)
}

func (c cli) lab(ctx context.Context, args []string) int {
	return c.runAppliance(ctx, "lab", args, true)
}

func (c cli) runAppliance(ctx context.Context, name string, args []string, lab bool) int {
	cfg, code, done := c.loadConfig(name, args)
	if done {
		return code
	}
	opts := appliance.RunOptions{Version: buildVersion(), Lab: lab}
	// Checked before anything is logged or created.
	if err := cfg.Validate(opts); err != nil {
		if cfg.ConfigFile == "" && len(cfg.Given) == 0 {
			err = fmt.Errorf(`%w; to try edgemc on this machine without a Dark Tower deployment, run "edgemc lab"`, err)
		}
		return c.usageError(err)
	}
	log, err := c.logger(cfg)
	if err != nil {
		return c.usageError(err)
	}
	ctx, stop := c.signalContext(ctx, log, "draining")
	defer stop()
	if cfg.CPUProfile != "" {
		end, err := startCPUProfile(ctx, cfg.CPUProfile)
		if err != nil {
			log.Error("edgemc failed", "err", err)
			return exitFailure
		}
		defer end()
	}

	opts.Logger = log
	if err := appliance.Run(ctx, cfg, opts); err != nil {
		log.Error("edgemc failed", "err", err)
		if errors.Is(err, appliance.ErrInvalidSetting) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

// startCPUProfile writes a CPU profile to path until ctx ends (the drain
// begins) or end is called, whichever comes first.
func startCPUProfile(ctx context.Context, path string) (end func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu-profile: %w", err)
	}
	var once sync.Once
	stop := func() { once.Do(pprof.StopCPUProfile) }
	context.AfterFunc(ctx, stop)
	return func() { stop(); f.Close() }, nil
}

// flagError rewrites the flag package's errors in the --name spelling
// edgemc's help uses, pointing at the command's help for unknown flags.
func flagError(command string, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("%s: unknown flag --%s (edgemc help %s lists them)", command, name, strings.Fields(command)[0])
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("%s: --%s needs a value", command, name)
	}
	// invalid value "x" for flag -name: reason; invalid boolean value "x" for -name: reason
	for _, sep := range []string{" for flag -", " for -"} {
		i, v := strings.LastIndex(msg, sep), strings.Index(msg, " value ")
		if !strings.HasPrefix(msg, "invalid ") || i < 0 || v < 0 || v > i {
			continue
		}
		value := msg[v+len(" value ") : i]
		name, reason, _ := strings.Cut(msg[i+len(sep):], ": ")
		if reason == "parse error" { // says nothing the value does not
			return fmt.Errorf("%s: invalid value %s for --%s", command, value, name)
		}
		return fmt.Errorf("%s: invalid value %s for --%s: %s", command, value, name, reason)
	}
	return fmt.Errorf("%s: %w", command, err)
}

// signalRepeat is how soon after the first signal a repeat counts as the
// same event: some senders (timeout(1), a kill of the process group after
// one of the process) deliver one stop request twice.
const signalRepeat = 500 * time.Millisecond

// signalContext is cancelled by the first SIGINT or SIGTERM, which starts
// what the command does to stop (doing: "draining", "leaving the meeting");
// a second one exits at once with exitFailure. The returned stop releases
// the signals.
func (c cli) signalContext(parent context.Context, log *slog.Logger, doing string) (context.Context, context.CancelFunc) {
	return notifyTwice(parent, log, c.exit, doing, signalRepeat, syscall.SIGINT, syscall.SIGTERM)
}

// notifyTwice is signalContext for any signals and repeat window (tests use
// SIGUSR1). One goroutine receives every signal: it logs the first and then
// cancels the context, so whoever sees the context end also finds the line
// logged.
func notifyTwice(parent context.Context, log *slog.Logger, exit func(int), doing string, repeat time.Duration, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	seen := make(chan os.Signal, 2)
	signal.Notify(seen, sigs...)
	done := make(chan struct{})
	go func() {
		var first time.Time
		for {
			select {
			case s := <-seen:
				switch {
				case first.IsZero():
					first = time.Now()
					log.Info("signal received: "+doing+"; a second signal exits at once", "signal", s.String())
					cancel()
				case time.Since(first) < repeat:
					log.Debug("repeated signal ignored", "signal", s.String(), "after", time.Since(first).String())
				default:
					log.Error("second signal received: exiting at once", "signal", s.String())
					exit(exitFailure)
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(seen)
		close(done)
		cancel()
	}
}

func (c cli) certHash(_ context.Context, args []string) int {
	cfg, code, done := c.loadConfig("cert-hash", args)
	if done {
		return code
	}
	hash, notAfter, err := appliance.CertHash(cfg)
	if err != nil {
		fmt.Fprintf(c.stderr, "edgemc: cert-hash: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(c.stdout, hash)
	fmt.Fprintf(c.stderr, "certificate valid until %s\n", notAfter.UTC().Format("2006-01-02T15:04:05Z"))
	return exitOK
}

func (c cli) help(_ context.Context, args []string) int {
	switch {
	case len(args) == 0:
		writeUsage(c.stdout)
	case len(args) == 1 && isCommand(args[0]):
		writeCommandHelp(c.stdout, args[0])
	default:
		return c.usageError(fmt.Errorf("help: unknown command %q", args[0]))
	}
	return exitOK
}

func isCommand(name string) bool {
	for _, cmd := range commands() {
		if cmd.name == name {
			return true
		}
	}
	return false
}
