package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
)

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on Linux).
const clockTick = 10 * time.Millisecond

// maxTicks is the most CPU time, in ticks, that a time.Duration holds.
const maxTicks = math.MaxInt64 / int64(clockTick)

// usage is what the kernel says a process has used so far.
type usage struct {
	RSSKiB int64
	CPU    time.Duration // user + system
}

// sampleProc reads /proc/PID/status (VmRSS) and /proc/PID/stat (utime,
// stime).
func sampleProc(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	return parseProc(string(status), string(stat))
}

// parseProc decodes the two /proc files sampleProc reads.
func parseProc(status, stat string) (usage, error) {
	var u usage
	found := false
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return usage{}, fmt.Errorf("bench: VmRSS line %q", line)
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil || n < 0 {
				return usage{}, fmt.Errorf("bench: VmRSS line %q", line)
			}
			u.RSSKiB, found = n, true
		}
	}
	if !found {
		return usage{}, errors.New("bench: no VmRSS in /proc status")
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after the last ')'.
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return usage{}, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return usage{}, errors.New("bench: short /proc stat")
	}
	var ticks int64
	for _, s := range f[11:13] { // utime and stime, fields 14 and 15
		n, err := strconv.ParseInt(s, 10, 64)
		// Beyond maxTicks the sum no longer fits a time.Duration.
		if err != nil || n < 0 || n > maxTicks-ticks {
			return usage{}, fmt.Errorf("bench: /proc stat time %q", s)
		}
		ticks += n
	}
	u.CPU = time.Duration(ticks) * clockTick
	return u, nil
}

// server is a target process: edgemc serve or the floor server.
type server struct {
	name      string
	cmd       *exec.Cmd
	url       string // WebTransport URL
	grpc      string // edgemc only
	certHash  string
	readyTime time.Duration // from exec to ready
	exited    chan struct{}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

func (s *server) sample() usage {
	u, err := sampleProc(s.pid())
	if err != nil {
		fatalf("sampling %s: %v", s.name, err)
	}
	return u
}

// stop ends the server: SIGTERM, then SIGKILL after a few seconds.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// env is a fresh directory per process and what every edgemc needs.
type env struct {
	edgemc  string // the binary under test
	self    string // this program, for the floor server
	tmp     string
	pubKey  string // the public key edgemc trusts
	privKey string // the private key loadgen signs with
	n       int

	readyTimes []time.Duration // exec to ready, every edgemc started
}

func (e *env) dir(name string) string {
	e.n++
	d := filepath.Join(e.tmp, fmt.Sprintf("%s-%d", name, e.n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		fatalf("%v", err)
	}
	return d
}

// startEdgemc runs `edgemc serve` on loopback ports with a fresh data
// directory and waits for its ready line.
func (e *env) startEdgemc(ctx context.Context, extra ...string) *server {
	dir := e.dir("edgemc")
	config := filepath.Join(dir, "edgemc.toml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		fatalf("%v", err)
	}
	args := append([]string{"serve",
		"--jwt-public-key=" + e.pubKey, "--data-dir=" + filepath.Join(dir, "data"),
		"--webtransport-listen=127.0.0.1:0", "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
		"--webtransport-advertise=https://127.0.0.1:4433/", "--grpc-advertise=http://127.0.0.1:50052",
		"--log-format=json", "--drain-timeout=3s",
		// The load generator is one address with hundreds of joins in
		// flight; the floor server has no such bound either.
		"--max-pending-sessions=1000000", "--max-pending-sessions-per-address=1000000",
	}, extra...)
	cmd := exec.CommandContext(ctx, e.edgemc, args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "EDGEMC_CONFIG="+config)
	cmd.SysProcAttr = childAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		fatalf("%v", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatalf("start edgemc: %v", err)
	}
	s := &server{name: "edgemc", cmd: cmd, exited: make(chan struct{})}
	ready := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l map[string]any
			if json.Unmarshal(sc.Bytes(), &l) == nil && l["msg"] == "edgemc ready" {
				ready <- l
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		close(s.exited)
	}()
	select {
	case l := <-ready:
		s.readyTime = time.Since(start)
		str := func(k string) string { v, _ := l[k].(string); return v }
		s.url, s.grpc, s.certHash = "https://"+str("webtransport")+"/", str("grpc"), str("cert_sha256")
	case <-s.exited:
		fatalf("edgemc exited before it was ready")
	case <-time.After(30 * time.Second):
		fatalf("edgemc not ready in 30 s")
	}
	return s
}

// startFloor runs this program as the floor server in its own process.
func (e *env) startFloor(ctx context.Context) *server {
	cmd := exec.CommandContext(ctx, e.self, "-serve-floor", e.dir("floor"))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatalf("%v", err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		fatalf("start floor server: %v", err)
	}
	s := &server{name: "floor", cmd: cmd, exited: make(chan struct{})}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() {
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(s.exited)
	}()
	f := strings.Fields(line)
	if err != nil || len(f) != 3 || f[0] != "ready" {
		s.stop()
		fatalf("floor server: %q %v", line, err)
	}
	s.readyTime = time.Since(start)
	s.url, s.certHash = "https://"+f[1]+"/", f[2]
	return s
}

// childAttr makes a child die with the benchmark, however it ends.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// cleanEnv is this process's environment without edgemc and systemd
// settings.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "EDGEMC_") || name == "JOURNAL_STREAM" || name == "INVOCATION_ID" || name == "NOTIFY_SOCKET" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// loadRun is one `edgemc loadgen` invocation against a server.
type loadRun struct {
	sessions, meetings, concurrency, mutes int
	rate                                   float64
	hold, settle                           time.Duration
	// on is called, in the order they arrive, with each phase event; the
	// load generator carries on meanwhile.
	on func(loadgen.Event)
}

// loadgen runs `edgemc loadgen --json` in its own process against s.
func (e *env) loadgen(ctx context.Context, s *server, r loadRun) loadgen.Report {
	proto := "signaling"
	if s.name == "floor" {
		proto = "echo"
	}
	args := []string{"loadgen", "--json", "--protocol=" + proto, "--url=" + s.url, "--cert-hash=" + s.certHash,
		"--sessions=" + strconv.Itoa(r.sessions), "--meetings=" + strconv.Itoa(r.meetings),
		"--concurrency=" + strconv.Itoa(r.concurrency), "--rate=" + strconv.FormatFloat(r.rate, 'f', -1, 64),
		"--mutes=" + strconv.Itoa(r.mutes), "--hold=" + r.hold.String(), "--settle=" + r.settle.String(),
		"--leave=false", "--join-timeout=30s", "--duration=10m"}
	if proto == "signaling" {
		args = append(args, "--jwt-private-key="+e.privKey, "--assign-grpc="+s.grpc)
	}
	cmd := exec.CommandContext(ctx, e.edgemc, args...)
	cmd.Env = cleanEnv()
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatalf("%v", err)
	}
	if err := cmd.Start(); err != nil {
		fatalf("start loadgen: %v", err)
	}
	var rep *loadgen.Report
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ev, report, err := parseLoadgenLine(sc.Bytes())
		if err != nil {
			fatalf("loadgen output: %v", err)
		}
		if report != nil {
			rep = report
		} else if r.on != nil {
			r.on(ev)
		}
	}
	if err := cmd.Wait(); err != nil || rep == nil {
		fatalf("loadgen against %s: %v", s.name, err)
	}
	return *rep
}

// parseLoadgenLine decodes one line of `edgemc loadgen --json`: a phase
// event, or the final report.
func parseLoadgenLine(b []byte) (loadgen.Event, *loadgen.Report, error) {
	var l struct {
		loadgen.Event
		Report *loadgen.Report `json:"report"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return loadgen.Event{}, nil, err
	}
	switch {
	case l.Name == "report" && l.Report != nil:
		return l.Event, l.Report, nil
	case l.Name != "" && l.Name != "report" && l.Report == nil:
		return l.Event, nil, nil
	}
	return loadgen.Event{}, nil, fmt.Errorf("bench: unexpected loadgen line %.100q", b)
}
