package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// crashDirEnv tells a re-executed test binary to act as the crash test's writer child; crashCheckpointEnv gives
// its CheckpointInterval.
const (
	crashDirEnv        = "EDGEMC_STORE_CRASH_DIR"
	crashCheckpointEnv = "EDGEMC_STORE_CRASH_CHECKPOINT"
)

// TestCrashChild is the child side of TestCrashKeepsAcknowledgedWrites: it writes until killed and prints one line
// per acknowledged write. Run on its own it does nothing.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("child of TestCrashKeepsAcknowledgedWrites only")
	}
	interval, err := time.ParseDuration(os.Getenv(crashCheckpointEnv))
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(1)
	}
	db, err := Open(dir, Options{CheckpointInterval: interval})
	if err != nil {
		fmt.Printf("ERR %v\n", err)
		os.Exit(1)
	}
	var out sync.Mutex
	ack := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format+"\n", args...)
		out.Unlock()
	}
	deadline := time.Now().Add(time.Minute) // never outlive a parent that died
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			meeting := fmt.Sprint("m", w%2)
			gen, err := db.Acquire(meeting)
			if err != nil {
				ack("ERR %v", err)
				return
			}
			ack("G %s %d", meeting, gen)
			for i := 0; time.Now().Before(deadline); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				switch err := db.PutMeeting(gen, Meeting{ID: meeting, AssignedBy: id}); {
				case errors.Is(err, ErrFencedOut):
					if gen, err = db.Acquire(meeting); err != nil {
						ack("ERR %v", err)
						return
					}
					ack("G %s %d", meeting, gen)
					continue
				case err != nil:
					ack("ERR %v", err)
					return
				}
				if err := db.PutParticipant(meeting, gen, Participant{ID: id, Name: id}); err == nil {
					ack("P %s %s", meeting, id)
				} else if !errors.Is(err, ErrFencedOut) {
					ack("ERR %v", err)
					return
				}
				if err := db.ConsumeNonce(meeting, id, time.Hour); err != nil {
					ack("ERR %v", err)
					return
				}
				ack("N %s %s", meeting, id)
				if i%50 == 49 { // take the meeting over from the other writers now and then
					if gen, err = db.Acquire(meeting); err != nil {
						ack("ERR %v", err)
						return
					}
					ack("G %s %d", meeting, gen)
				}
			}
		})
	}
	wg.Wait()
}

// A writer killed with SIGKILL in the middle of its writes leaves files that open, pass bbolt's consistency check
// and hold every write the writer had seen acknowledged: whether the writes were still in the log only, or the
// kill came amid frequent checkpoints.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	for _, c := range []struct {
		name       string
		checkpoint time.Duration
		killAfter  int
	}{
		{"log only", time.Hour, 600},
		{"checkpoints", time.Millisecond, 3000},
	} {
		t.Run(c.name, func(t *testing.T) { crashAndCheck(t, c.checkpoint, c.killAfter) })
	}
}

func crashAndCheck(t *testing.T, checkpoint time.Duration, killAfter int) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashCheckpointEnv+"="+checkpoint.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var (
		gens         = map[string]uint64{}
		participants = map[string][]string{}
		nonces       = map[string][]string{}
		acks         int
	)
	r := bufio.NewReader(stdout)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break // a partial last line was never acknowledged
		}
		f := strings.Fields(line)
		switch f[0] {
		case "ERR":
			t.Errorf("child: %s", line)
		case "G":
			g, _ := strconv.ParseUint(f[2], 10, 64)
			gens[f[1]] = max(gens[f[1]], g)
		case "P":
			participants[f[1]] = append(participants[f[1]], f[2])
		case "N":
			nonces[f[1]] = append(nonces[f[1]], f[2])
		}
		if acks++; acks == killAfter {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err == nil || acks < killAfter {
		t.Fatalf("child ended with %v after %d acknowledged writes; want it killed after %d", err, acks, killAfter)
	}
	t.Logf("child killed after %d acknowledged writes", acks)

	// Open checkpoints once; the kill must have come after more checkpoints, or before any other.
	if n := checkBoltConsistent(t, dir); (n > 0) != (checkpoint < time.Second) {
		t.Fatalf("the file holds the log up to record %d: not the case this test is for", n)
	} else {
		t.Logf("the file holds the log up to record %d", n)
	}
	db := openTest(t, dir, Options{})
	states, err := db.LoadAll()
	if err != nil {
		t.Fatalf("LoadAll after crash: %v", err)
	}
	stored := map[string]bool{}
	for _, st := range states {
		if st.Meeting.Generation < gens[st.Meeting.ID] {
			t.Errorf("meeting %s: generation %d after crash, %d was acknowledged", st.Meeting.ID, st.Meeting.Generation, gens[st.Meeting.ID])
		}
		for _, p := range st.Participants {
			stored[st.Meeting.ID+"/"+p.ID] = true
		}
	}
	for m, ids := range participants {
		for _, id := range ids {
			if !stored[m+"/"+id] {
				t.Errorf("acknowledged participant %s/%s lost", m, id)
			}
		}
	}
	for m, ids := range nonces {
		for _, id := range ids {
			if err := db.ConsumeNonce(m, id, time.Hour); !errors.Is(err, ErrNonceUsed) {
				t.Errorf("acknowledged nonce %s/%s: consume after crash gave %v, want ErrNonceUsed", m, id, err)
			}
		}
	}
	for m, g := range gens {
		if next := mustAcquire(t, db, m); next <= g {
			t.Errorf("meeting %s: Acquire after crash = %d, not above acknowledged %d", m, next, g)
		}
	}
}

// checkBoltConsistent runs bbolt's own page-level check on the file and returns the last log record it holds.
func checkBoltConsistent(t *testing.T, dir string) (checkpoint uint64) {
	t.Helper()
	bdb, err := bolt.Open(dir+"/"+FileName, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			t.Errorf("bbolt check: %v", err)
		}
		checkpoint, err = decodeGeneration(tx.Bucket(bucketLog).Get(keyCheckpoint))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return checkpoint
}
