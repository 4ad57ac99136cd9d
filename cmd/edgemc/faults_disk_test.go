package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/edgemc/edgemc/gc/devissuer"
	"github.com/edgemc/edgemc/gc/internalpb"
	pb "github.com/edgemc/edgemc/webtransport/signalingpb"
)

// mountTmpfs mounts a tmpfs of size (e.g. "4m") for the test; disk faults
// are real only on a file system that can really fill up or be read-only.
// Without root or mount it skips the test and says why.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("disk fault tests need root to mount a small tmpfs; skipped")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "edgemc-faults", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); disk fault tests skipped", err, strings.TrimSpace(string(out)))
	}
	// Registered after TempDir's cleanup, so it runs before it; edgemc,
	// started later, is killed before either.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
	}
	// Smaller writes take the last partial blocks too.
	for _, err = f.Write(chunk[:512]); err == nil; _, err = f.Write(chunk[:512]) {
	}
	return path
}

// waitReady polls /health/ready until it answers 200.
func waitReady(t *testing.T, mc *faultMC) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		code, reason := mc.ready(t)
		if code == 200 {
			return
		}
		select {
		case <-tick.C:
		case <-timeout.C:
			t.Fatalf("not ready %v after space was freed: %d %q", waitTimeout, code, reason)
		}
	}
}

// assertNoCrash checks that edgemc's stderr shows no Go panic or fatal
// runtime error.
func assertNoCrash(t *testing.T, p *edgemcProc) {
	t.Helper()
	for _, l := range p.Logs() {
		if strings.HasPrefix(l.Raw, "panic:") || strings.HasPrefix(l.Raw, "fatal error:") || strings.HasPrefix(l.Raw, "goroutine ") {
			t.Errorf("edgemc crashed: %s", l.Raw)
		}
	}
}

// TestFaultDiskFull fills the data directory's file system under a running
// edgemc. Writes that fit in the pages the store already has still work;
// the first write that needs the file to grow fails with a clear error (a
// gRPC Internal for an assignment), the appliance stays live but is not
// ready, nothing crashes, and once space is freed it is ready and works
// again, and its state survives a restart.
func TestFaultDiskFull(t *testing.T) {
	t.Parallel()
	data := mountTmpfs(t, "16m")
	issuer := devissuer.NewIssuer()
	dir := t.TempDir()
	// No sweeper commits: readiness reflects the writes of this test.
	args := []string{"--data-dir=" + data, "--sweep-interval=1h"}
	mc := startFaultMC(t, dir, issuer, args...)
	mc.mustAssign(t, "m-disk")
	mc.mustJoin(t, "m-disk", "host-1")

	filler := fillDisk(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	// Meetings with many media handlers (~56 KB each) make the file grow.
	var big []*internalpb.MhAssignment
	for i := range 28 {
		endpoint := fmt.Sprintf("https://mh-%d.example/%s", i, strings.Repeat("x", 980))
		big = append(big, &internalpb.MhAssignment{MhId: fmt.Sprintf("mh-%d", i), WebtransportEndpoint: endpoint, GrpcEndpoint: endpoint})
	}
	// The appliance refuses an assignment it cannot store: with a gRPC
	// Internal when the write fails, or with REJECTION_REASON_UNHEALTHY
	// once the store reports itself unhealthy.
	var (
		err  error
		resp *internalpb.AssignMeetingWithMhResponse
	)
	grown := 0
	for ; err == nil && resp.GetRejectionReason() == 0 && grown < 200; grown++ {
		resp, err = mc.assignMHs(ctx, fmt.Sprintf("m-grow-%d", grown), big)
	}
	st, _ := status.FromError(err)
	switch {
	case err != nil && (st.Code() != codes.Internal || strings.Contains(st.Message(), data)):
		t.Fatalf("assignment %d on a full disk: %v, want Internal saying nothing internal", grown, err)
	case err == nil && resp.GetRejectionReason() != internalpb.RejectionReason_REJECTION_REASON_UNHEALTHY:
		t.Fatalf("%d assignments accepted on a full disk; last answer %v", grown, resp)
	}
	t.Logf("the disk was full; assignment %d was refused: %v %v", grown, resp, err)
	if l := mc.countLogs(func(l logLine) bool {
		return l.Level() == "ERROR" && strings.Contains(l.Raw, "no space left on device")
	}); l == 0 {
		t.Error("no log line names the cause (no space left on device)")
	}
	grown-- // the refused one is not stored
	if code, reason := mc.ready(t); code != 503 || reason != "store unavailable" {
		t.Errorf("ready on a full disk: %d %q, want 503 \"store unavailable\"", code, reason)
	}
	for _, name := range []string{"mc_store_healthy", "mc_ready"} {
		if v := mc.metric(t, name); v != 0 {
			t.Errorf("%s on a full disk: %v, want 0", name, v)
		}
	}
	if code := mc.liveCode(t); code != 200 {
		t.Errorf("live on a full disk: %d, want 200", code)
	}
	// A join is a small write: it may still fit, else it is refused cleanly.
	conn, m, err := mc.joinAnswer(ctx, "user-1", &pb.JoinRequest{MeetingId: "m-disk"})
	if err != nil {
		t.Fatalf("join on a full disk: %v", err)
	}
	conn.Abort()
	if m.GetJoinResponse() == nil && m.GetError().GetCode() != pb.ErrorCode_INTERNAL_ERROR {
		t.Errorf("join on a full disk answered %v, want a JoinResponse or INTERNAL_ERROR", m)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The store retries what it could not write; once that succeeds it is
	// healthy and edgemc ready again, with nobody writing in between.
	waitReady(t, mc)
	if v := mc.metric(t, "mc_store_healthy"); v != 1 {
		t.Errorf("mc_store_healthy once space was freed: %v, want 1", v)
	}
	mc.mustAssign(t, "m-after")
	mc.mustJoin(t, "m-after", "user-2")
	if code := mc.Stop(); code != exitOK {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	assertNoCrash(t, mc.edgemcProc)

	mc = startFaultMC(t, dir, issuer, args...)
	if n := mc.WaitMsg("recovered meetings from the store").Fields["meetings"]; n != float64(grown+2) {
		t.Errorf("recovered %v meetings after the restart, want %d", n, grown+2)
	}
}

// TestFaultDataDirUnusable starts edgemc on a data directory it cannot
// write: full before start, read-only with state in it, read-only and
// empty. Each ends with exit code 1 and one error line naming the cause.
func TestFaultDataDirUnusable(t *testing.T) {
	t.Parallel()
	issuer := devissuer.NewIssuer()
	full := mountTmpfs(t, "1m")
	fillDisk(t, full)

	readOnly := mountTmpfs(t, "16m")
	mc := startFaultMC(t, "", issuer, "--data-dir="+readOnly)
	mc.mustAssign(t, "m-ro")
	if code := mc.Stop(); code != exitOK {
		t.Fatalf("first run: exit %d", code)
	}
	remount(t, readOnly, "ro")
	t.Cleanup(func() { remount(t, readOnly, "rw") })

	for name, tc := range map[string]struct{ dir, cause string }{
		"full":                 {filepath.Join(full, "data"), "no space left on device"},
		"read-only with state": {readOnly, "read-only file system"},
		"read-only, no dir":    {filepath.Join(readOnly, "new"), "read-only file system"},
	} {
		t.Run(name, func(t *testing.T) {
			p := startEdgemc(t, append([]string{"serve", writeJWTKey(t, issuer), "--data-dir=" + tc.dir}, loopbackArgs()...))
			if code := p.Wait(); code != exitFailure {
				t.Errorf("exit code %d, want %d", code, exitFailure)
			}
			l := p.WaitMsg("edgemc failed")
			if !strings.Contains(l.Str("err"), tc.cause) || !strings.Contains(l.Str("err"), tc.dir) {
				t.Errorf("error %q does not name the directory and %q", l.Str("err"), tc.cause)
			}
			assertNoCrash(t, p)
		})
	}
}
