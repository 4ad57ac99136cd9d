// Command bench measures edgemc side by side with its floors on this
// machine and prints the figures as a Markdown table: `make bench` (every
// section) and `make bench-signaling` (joins and host-mute fan-out only).
//
// Every target runs as its own process, started afresh for each figure: the
// real edgemc binary (`edgemc serve`, trusting a key made for the run) and
// the bare webtransport-go floor server (this program re-executed with
// -serve-floor). The load comes from `edgemc loadgen` in a third process.
// CPU and memory are read from /proc/PID/stat and /proc/PID/status of the
// server. Everything listens on 127.0.0.1 and every run is bounded.
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/edgemc/edgemc/cmd/edgemc/internal/loadgen"
	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/webtransport"
	"github.com/edgemc/edgemc/webtransport/wtbench"
)

// options are the command line.
type options struct {
	edgemc        string
	suite         string
	sections      map[string]bool
	reps          int
	joinRate      float64
	joinSessions  int
	capSessions   int
	capWorkers    int
	idleSessions  []int
	fanout        []int
	mutes         int
	many          []int
	bigIdle       time.Duration
	settle        time.Duration
	idle          time.Duration
	storeDuration time.Duration
	cpuProfile    string
	timerSlack    time.Duration
}

// Sections of a run, in the order they run.
var allSections = []string{"joins", "idle", "fanout", "many", "store", "cost"}

func main() {
	var (
		o               options
		idleSessions    string
		fanout          string
		many            string
		sections        string
		serveFloorDir   string
		floorQUIC       string
		floorProfile    string
		timerSlack      string
		execSlack       time.Duration
		defaultFanout   = "100,1000"
		signalingFanout = "10,100,500"
	)
	flag.StringVar(&o.edgemc, "edgemc", "bin/edgemc", "the edgemc binary to measure (make build)")
	flag.StringVar(&o.suite, "suite", "all", "all (make bench) or signaling (make bench-signaling: joins and fan-out)")
	flag.StringVar(&sections, "sections", "", "comma-separated sections to run (default: every section of the suite): "+strings.Join(allSections, ","))
	flag.IntVar(&o.reps, "reps", 3, "repetitions of every figure (median and min–max are reported)")
	flag.Float64Var(&o.joinRate, "join-rate", 200, "target joins per second of the latency figure")
	flag.IntVar(&o.joinSessions, "join-sessions", 1000, "sessions joined at -join-rate (10 per meeting)")
	flag.IntVar(&o.capSessions, "capacity-sessions", 1000, "sessions joined as fast as -capacity-workers allow")
	flag.IntVar(&o.capWorkers, "capacity-workers", 8, "concurrent joins of the throughput figure")
	flag.StringVar(&idleSessions, "sessions", "1000,5000", "idle sessions held for the memory figure")
	flag.StringVar(&fanout, "fanout", "", "participants of the fan-out figure (default "+defaultFanout+", or "+signalingFanout+" for -suite signaling)")
	flag.IntVar(&o.mutes, "mutes", 50, "host-mute rounds per fan-out figure")
	flag.StringVar(&many, "many", "2000,10000", "sessions of the many-sessions figures (meetings of 10), restarts included")
	flag.DurationVar(&o.bigIdle, "many-idle", 20*time.Second, "window of the idle CPU figure of the many-sessions figures")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the joins before reading the memory of idle sessions, or before the first host-mute")
	flag.DurationVar(&o.idle, "idle", 30*time.Second, "window of the idle-appliance figure")
	flag.DurationVar(&o.storeDuration, "store-duration", 2*time.Second, "run time of each store figure (store/internal/redisbench)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of edgemc's server during the last closed-loop join run to this file (and of the floor to FILE.floor)")
	flag.StringVar(&timerSlack, "timer-slack", "unit", "timer slack of the server processes (edgemc and the floors): a duration, 0 for the kernel's default, or unit for the TimerSlackNSec= of packaging/edgemc.service")
	flag.DurationVar(&execSlack, "exec-timer-slack", 0, "internal: set this timer slack, then run the remaining arguments in this process")
	flag.StringVar(&serveFloorDir, "serve-floor", "", "internal: run the floor server with its certificate in this directory")
	flag.StringVar(&floorQUIC, "floor-quic", "default", "internal: the floor server's QUIC configuration, default or edgemc")
	flag.StringVar(&floorProfile, "floor-cpuprofile", "", "internal: the floor server writes a CPU profile here")
	flag.Parse()
	if execSlack > 0 {
		os.Exit(execWithTimerSlack(execSlack, flag.Args()))
	}
	if serveFloorDir != "" {
		os.Exit(serveFloor(serveFloorDir, floorQUIC, floorProfile))
	}
	if fanout == "" {
		fanout = defaultFanout
		if o.suite == "signaling" {
			fanout = signalingFanout
		}
	}
	var err error
	if o.idleSessions, err = intList(idleSessions); err == nil {
		o.fanout, err = intList(fanout)
	}
	if err == nil {
		o.many, err = intList(many)
	}
	if err == nil {
		o.sections, err = sectionSet(o.suite, sections)
	}
	if err == nil {
		o.timerSlack, err = parseTimerSlack(timerSlack, unitFile)
	}
	switch {
	case err != nil:
	case o.reps < 1:
		err = errors.New("-reps must be at least 1")
	case slices.Min(o.many) < 10:
		err = errors.New("-many: at least 10 sessions (one meeting of 10)")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	os.Exit(run(o))
}

// unitFile is the systemd unit whose TimerSlackNSec= the servers run with.
const unitFile = "packaging/edgemc.service"

// parseTimerSlack reads -timer-slack: a duration, or "unit" for the unit's
// TimerSlackNSec= (0 when it sets none).
func parseTimerSlack(v, unit string) (time.Duration, error) {
	if v != "unit" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("-timer-slack %q: a duration, 0, or unit", v)
		}
		return d, nil
	}
	b, err := os.ReadFile(unit)
	if err != nil {
		return 0, fmt.Errorf("-timer-slack unit: %w (run from the repository root, or give a duration)", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "TimerSlackNSec="); ok {
			d, err := time.ParseDuration(strings.TrimSpace(rest))
			if err != nil || d < 0 {
				return 0, fmt.Errorf("%s: TimerSlackNSec=%s is not a duration this bench reads", unit, rest)
			}
			return d, nil
		}
	}
	return 0, nil
}

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK.
const prSetTimerSlack = 29

// execWithTimerSlack sets the calling thread's timer slack and replaces this
// process with argv: the new program's threads all inherit the slack, as a
// service's do from systemd's TimerSlackNSec=.
func execWithTimerSlack(slack time.Duration, argv []string) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "bench: -exec-timer-slack: no command")
		return 2
	}
	runtime.LockOSThread() // the prctl and the exec on the same thread
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetTimerSlack, uintptr(slack.Nanoseconds()), 0, 0, 0, 0); e != 0 {
		fmt.Fprintln(os.Stderr, "bench: prctl(PR_SET_TIMERSLACK):", e)
		return 1
	}
	err := syscall.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "bench: exec:", err)
	return 1
}

// sectionSet is the set of sections to run.
func sectionSet(suite, list string) (map[string]bool, error) {
	out := map[string]bool{}
	switch {
	case list != "":
		for _, s := range strings.Split(list, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(allSections, s) {
				return nil, fmt.Errorf("unknown section %q", s)
			}
			out[s] = true
		}
	case suite == "all":
		for _, s := range allSections {
			out[s] = true
		}
	case suite == "signaling":
		out["joins"], out["fanout"] = true, true
	default:
		return nil, fmt.Errorf("unknown suite %q", suite)
	}
	return out, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > loadgen.MaxSessions-1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// fatal carries a fatal error up to run, so that deferred clean-up (server
// processes, the temporary directory) happens.
type fatal struct{ msg string }

func fatalf(format string, a ...any) { panic(fatal{fmt.Sprintf(format, a...)}) }

func run(o options) (code int) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			fmt.Fprintln(os.Stderr, "bench:", f.msg)
			code = 1
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := newEnv(o.edgemc, o.timerSlack)
	defer os.RemoveAll(e.tmp)
	progress := os.Stderr
	raiseUDPBuffers(progress)

	res := results{started: time.Now(), command: strings.Join(os.Args[1:], " ")}
	if o.sections["joins"] {
		res.joins = e.joinSection(ctx, o, progress)
	}
	if o.sections["idle"] {
		res.idle = e.idleSessionSection(ctx, o, progress)
	}
	if o.sections["fanout"] {
		res.fanout = e.fanoutSection(ctx, o, progress)
	}
	if o.sections["many"] {
		res.many = e.bigSection(ctx, o, progress)
	}
	if o.sections["store"] {
		res.store = storeSection(ctx, o, progress)
	}
	if o.sections["cost"] {
		res.cost = e.idleCostSection(ctx, o, progress)
	}
	if ctx.Err() != nil {
		fatalf("interrupted")
	}
	res.readyTimes = e.readyTimes
	res.binary = o.edgemc
	res.write(os.Stdout, o)
	return 0
}

// newEnv prepares the key pair and the temporary directory of a run;
// servers run with timer slack.
func newEnv(bin string, slack time.Duration) *env {
	self, err := os.Executable()
	if err != nil {
		fatalf("%v", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		fatalf("%v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		fatalf("%v (run make build first)", err)
	}
	tmp, err := os.MkdirTemp("", "edgemc-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fatalf("%v", err)
	}
	privPEM, err := loadgen.MarshalPrivateKeyPEM(priv)
	if err != nil {
		fatalf("%v", err)
	}
	e := &env{edgemc: bin, self: self, tmp: tmp, slack: slack,
		privKey: filepath.Join(tmp, "loadgen.pem"), pubKey: filepath.Join(tmp, "jwt.pem")}
	if err := errors.Join(
		os.WriteFile(e.privKey, privPEM, 0o600),
		os.WriteFile(e.pubKey, devissuer.NewIssuerFromKey("bench", priv).PublicKeyPEM(), 0o600),
	); err != nil {
		fatalf("%v", err)
	}
	return e
}

// udpBufferBytes is the socket buffer limit quic-go asks for (floors.md).
const udpBufferBytes = 7500000

// raiseUDPBuffers raises net.core.rmem_max and wmem_max to what quic-go
// asks for when running as root, and says what it did.
func raiseUDPBuffers(w io.Writer) {
	if os.Geteuid() != 0 {
		fmt.Fprintf(w, "not root: UDP buffer limits (net.core.rmem_max/wmem_max) left as they are; quic-go may warn\n")
		return
	}
	for _, name := range []string{"rmem_max", "wmem_max"} {
		p := "/proc/sys/net/core/" + name
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintf(w, "reading %s: %v\n", p, err)
			continue
		}
		cur, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if cur >= udpBufferBytes {
			continue
		}
		if err := os.WriteFile(p, []byte(strconv.Itoa(udpBufferBytes)), 0o644); err != nil {
			fmt.Fprintf(w, "raising net.core.%s: %v\n", name, err)
			continue
		}
		fmt.Fprintf(w, "raised net.core.%s from %d to %d (as root; sysctl -w net.core.%s=%d)\n", name, cur, udpBufferBytes, name, udpBufferBytes)
	}
}

// serveFloor is the -serve-floor child: it prints "ready ADDR CERTHASH" and
// serves until SIGTERM or SIGINT. quic is "default" (quic-go's defaults) or
// "edgemc" (edgemc's signaling limits).
func serveFloor(dir, quicConf, profile string) int {
	certs, err := webtransport.NewSelfSignedManager(dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	var qconf *quic.Config
	switch quicConf {
	case "default":
	case "edgemc":
		qconf = webtransport.SignalingQUICConfig(15 * time.Second)
	default:
		fmt.Fprintf(os.Stderr, "floor: unknown QUIC configuration %q\n", quicConf)
		return 2
	}
	srv, err := wtbench.NewBareWithQUIC("127.0.0.1:0", certs.TLSConfig(), qconf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if profile != "" {
		f, err := os.Create(profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			return 1
		}
		defer f.Close()
	}
	fmt.Printf("ready %s %x\n", srv.Addr(), certs.Current().SHA256)
	err = srv.Serve(ctx)
	pprof.StopCPUProfile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		return 1
	}
	return 0
}
