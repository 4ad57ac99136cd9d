package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgemc/edgemc/appliance"
)

// runCLI runs edgemc in-process with env as its whole environment.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	c := cli{
		stdout:  &out,
		stderr:  &errOut,
		getenv:  func(k string) string { return env[k] },
		environ: environ,
		exit:    func(code int) { t.Errorf("exit(%d) called", code) },
	}
	code = c.run(context.Background(), args)
	return code, out.String(), errOut.String()
}

// emptyConfig is an environment naming an empty config file, so that a
// host's /etc/edgemc/edgemc.toml cannot affect the test.
func emptyConfig(t *testing.T) map[string]string {
	p := filepath.Join(t.TempDir(), "edgemc.toml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"EDGEMC_CONFIG": p}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "Usage:"},
		{"unknown command", []string{"frobnicate"}, `edgemc: unknown command "frobnicate"`},
		{"bad value", []string{"serve", "--max-meetings=abc"}, `edgemc: invalid setting max-meetings: "abc" is not a whole number (from flag --max-meetings)`},
		{"unknown flag", []string{"lab", "--max-meeting=3"}, "edgemc: lab: unknown flag --max-meeting (edgemc help lab lists them)"},
		{"extra argument", []string{"serve", "now"}, `edgemc: serve: unexpected argument "now"`},
		{"cert-hash bad value", []string{"cert-hash", "--tls-cert=/nonexistent"}, "edgemc: invalid setting tls-cert:"},
		{"version argument", []string{"version", "x"}, "edgemc: version takes no arguments"},
		{"help unknown", []string{"help", "x"}, `edgemc: help: unknown command "x"`},
		{"client without join", []string{"client"}, `edgemc: client: the only subcommand is "join"`},
		{"client join without url", []string{"client", "join", "--meeting=m"}, "--url and --meeting are required"},
		{"client join two tokens", []string{"client", "join", "--url=https://127.0.0.1:1/", "--meeting=m", "--token=a", "--token-file=/x"}, "not both"},
		{"client join missing token file", []string{"client", "join", "--url=https://127.0.0.1:1/", "--meeting=m", "--token-file=/nonexistent"}, "--token-file:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, emptyConfig(t), tc.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(errOut, tc.want) || out != "" {
				t.Errorf("stderr %q does not contain %q (stdout %q)", errOut, tc.want, out)
			}
			if tc.args != nil && strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr is not one line: %q", errOut)
			}
		})
	}
}

func TestHelpListsEverySetting(t *testing.T) {
	code, out, _ := runCLI(t, nil, "help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, s := range appliance.Settings() {
		def := s.Default
		if def == "" {
			def = "(none)"
		}
		if !strings.Contains(out, "--"+s.Name+" ") || !strings.Contains(out, s.Env) || !strings.Contains(out, "default "+def+"\n") || !strings.Contains(out, s.Help) {
			t.Errorf("help lacks setting %s (%s, default %s)", s.Name, s.Env, def)
		}
	}
	for _, cmd := range commands() {
		if !strings.Contains(out, "edgemc "+cmd.name) {
			t.Errorf("help lacks command %s", cmd.name)
		}
	}
	for _, args := range [][]string{{"help", "serve"}, {"serve", "-h"}, {"lab", "--help"}, {"-h"}} {
		if code, out, _ := runCLI(t, nil, args...); code != exitOK || !strings.Contains(out, "EDGEMC_MAX_MEETINGS") {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
	if code, out, _ := runCLI(t, nil, "client", "join", "-h"); code != exitOK || !strings.Contains(out, "\n  --token-file string\n") {
		t.Errorf("client join -h: exit %d, output %q", code, out)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, nil, "version")
	if code != exitOK || !strings.HasPrefix(out, "edgemc "+buildVersion()+" (go") {
		t.Errorf("exit %d, output %q", code, out)
	}
}

func TestLogFormatAuto(t *testing.T) {
	cfg := appliance.DefaultConfig()
	cases := []struct {
		terminal bool
		env      map[string]string
		json     bool
	}{
		{true, nil, false},
		{false, nil, true},
		{true, map[string]string{"INVOCATION_ID": "abc"}, true},
	}
	for _, tc := range cases {
		var buf bytes.Buffer
		c := cli{stderr: &buf, getenv: func(k string) string { return tc.env[k] }, stderrTerminal: tc.terminal}
		if _, err := c.logger(cfg); err != nil {
			t.Fatal(err)
		}
		first, _, _ := strings.Cut(buf.String(), "\n")
		if got := json.Valid([]byte(first)); got != tc.json {
			t.Errorf("terminal=%v env=%v: JSON %v, want %v: %s", tc.terminal, tc.env, got, tc.json, first)
		}
	}

	// Standard error is the journal: entries go to journald (its socket),
	// or, when it cannot be reached, to standard error with their priority.
	var buf bytes.Buffer
	c := cli{stderr: &buf, getenv: func(string) string { return "" }, stderrTerminal: true, stderrJournal: true}
	if _, err := c.logger(cfg); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); out != "" && !strings.HasPrefix(out, "<6>edgemc starting version=") {
		t.Errorf("under the journal, stderr got %q", out)
	}
}

// msgHandler sends every log message to a channel.
type msgHandler chan string

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	h <- r.Message
	return nil
}
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgHandler) WithGroup(string) slog.Handler      { return h }

// TestSecondSignalExits drives notifyTwice with SIGUSR1 (so the test
// process is never at risk from SIGINT/SIGTERM).
func TestSecondSignalExits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		repeat time.Duration
		want   []string // log messages after the second signal
	}{
		{"second signal exits", 0, []string{"second signal received: exiting at once"}},
		{"a quick repeat is the same signal", time.Hour, []string{"repeated signal ignored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := make(msgHandler, 4)
			exited := make(chan int, 1)
			ctx, stop := notifyTwice(context.Background(), slog.New(msgs), func(code int) { exited <- code }, "draining", tc.repeat, syscall.SIGUSR1)
			defer stop()
			self, err := os.FindProcess(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}

			self.Signal(syscall.SIGUSR1)
			<-ctx.Done()
			if m := <-msgs; !strings.HasPrefix(m, "signal received: draining") {
				t.Errorf("first signal logged %q", m)
			}
			self.Signal(syscall.SIGUSR1)
			for _, want := range tc.want {
				if m := <-msgs; m != want {
					t.Errorf("second signal logged %q, want %q", m, want)
				}
			}
			if tc.repeat == 0 {
				if code := <-exited; code != exitFailure {
					t.Errorf("exit(%d), want %d", code, exitFailure)
				}
				return
			}
			// The repeat was logged as ignored, so exit was not called.
			select {
			case code := <-exited:
				t.Errorf("exit(%d) after a repeated signal", code)
			default:
			}
		})
	}
}

func TestStopReleasesSignals(t *testing.T) {
	ctx, stop := notifyTwice(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		func(code int) { t.Errorf("exit(%d) after stop", code) }, "draining", 0, syscall.SIGUSR1)
	stop()
	if ctx.Err() == nil {
		t.Error("stop did not cancel the context")
	}
}
