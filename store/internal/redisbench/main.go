// Command redisbench compares edgemc's store with the Redis design it replaces. It runs the same two workloads —
// a fenced write (generation check plus roster write) and a one-time nonce — at 1, 8 and 64 concurrent writers
// against edgemc's bbolt store and against a real redis-server (Lua check-and-write, appendfsync always and
// everysec) started on 127.0.0.1 with a temporary directory, and prints both figures and their ratio. It also splits
// edgemc's write latencies into those that overlapped one of the store's checkpoints and the others, to show what a
// checkpoint costs a writer. `make bench-store` runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/edgemc/edgemc/store"
	"github.com/edgemc/edgemc/store/internal/workload"
)

// fenceScript is the Redis side of a fenced write: refuse an older generation, raise to a newer one, write.
const fenceScript = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local held = tonumber(ARGV[1])
if held < cur then return redis.error_reply('FENCED') end
if held > cur then redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`

// participantValue stands in for an encoded roster entry on the Redis side (edgemc's is about as large).
const participantValue = `{"user_id":"user-1","name":"Benchmark Participant","role":"participant","connected":true,"joined_at":1767225600}`

func main() {
	var (
		redisBin = flag.String("redis-server", "/usr/bin/redis-server", "redis-server binary")
		writersF = flag.String("writers", "1,8,64", "comma-separated writer counts")
		duration = flag.Duration("duration", 3*time.Second, "run time of each figure")
		dirF     = flag.String("dir", "", "directory for the temporary data dirs (default: system temp)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *redisBin, *writersF, *duration, *dirF, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "redisbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, redisBin, writersList string, d time.Duration, dir string, out io.Writer) error {
	var writers []int
	for _, f := range strings.Split(writersList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("bad writer count %q", f)
		}
		writers = append(writers, n)
	}
	tmp, err := os.MkdirTemp(dir, "edgemc-redisbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	addr, stopRedis, err := startRedis(ctx, redisBin, filepath.Join(tmp, "redis"))
	if err != nil {
		return err
	}
	defer stopRedis()
	var (
		mu          sync.Mutex
		checkpoints []workload.Window
	)
	db, err := store.Open(filepath.Join(tmp, "edgemc"), store.Options{ObserveCheckpoint: func(d time.Duration, _ error) {
		end := time.Now()
		mu.Lock()
		checkpoints = append(checkpoints, workload.Window{Start: end.Add(-d), End: end})
		mu.Unlock()
	}})
	if err != nil {
		return err
	}
	defer db.Close()
	maxW := writers[0]
	for _, w := range writers {
		maxW = max(maxW, w)
	}
	rd, err := newRedisBench(addr, maxW)
	if err != nil {
		return err
	}
	defer rd.Close()
	fenced, err := workload.FencedWrites(db, maxW)
	if err != nil {
		return err
	}

	type row struct {
		writers                int
		always, everysec, edge workload.Result
		checkpoints            []workload.Window // during the edgemc run
	}
	measure := func(name string, redisOp func(prefix string) func(w, i int) error, edgeOp func(prefix string) func(w, i int) error) ([]row, error) {
		var rows []row
		for _, n := range writers {
			cfg := workload.Config{Writers: n, Duration: d}
			r := row{writers: n}
			for _, m := range []struct {
				mode string
				res  *workload.Result
			}{{"always", &r.always}, {"everysec", &r.everysec}} {
				if _, err := rd.conns[0].Do("CONFIG", "SET", "appendfsync", m.mode); err != nil {
					return nil, err
				}
				*m.res = workload.Run(cfg, redisOp(fmt.Sprint(name, m.mode, n)))
			}
			mu.Lock()
			checkpoints = nil
			mu.Unlock()
			r.edge = workload.Run(cfg, edgeOp(fmt.Sprint(name, n)))
			mu.Lock()
			r.checkpoints = checkpoints
			mu.Unlock()
			for _, res := range []workload.Result{r.always, r.everysec, r.edge} {
				if res.Err != nil {
					return nil, fmt.Errorf("%s, %d writers: %w", name, n, res.Err)
				}
			}
			rows = append(rows, r)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		return rows, nil
	}

	version, _ := exec.CommandContext(ctx, redisBin, "--version").Output()
	fmt.Fprintf(out, "edgemc store (bbolt, group commit) vs %s", version)
	fmt.Fprintf(out, "same workload, same disk, %v per figure; p99 and p99.9 in ms; every write durable unless everysec\n", d)
	for _, w := range []struct {
		title string
		redis func(string) func(int, int) error
		edge  func(string) func(int, int) error
	}{
		{"fenced write (generation check + roster write)", rd.fencedOp, func(string) func(int, int) error { return fenced }},
		{"one-time nonce (Redis SET NX EX)", rd.nonceOp, func(p string) func(int, int) error { return workload.Nonces(db, p) }},
	} {
		rows, err := measure(w.title[:5], w.redis, w.edge)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "\n%s\n", w.title)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		// cmd/edgemc/internal/bench reads this table up to its blank line: new columns go at the end.
		fmt.Fprintln(tw, "writers\tredis always/s\tp99\tredis everysec/s\tp99\tedgemc/s\tp99\tedgemc÷always\tedgemc÷everysec\tp99.9 always\tp99.9 everysec\tp99.9 edgemc\t")
		for _, r := range rows {
			fmt.Fprintf(tw, "%d\t%.0f\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", r.writers,
				r.always.PerSecond(), ms(r.always.P99), r.everysec.PerSecond(), ms(r.everysec.P99),
				r.edge.PerSecond(), ms(r.edge.P99),
				r.edge.PerSecond()/r.always.PerSecond(), r.edge.PerSecond()/r.everysec.PerSecond(),
				ms(r.always.P999), ms(r.everysec.P999), ms(r.edge.P999))
		}
		tw.Flush()
		fmt.Fprintf(out, "\nedgemc writes that overlapped a checkpoint vs the others (ms)\n")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "writers\tcheckpoints\tcheckpoint p50\tmax\twrites during\tdone within\tp99\tp99.9\twrites outside\tp99\tp99.9\t")
		for _, r := range rows {
			s := r.edge.Split(r.checkpoints)
			var lens []time.Duration
			for _, c := range r.checkpoints {
				lens = append(lens, c.End.Sub(c.Start))
			}
			slices.Sort(lens)
			var p50, top time.Duration
			if len(lens) > 0 {
				p50, top = lens[len(lens)/2], lens[len(lens)-1]
			}
			fmt.Fprintf(tw, "%d\t%d\t%.2f\t%.2f\t%d\t%d\t%.2f\t%.2f\t%d\t%.2f\t%.2f\t\n", r.writers, len(r.checkpoints),
				ms(p50), ms(top), s.NDuring, s.Within, ms(s.During.P99), ms(s.During.P999), s.NOutside, ms(s.Outside.P99), ms(s.Outside.P999))
		}
		tw.Flush()
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// startRedis runs redis-server on a free loopback port with AOF on and data in dir; stop (or the end of ctx) ends it,
// and stop returns once it has exited, so that no redis-server outlives the run.
func startRedis(ctx context.Context, bin, dir string) (addr string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	cmd := exec.CommandContext(ctx, bin, "--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop = func() { _ = cmd.Process.Kill(); <-exited }
	addr = "127.0.0.1:" + port
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := dialRESP(addr)
		if err == nil {
			_, err = c.Do("PING")
			c.Close()
			if err == nil {
				return addr, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("redis-server on %s did not answer: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redisBench holds one connection per writer and the loaded fencing script.
type redisBench struct {
	conns []*respConn
	sha   string
}

func newRedisBench(addr string, writers int) (*redisBench, error) {
	rb := &redisBench{}
	for range writers {
		c, err := dialRESP(addr)
		if err != nil {
			rb.Close()
			return nil, err
		}
		rb.conns = append(rb.conns, c)
	}
	sha, err := rb.conns[0].Do("SCRIPT", "LOAD", fenceScript)
	if err != nil {
		rb.Close()
		return nil, err
	}
	rb.sha = sha.(string)
	for w := range writers {
		if _, err := rb.conns[0].Do("SET", fmt.Sprint("gen:bench-", w), "1"); err != nil {
			rb.Close()
			return nil, err
		}
	}
	return rb, nil
}

func (rb *redisBench) Close() {
	for _, c := range rb.conns {
		c.Close()
	}
}

func (rb *redisBench) fencedOp(string) func(w, i int) error {
	return func(w, i int) error {
		m := fmt.Sprint("bench-", w)
		_, err := rb.conns[w].Do("EVALSHA", rb.sha, "2", "gen:"+m, "roster:"+m, "1", fmt.Sprint("p-", i%100), participantValue)
		return err
	}
}

func (rb *redisBench) nonceOp(prefix string) func(w, i int) error {
	return func(w, i int) error {
		v, err := rb.conns[w].Do("SET", fmt.Sprintf("nonce:bench-%d:%s-%d", w, prefix, i), "1", "NX", "EX", "3600")
		if err == nil && v != "OK" {
			err = errors.New("nonce unexpectedly already used")
		}
		return err
	}
}
