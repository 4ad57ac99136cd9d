package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
)

// clockTick is the unit of utime and stime in /proc/PID/stat and of
// /proc/stat (USER_HZ, 100 on Linux).
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
	exited    chan struct{} // closed once the process has been waited for
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// sample reads the running server's /proc entries.
func (s *server) sample() usage {
	u, err := sampleProc(s.pid())
	if err != nil {
		fatalf("sampling %s: %v", s.name, err)
	}
	return u
}

// cpu is the server's CPU so far: from /proc while it runs, from its exit
// status once it has ended.
func (s *server) cpu() time.Duration {
	select {
	case <-s.exited:
		return processCPU(s.cmd.ProcessState)
	default:
	}
	u, err := sampleProc(s.pid())
	if err != nil { // it ended meanwhile
		<-s.exited
		return processCPU(s.cmd.ProcessState)
	}
	return u.CPU
}

func processCPU(ps *os.ProcessState) time.Duration {
	if ps == nil {
		return 0
	}
	return ps.UserTime() + ps.SystemTime()
}

// stop ends the server: SIGTERM, then SIGKILL after a few seconds.
func (s *server) stop() { s.terminate(5 * time.Second) }

// terminate sends SIGTERM and waits up to limit for the process to end (as
// systemd's stop does, TimeoutStopSec), then kills it. It reports whether
// the process ended by itself.
func (s *server) terminate(limit time.Duration) bool {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return true
	case <-time.After(limit):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// env is a fresh directory per process and what every edgemc needs.
type env struct {
	edgemc  string // the binary under test
	self    string // this program, for the floor server
	tmp     string
	pubKey  string        // the public key edgemc trusts
	privKey string        // the private key loadgen signs with
	slack   time.Duration // timer slack of the servers (0: the kernel's default)
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

// edgemcRun says how to start an edgemc.
type edgemcRun struct {
	dir    string // its directory (data-dir is dir/data); "" makes a new one
	listen string // WebTransport host:port; "" picks a free port
	extra  []string
}

// startEdgemc runs `edgemc serve` on loopback ports and waits for its ready
// line. The same dir and listen address restart it with its state.
func (e *env) startEdgemc(ctx context.Context, r edgemcRun) *server {
	fresh := r.dir == ""
	if fresh {
		r.dir = e.dir("edgemc")
	}
	if r.listen == "" {
		r.listen = "127.0.0.1:0"
	}
	config := filepath.Join(r.dir, "edgemc.toml")
	if err := os.WriteFile(config, nil, 0o600); err != nil {
		fatalf("%v", err)
	}
	args := append([]string{"serve",
		"--jwt-public-key=" + e.pubKey, "--data-dir=" + filepath.Join(r.dir, "data"),
		"--webtransport-listen=" + r.listen, "--grpc-listen=127.0.0.1:0", "--http-listen=127.0.0.1:0",
		"--webtransport-advertise=https://127.0.0.1:4433/", "--grpc-advertise=http://127.0.0.1:50052",
		"--log-format=json", "--drain-timeout=3s",
		// The load generator is one address with hundreds of joins in
		// flight; the floor server has no such bound either.
		"--max-pending-sessions=1000000", "--max-pending-sessions-per-address=1000000",
	}, r.extra...)
	cmd := e.serverCommand(ctx, e.edgemc, args...)
	cmd.Dir = r.dir
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
	case <-time.After(60 * time.Second):
		s.kill()
		fatalf("edgemc not ready in 60 s")
	}
	if fresh {
		e.readyTimes = append(e.readyTimes, s.readyTime)
	}
	return s
}

// freeUDPAddr returns a loopback UDP address nothing listens on right now,
// for a server that must come back on the same port after a restart.
func freeUDPAddr() string {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fatalf("%v", err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startFloor runs this program as the floor server in its own process;
// quic is "default" (quic-go's defaults) or "edgemc" (edgemc's signaling
// limits). With profile set, the floor writes a CPU profile there when it
// stops.
func (e *env) startFloor(ctx context.Context, quic, profile string) *server {
	args := []string{"-serve-floor", e.dir("floor"), "-floor-quic", quic}
	if profile != "" {
		args = append(args, "-floor-cpuprofile", profile)
	}
	cmd := e.serverCommand(ctx, e.self, args...)
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

// serverCommand runs path as a server process: with the timer slack of the
// run, set by this program before it execs path in the same process.
func (e *env) serverCommand(ctx context.Context, path string, args ...string) *exec.Cmd {
	if e.slack <= 0 {
		return exec.CommandContext(ctx, path, args...)
	}
	return exec.CommandContext(ctx, e.self, append([]string{"-exec-timer-slack", e.slack.String(), path}, args...)...)
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
	sessions, meetings, concurrency, mutes, muteMeetings int
	rate                                                 float64
	hold, settle                                         time.Duration
	// restarts holds the sessions until the bench closes the load
	// generator's standard input, and brings lost sessions back
	// (--restarts-stdin --rejoin).
	restarts bool
}

// loadProc is a running load generator.
type loadProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser // restarts only
	events chan loadgen.Event
	done   chan struct{} // closed once it has exited and report is set
	report *loadgen.Report
	err    error
}

// startLoad runs `edgemc loadgen --json` in its own process against s.
func (e *env) startLoad(ctx context.Context, s *server, r loadRun) *loadProc {
	proto := "signaling"
	if s.name == "floor" {
		proto = "echo"
	}
	args := []string{"loadgen", "--json", "--protocol=" + proto, "--url=" + s.url, "--cert-hash=" + s.certHash,
		"--sessions=" + strconv.Itoa(r.sessions), "--meetings=" + strconv.Itoa(r.meetings),
		"--concurrency=" + strconv.Itoa(r.concurrency), "--rate=" + strconv.FormatFloat(r.rate, 'f', -1, 64),
		"--mutes=" + strconv.Itoa(r.mutes), "--mute-meetings=" + strconv.Itoa(r.muteMeetings),
		"--hold=" + r.hold.String(), "--settle=" + r.settle.String(),
		"--leave=false", "--join-timeout=30s", "--duration=1h"}
	if proto == "signaling" {
		args = append(args, "--jwt-private-key="+e.privKey, "--assign-grpc="+s.grpc)
	}
	if r.restarts {
		args = append(args, "--restarts-stdin", "--rejoin")
	}
	cmd := exec.CommandContext(ctx, e.edgemc, args...)
	cmd.Env = cleanEnv()
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	p := &loadProc{name: s.name, cmd: cmd, events: make(chan loadgen.Event, 16), done: make(chan struct{})}
	var err error
	if r.restarts {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			fatalf("%v", err)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		fatalf("%v", err)
	}
	if err := cmd.Start(); err != nil {
		fatalf("start loadgen: %v", err)
	}
	go func() {
		defer close(p.done)
		defer close(p.events)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			ev, report, err := parseLoadgenLine(sc.Bytes())
			switch {
			case err != nil:
				p.err = fmt.Errorf("loadgen output: %w", err)
			case report != nil:
				p.report = report
			default:
				p.events <- ev
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil && p.err == nil {
			p.err = err
		}
	}()
	return p
}

// cpu is the load generator's CPU so far (0 once it has ended).
func (p *loadProc) cpu() time.Duration {
	u, err := sampleProc(p.cmd.Process.Pid)
	if err != nil {
		return 0
	}
	return u.CPU
}

// next waits up to limit for the next event; ok is false when the load
// generator has ended or limit passed.
func (p *loadProc) next(limit time.Duration) (loadgen.Event, bool) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case ev, ok := <-p.events:
		return ev, ok
	case <-t.C:
		return loadgen.Event{}, false
	}
}

// await waits for the named event, passing the others to on (if set).
func (p *loadProc) await(name string, limit time.Duration, on func(loadgen.Event)) (loadgen.Event, bool) {
	deadline := time.Now().Add(limit)
	for {
		ev, ok := p.next(time.Until(deadline))
		if !ok {
			return ev, false
		}
		if ev.Name == name {
			return ev, true
		}
		if on != nil {
			on(ev)
		}
	}
}

// wait passes the remaining events to on (if set), waits for the load
// generator to end and returns its report and its CPU.
func (p *loadProc) wait(on func(loadgen.Event)) (loadgen.Report, time.Duration) {
	for ev := range p.events {
		if on != nil {
			on(ev)
		}
	}
	<-p.done
	if p.err != nil || p.report == nil {
		fatalf("loadgen against %s: %v", p.name, p.err)
	}
	return *p.report, processCPU(p.cmd.ProcessState)
}

// loadgen runs the load generator to its end, passing every phase event
// to on as it arrives.
func (e *env) loadgen(ctx context.Context, s *server, r loadRun, on func(loadgen.Event)) (loadgen.Report, time.Duration) {
	return e.startLoad(ctx, s, r).wait(on)
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

// hog is a CPU hog of two busy processes (stress-ng --cpu 2 when
// installed, else two `yes`), for figures taken beside other work.
type hog struct {
	what  string
	procs []*exec.Cmd
	wg    sync.WaitGroup
}

func startHog(ctx context.Context) *hog {
	h := &hog{}
	var cmds [][]string
	if path, err := exec.LookPath("stress-ng"); err == nil {
		h.what = "stress-ng --cpu 2"
		cmds = [][]string{{path, "--cpu", "2", "--quiet"}}
	} else {
		h.what = "two `yes > /dev/null`"
		cmds = [][]string{{"yes"}, {"yes"}}
	}
	for _, c := range cmds {
		cmd := exec.CommandContext(ctx, c[0], c[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := cmd.Start(); err != nil {
			h.stop()
			fatalf("start CPU hog %v: %v", c, err)
		}
		h.procs = append(h.procs, cmd)
		h.wg.Go(func() { _ = cmd.Wait() })
	}
	return h
}

// stop ends the hog's processes (stress-ng's workers with their group).
func (h *hog) stop() {
	for _, p := range h.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
	}
	h.wg.Wait()
}
