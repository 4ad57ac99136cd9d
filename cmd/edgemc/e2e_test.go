package main

// End-to-end harness: TestMain builds the real edgemc binary once (as `make
// build` does), and startEdgemc runs it as a child process with its JSON log
// stream parsed line by line so tests wait on log events instead of sleeping.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgemc/edgemc/gc/devissuer"
)

// edgemcBin is the binary TestMain built; set once before any test runs.
var edgemcBin string

// e2eVersion is stamped into the test binary with -X main.version.
const e2eVersion = "e2e-test"

// waitTimeout bounds every wait of the harness; a healthy edgemc is ready
// in well under a second.
const waitTimeout = 30 * time.Second

// readyMsg is the log message edgemc writes once every listener is up.
const readyMsg = "edgemc ready"

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "edgemc-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	edgemcBin = filepath.Join(dir, "edgemc")
	// The same flags as `make build`: static, trimmed, version stamped.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version="+e2eVersion, "-o", edgemcBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building edgemc: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// logLine is one line edgemc wrote to stderr: Fields holds the parsed JSON
// object, nil when the line is not JSON (such as a one-line usage error).
type logLine struct {
	Raw    string
	Fields map[string]any
}

// Msg is the slog message ("" for a line that is not JSON).
func (l logLine) Msg() string { return l.Str("msg") }

// Level is the slog level, e.g. "INFO".
func (l logLine) Level() string { return l.Str("level") }

// Str is a top-level string field ("" when absent or not a string).
func (l logLine) Str(key string) string {
	s, _ := l.Fields[key].(string)
	return s
}

// edgemcProc is one running edgemc started by startEdgemc.
type edgemcProc struct {
	t   *testing.T
	cmd *exec.Cmd
	// Dir is the working directory (a fresh temp dir), so the default
	// data-dir ./edgemc-data lands inside it.
	Dir string

	stdout syncBuffer

	mu      sync.Mutex
	lines   []logLine
	changed chan struct{} // closed and replaced whenever a line arrives

	exited   chan struct{} // closed once the process is gone and stderr is drained
	exitCode int           // valid after exited is closed
}

// loopbackArgs are serve flags that put every listener on a free loopback
// port; the ready log line tells where.
func loopbackArgs() []string {
	return []string{
		"--webtransport-listen=127.0.0.1:0",
		"--grpc-listen=127.0.0.1:0",
		"--http-listen=127.0.0.1:0",
		"--webtransport-advertise=https://127.0.0.1:4433/",
		"--grpc-advertise=http://127.0.0.1:50052",
	}
}

// startEdgemc runs the binary with args in a fresh directory. env entries
// ("KEY=value") are added to an environment cleared of EDGEMC_* and systemd
// variables, with an empty config file and JSON logs at debug level unless
// env overrides them. The
// process is killed when the test ends if it is still running, and its logs
// are printed if the test failed.
func startEdgemc(t *testing.T, args []string, env ...string) *edgemcProc {
	t.Helper()
	return startEdgemcIn(t, t.TempDir(), args, env...)
}

// startEdgemcIn is startEdgemc in a given directory, e.g. the directory of
// an earlier run, to restart on the same ./edgemc-data.
func startEdgemcIn(t *testing.T, dir string, args []string, env ...string) *edgemcProc {
	t.Helper()
	p := &edgemcProc{
		t:       t,
		Dir:     dir,
		changed: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	// An empty config file keeps a host's /etc/edgemc/edgemc.toml out.
	config := filepath.Join(p.Dir, "edgemc.toml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(edgemcBin, args...)
	p.cmd.Dir = p.Dir
	p.cmd.Env = append(cleanEnv(), "EDGEMC_CONFIG="+config, "EDGEMC_LOG_FORMAT=json", "EDGEMC_LOG_LEVEL=debug")
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout = &p.stdout
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start edgemc: %v", err)
	}
	go p.readLogs(stderr)
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("edgemc %s: exit code %d; stderr:\n%s\nstdout:\n%s", strings.Join(args, " "), p.exitCode, p.stderrText(), p.stdout.String())
		}
	})
	return p
}

// cleanEnv is this process's environment without anything that would change
// how edgemc configures itself.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "EDGEMC_") || name == "JOURNAL_STREAM" || name == "INVOCATION_ID" || name == "NOTIFY_SOCKET" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *edgemcProc) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := logLine{Raw: sc.Text()}
		if json.Unmarshal(sc.Bytes(), &l.Fields) != nil {
			l.Fields = nil
		}
		p.mu.Lock()
		p.lines = append(p.lines, l)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) // a line over 1 MiB: keep the pipe drained
	err := p.cmd.Wait()
	p.exitCode = p.cmd.ProcessState.ExitCode()
	if err != nil && p.exitCode == 0 {
		p.exitCode = -1
	}
	close(p.exited)
}

// Logs is every line so far.
func (p *edgemcProc) Logs() []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

func (p *edgemcProc) stderrText() string {
	var b strings.Builder
	for _, l := range p.Logs() {
		b.WriteString(l.Raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// Stdout is what edgemc wrote to standard output so far.
func (p *edgemcProc) Stdout() string { return p.stdout.String() }

// WaitLog waits for the first line, from the start of the run, for which
// match is true and returns it. It fails the test if edgemc exits first or
// waitTimeout passes.
func (p *edgemcProc) WaitLog(what string, match func(logLine) bool) logLine {
	p.t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for next := 0; ; {
		p.mu.Lock()
		lines, changed := p.lines, p.changed
		p.mu.Unlock()
		for ; next < len(lines); next++ {
			if match(lines[next]) {
				return lines[next]
			}
		}
		select {
		case <-changed:
		case <-p.exited:
			if len(p.Logs()) > next {
				continue // lines that arrived just before the exit
			}
			p.t.Fatalf("edgemc exited with code %d before logging %s", p.exitCode, what)
		case <-timeout.C:
			p.t.Fatalf("edgemc did not log %s within %v", what, waitTimeout)
		}
	}
}

// WaitMsg waits for a log line with message msg.
func (p *edgemcProc) WaitMsg(msg string) logLine {
	p.t.Helper()
	return p.WaitLog(fmt.Sprintf("%q", msg), func(l logLine) bool { return l.Msg() == msg })
}

// WaitReady waits for the ready line; its fields give the bound addresses
// ("http", "grpc", "webtransport") and "cert_sha256".
func (p *edgemcProc) WaitReady() logLine {
	p.t.Helper()
	return p.WaitMsg(readyMsg)
}

// WaitLive polls http://addr/health/live until it answers 200, for tests
// that cannot use the log stream (e.g. text logs).
func (p *edgemcProc) WaitLive(addr string) {
	p.t.Helper()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		resp, err := client.Get("http://" + addr + "/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-tick.C:
		case <-p.exited:
			p.t.Fatalf("edgemc exited with code %d before %s/health/live answered", p.exitCode, addr)
		case <-timeout.C:
			p.t.Fatalf("%s/health/live did not answer 200 within %v (last error %v)", addr, waitTimeout, err)
		}
	}
}

// Signal sends sig to edgemc.
func (p *edgemcProc) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// Wait waits for edgemc to exit and returns its exit code.
func (p *edgemcProc) Wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(waitTimeout):
		p.t.Fatalf("edgemc did not exit within %v", waitTimeout)
		return -1
	}
}

// Stop sends SIGTERM and returns the exit code once edgemc is gone.
func (p *edgemcProc) Stop() int {
	p.t.Helper()
	p.Signal(syscall.SIGTERM)
	return p.Wait()
}

// runEdgemc runs a command that exits by itself and returns its exit code,
// standard output and standard error.
func runEdgemc(t *testing.T, args []string, env ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := startEdgemc(t, args, env...)
	code = p.Wait()
	return code, p.Stdout(), p.stderrText()
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine exec starts.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The harness's own checks: they hold for any edgemc and show how the
// harness is used.

func TestE2EVersion(t *testing.T) {
	code, out, _ := runEdgemc(t, []string{"version"})
	if code != exitOK || !strings.HasPrefix(out, "edgemc "+e2eVersion+" ") {
		t.Errorf("exit %d, stdout %q", code, out)
	}
}

func TestE2EBadSettingExitsTwoWithOneLine(t *testing.T) {
	code, out, errOut := runEdgemc(t, []string{"serve", "--max-meetings=abc"})
	want := `edgemc: invalid setting max-meetings: "abc" is not a whole number (from flag --max-meetings)` + "\n"
	if code != exitUsage || errOut != want || out != "" {
		t.Errorf("exit %d, stderr %q, stdout %q; want exit %d, stderr %q", code, errOut, out, exitUsage, want)
	}
	code, _, errOut = runEdgemc(t, []string{"serve"}, "EDGEMC_DRAIN_TIMEOUT=soon")
	if code != exitUsage || !strings.HasPrefix(errOut, "edgemc: invalid setting drain-timeout: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("env: exit %d, stderr %q", code, errOut)
	}
}

// writeJWTKey writes the issuer's public key as a PEM file and returns the
// --jwt-public-key flag for it; serve needs a token key (or jwks-url).
func writeJWTKey(t *testing.T, issuer *devissuer.Issuer) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwt.pem")
	if err := os.WriteFile(path, issuer.PublicKeyPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return "--jwt-public-key=" + path
}

func TestE2EServeReadyAndSIGTERM(t *testing.T) {
	p := startEdgemc(t, append([]string{"serve", writeJWTKey(t, devissuer.NewIssuer())}, loopbackArgs()...))
	ready := p.WaitReady()
	if ready.Str("version") != e2eVersion {
		t.Errorf("ready line version %q, want %q", ready.Str("version"), e2eVersion)
	}
	p.WaitLive(ready.Str("http"))
	if code := p.Stop(); code != exitOK {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
	for _, l := range p.Logs() {
		if l.Fields == nil {
			t.Errorf("stderr line is not JSON: %q", l.Raw)
		}
	}
	start := p.WaitMsg("edgemc starting")
	if s, ok := start.Fields["settings"].(map[string]any); !ok || s["http-listen"] != "127.0.0.1:0" {
		t.Errorf("start-up line does not log the settings: %s", start.Raw)
	}
}
