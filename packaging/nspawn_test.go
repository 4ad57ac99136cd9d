package packaging

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The systemd test boots this Debian release with these packages beside
// the minimal base: systemd as init, dbus for systemctl, rpm to install
// the .rpm too.
const debianRelease = "bookworm"

var containerPackages = []string{"systemd", "systemd-sysv", "dbus", "rpm"}

// Bounds for a hung step, not speed goals.
const (
	debootstrapLimit = 10 * time.Minute
	bootLimit        = 90 * time.Second
	stepLimit        = 2 * time.Minute
	stateLimit       = 60 * time.Second
)

// TestSystemd installs the .deb in a Debian 12 container booted with
// systemd-nspawn and runs edgemc.service under a real systemd and journald:
// the stock configuration fails at once with the line naming the setting
// (no crash loop); once configured the service is active, its warnings are
// in `journalctl -p warning` and its attributes are journal fields; a
// missed watchdog ping restarts it; a crash loop ends in failed; remove and
// reinstall keep it enabled (and disabled when it was); purge leaves only
// the edgemc user. Then the .rpm installs with rpm, verifies clean with
// rpm -V and erases. The container is a copy-on-write overlay of a Debian
// root debootstrapped once into the user's cache directory
// ($EDGEMC_NSPAWN_CACHE, default ~/.cache/edgemc-nspawn); it has its own
// network namespace with nothing but loopback.
func TestSystemd(t *testing.T) {
	if os.Getenv("EDGEMC_INSTALL_TEST") != "1" {
		t.Skip("EDGEMC_INSTALL_TEST=1 is not set: not booting a container")
	}
	dir := packagesDir(t)
	if os.Geteuid() != 0 {
		t.Skip("systemd-nspawn needs root")
	}
	for _, tool := range []string{"systemd-nspawn", "debootstrap", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install systemd-container debootstrap util-linux)", tool)
		}
	}
	t.Parallel()
	deb := filepath.Base(debFor(t, dir, runtime.GOARCH))
	rpm := ""
	for _, a := range arches {
		if a.goarch == runtime.GOARCH {
			rpm = filepath.Base(findPackage(t, dir, "edgemc-*."+a.rpm+".rpm"))
		}
	}

	began := time.Now()
	root := debianRoot(t)
	rootReady := time.Now()
	c := boot(t, root, dir)
	booted := time.Now()
	t.Logf("timing: Debian root %v, boot %v", rootReady.Sub(began).Round(time.Millisecond), booted.Sub(rootReady).Round(time.Millisecond))
	step := func(name string, f func()) {
		t.Helper()
		start := time.Now()
		f()
		t.Logf("timing: %s %v", name, time.Since(start).Round(time.Millisecond))
	}

	step("install", func() {
		out := c.must("dpkg -i /srv/dist/" + deb)
		if !strings.Contains(out, "\nedgemc: set jwks-url (or jwt-public-key) in /etc/edgemc/edgemc.toml") {
			t.Errorf("dpkg -i does not say what to set before starting:\n%s", out)
		}
		if got := c.must("systemctl is-enabled edgemc"); got != "enabled\n" {
			t.Errorf("after install: is-enabled %q, want enabled", got)
		}
	})

	step("start with the stock configuration", func() {
		start := time.Now()
		if out, err := c.run("systemctl start edgemc"); err == nil {
			t.Fatalf("systemctl start with the stock configuration succeeded:\n%s", out)
		}
		took := time.Since(start)
		u := c.unit()
		if u["ActiveState"] != "failed" || u["ExecMainStatus"] != "2" || u["NRestarts"] != "0" {
			t.Errorf("after a start with the stock configuration: %v, want failed with status 2 and no restart", u)
		}
		t.Logf("systemctl start failed after %v", took.Round(time.Millisecond))
		status, _ := c.run("systemctl status edgemc --no-pager --lines=10")
		if !strings.Contains(status, "edgemc: missing setting jwks-url: set jwks-url (or jwt-public-key)") {
			t.Errorf("systemctl status does not show the configuration error:\n%s", status)
		}
		if out := c.must("journalctl -b -u edgemc -t edgemc -p err -o cat"); !strings.Contains(out, "missing setting jwks-url") {
			t.Errorf("the configuration error is not logged at priority err:\n%s", out)
		}
		if out := c.must("ls -A /var/lib/edgemc"); out != "" {
			t.Errorf("the failed start left %q in /var/lib/edgemc", out)
		}
	})

	step("configure and start", func() {
		c.mustInput("mkdir -p /opt/keys && cat >/opt/keys/jwt.pem", publicKeyPEM(t))
		c.must(`echo 'jwt-public-key = "/opt/keys/jwt.pem"' >>/etc/edgemc/edgemc.toml
			echo EDGEMC_NO_SUCH_SETTING=1 >>/etc/edgemc/edgemc.env
			mkdir -p /etc/systemd/system/edgemc.service.d
			printf '[Service]\nWatchdogSec=3s\n' >/etc/systemd/system/edgemc.service.d/test.conf
			systemctl daemon-reload
			systemctl start edgemc`)
		if u := c.unit(); u["ActiveState"] != "active" {
			t.Fatalf("after systemctl start: %v, want active", u)
		}
	})

	step("journal", func() {
		// edgemc's own warning, and no info line, at -p warning.
		warnings := c.waitOutput("edgemc's warning in journalctl -p warning",
			"journalctl -b -u edgemc -t edgemc -p warning -o cat",
			func(out string) bool {
				return strings.Contains(out, "unknown environment variable EDGEMC_NO_SUCH_SETTING is ignored")
			})
		if strings.Contains(warnings, "edgemc ready") {
			t.Errorf("journalctl -p warning shows info lines:\n%s", warnings)
		}
		// Attributes are fields: COMPONENT=store finds the store's line.
		c.waitOutput("a line found by its field", "journalctl -b -u edgemc COMPONENT=store -o cat",
			func(out string) bool {
				return strings.Contains(out, "store opened component=store path=/var/lib/edgemc/edgemc.db")
			})
	})

	step("watchdog", func() {
		pid := c.unit()["MainPID"]
		c.must("systemctl kill --kill-whom=main --signal=SIGSTOP edgemc")
		u := c.waitUnit("a restart after the missed watchdog ping", func(u map[string]string) bool {
			return u["NRestarts"] == "1" && u["ActiveState"] == "active" && u["MainPID"] != pid
		})
		if out := c.must("journalctl -b -u edgemc -t systemd -o cat"); !strings.Contains(out, "Watchdog timeout") {
			t.Errorf("no watchdog timeout in the journal (%v):\n%s", u, out)
		}
	})

	step("restart through the drain", func() {
		pid := c.unit()["MainPID"]
		c.must("systemctl restart edgemc")
		if u := c.unit(); u["ActiveState"] != "active" || u["MainPID"] == pid {
			t.Errorf("after systemctl restart: %v", u)
		}
		if out := c.must("journalctl -b -u edgemc -t edgemc -o cat"); !strings.Contains(out, "shutting down: draining") {
			t.Errorf("the restart did not drain:\n%s", out)
		}
	})

	step("crash loop", func() {
		// A port edgemc may not bind (it has no capability) fails every
		// start after the configuration check: exit 1, restarts, until the
		// start limit. RestartSec is shortened; the unit's limit is kept.
		c.must(`printf '[Service]\nEnvironment=EDGEMC_HTTP_LISTEN=127.0.0.1:1\nRestartSec=100ms\n' >/etc/systemd/system/edgemc.service.d/test.conf
			systemctl daemon-reload
			systemctl reset-failed edgemc`)
		c.run("systemctl restart edgemc")
		u := c.waitUnit("the crash loop to end", func(u map[string]string) bool { return u["ActiveState"] == "failed" })
		if u["ExecMainStatus"] != "1" || u["NRestarts"] != "5" {
			t.Errorf("after the crash loop: %v, want exit status 1 after 5 restarts", u)
		}
		if out, _ := c.run("systemctl status edgemc --no-pager"); !strings.Contains(out, "Start request repeated too quickly") {
			t.Errorf("systemctl status does not show the start limit:\n%s", out)
		}
		c.must(`rm -r /etc/systemd/system/edgemc.service.d
			systemctl daemon-reload
			systemctl reset-failed edgemc
			systemctl start edgemc`)
	})

	step("remove and reinstall", func() {
		c.must("dpkg -r edgemc")
		if u := c.unit(); u["ActiveState"] != "inactive" {
			t.Errorf("after dpkg -r: %v, want inactive", u)
		}
		c.must("test -s /var/lib/edgemc/edgemc.db") // the state stays
		c.must("dpkg -i /srv/dist/" + deb)
		if got := c.must("systemctl is-enabled edgemc"); got != "enabled\n" {
			t.Errorf("after remove and reinstall: is-enabled %q, want enabled", got)
		}
		c.must("systemctl disable edgemc && dpkg -r edgemc && dpkg -i /srv/dist/" + deb)
		if got, _ := c.run("systemctl is-enabled edgemc"); got != "disabled\n" {
			t.Errorf("disabled, removed and reinstalled: is-enabled %q, want disabled", got)
		}
	})

	step("purge", func() {
		c.must("dpkg -r edgemc && dpkg -P edgemc")
		left := c.must(`find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /srv/dist \) -prune -o -name '*edgemc*' -print`)
		if left != "" {
			t.Errorf("after purge, left behind:\n%s", left)
		}
		if out, err := c.run("getent passwd edgemc"); err != nil {
			t.Errorf("after purge the edgemc user is gone (%v %s); it is meant to stay", err, out)
		}
	})

	if rpm == "" {
		t.Logf("no rpm architecture for %s: not installing the .rpm", runtime.GOARCH)
		return
	}
	step("rpm", func() {
		// Debian's rpm knows none of the system's files, hence --nodeps.
		out := c.must("rpm --install --nodeps --force-debian /srv/dist/" + rpm)
		if !strings.Contains(out, "edgemc: set jwks-url") {
			t.Errorf("rpm --install does not say what to set before starting:\n%s", out)
		}
		if out, err := c.run("rpm --verify --nodeps edgemc"); err != nil || out != "" {
			t.Errorf("rpm --verify after install: %v\n%s", err, out)
		}
		if got := c.must("systemctl is-enabled edgemc"); got != "enabled\n" {
			t.Errorf("after rpm --install: is-enabled %q, want enabled", got)
		}
		c.must("rpm --erase edgemc")
		if left := c.must("find /etc /usr -name '*edgemc*'"); left != "" {
			t.Errorf("after rpm --erase, left behind:\n%s", left)
		}
	})
	t.Logf("timing: whole test %v", time.Since(began).Round(time.Millisecond))
}

// publicKeyPEM is a fresh Ed25519 public key for jwt-public-key.
func publicKeyPEM(t *testing.T) string {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// debianRoot returns a Debian root with containerPackages, debootstrapped
// into the cache on first use (and reused afterwards). It skips the test
// when debootstrap fails, as it does without a reachable mirror.
func debianRoot(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("EDGEMC_NSPAWN_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		cache = filepath.Join(base, "edgemc-nspawn")
	}
	sum := sha256.Sum256([]byte(strings.Join(containerPackages, ",")))
	root := filepath.Join(cache, fmt.Sprintf("%s-%s-%x", debianRelease, runtime.GOARCH, sum[:4]))
	ready := func() bool { return exists(filepath.Join(root, "usr/lib/systemd/systemd")) }
	if ready() {
		return root
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// One debootstrap at a time per cache, for concurrent runs.
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if ready() {
		return root
	}
	tmp, err := os.MkdirTemp(cache, ".debootstrap-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		unmountUnder(tmp)
		os.RemoveAll(tmp)
	}()
	mirror := debianMirror()
	ctx, cancel := context.WithTimeout(t.Context(), debootstrapLimit)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(containerPackages, ","),
		debianRelease, tmp, mirror).CombinedOutput()
	if err != nil {
		t.Skipf("debootstrap of Debian %s from %s failed after %v (is the mirror reachable? EDGEMC_DEBIAN_MIRROR names another): %v\n%s",
			debianRelease, mirror, time.Since(start).Round(time.Second), err, lastLines(out, 15))
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: debootstrap of Debian %s from %s into %s: %v", debianRelease, mirror, root, time.Since(start).Round(time.Second))
	return root
}

// debianMirror is $EDGEMC_DEBIAN_MIRROR, else the Debian archive this
// machine's apt uses (its main "/debian" URI), else deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("EDGEMC_DEBIAN_MIRROR"); m != "" {
		return m
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	if more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list"); more != nil {
		files = append(files, more...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			fields := strings.Fields(line)
			var uris []string
			switch {
			case len(fields) > 1 && fields[0] == "URIs:": // deb822
				uris = fields[1:]
			case len(fields) > 2 && fields[0] == "deb": // one-line style, maybe with [options]
				uris = slices.DeleteFunc(fields[1:], func(f string) bool { return !strings.Contains(f, "://") })
			}
			for _, u := range uris {
				if strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
					return strings.TrimSuffix(u, "/")
				}
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// unmountUnder unmounts whatever an interrupted debootstrap left mounted
// below dir, deepest first, so that removing dir cannot reach the host's
// /proc or /sys.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	slices.Sort(mounts)
	for _, m := range slices.Backward(mounts) {
		syscall.Unmount(m, syscall.MNT_DETACH)
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// container is a Debian system booted by systemd-nspawn.
type container struct {
	t      *testing.T
	leader int // the container's PID 1 as this machine sees it
}

// lockedBuffer collects the console output of systemd-nspawn.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// boot starts systemd in root, on a throwaway overlay, with dist bound
// read-only at /srv/dist, and waits until the system is up. It skips the
// test when systemd-nspawn cannot boot a container on this machine.
func boot(t *testing.T, root, dist string) *container {
	t.Helper()
	var console lockedBuffer
	machine := fmt.Sprintf("edgemc-test-%d", os.Getpid())
	cmd := exec.Command("systemd-nspawn", "--quiet", "--boot", "--directory="+root, "--volatile=overlay",
		"--private-network", "--register=no", "--keep-unit", "--machine="+machine,
		"--bind-ro="+dist+":/srv/dist", "--console=pipe")
	cmd.Stdout, cmd.Stderr = &console, &console
	if err := cmd.Start(); err != nil {
		t.Skipf("systemd-nspawn does not start here: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c := &container{t: t}
	t.Cleanup(func() {
		// SIGTERM asks the container's systemd to power off.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			if c.leader != 0 {
				syscall.Kill(c.leader, syscall.SIGKILL)
			}
			cmd.Process.Kill()
			<-exited
		}
		// nspawn leaves this empty directory where /run is no tmpfs.
		os.Remove("/run/systemd/nspawn/propagate/" + machine)
		if t.Failed() {
			t.Logf("container console:\n%s", lastLines([]byte(console.String()), 40))
		}
	})

	deadline := time.Now().Add(bootLimit)
	for c.leader == 0 {
		select {
		case <-exited:
			t.Skipf("systemd-nspawn cannot boot a container here: %s\n%s", cmd.ProcessState, lastLines([]byte(console.String()), 15))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container init within %v:\n%s", bootLimit, console.String())
		}
		c.leader = containerInit(cmd.Process.Pid)
		if c.leader == 0 {
			time.Sleep(20 * time.Millisecond) // nspawn is setting the container up
		}
	}
	// Until the container's systemd listens, systemctl answers "offline"
	// or cannot connect; then --wait waits for the boot to finish.
	ctx, cancel := context.WithTimeout(t.Context(), bootLimit)
	defer cancel()
	var state string
	var err error
	for ctx.Err() == nil {
		var out []byte
		out, err = c.command(ctx, "systemctl is-system-running --wait").CombinedOutput()
		if state = strings.TrimSpace(string(out)); state == "running" || state == "degraded" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	switch {
	case state == "running":
	case state == "degraded":
		failed, _ := c.run("systemctl --failed --no-legend")
		t.Logf("the container runs degraded; failed units (not edgemc's concern):\n%s", failed)
	default:
		t.Skipf("systemd in the container did not come up: %q (%v)\n%s", state, err, lastLines([]byte(console.String()), 15))
	}
	return c
}

// containerInit is the child of systemd-nspawn (pid) that is PID 1 in its
// own PID namespace, or 0 while there is none.
func containerInit(pid int) int {
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(children)) {
		child, _ := strconv.Atoi(f)
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", child))
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(status)) {
			if ns, ok := strings.CutPrefix(line, "NSpid:"); ok {
				if ids := strings.Fields(ns); len(ids) > 1 && ids[len(ids)-1] == "1" {
					return child
				}
			}
		}
	}
	return 0
}

// command runs a shell script inside the container, as root, in a clean
// environment.
func (c *container) command(ctx context.Context, script string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(c.leader), "--all",
		"env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
		"/bin/sh", "-c", script)
}

// runInput runs script with stdin and returns its combined output.
func (c *container) runInput(script, stdin string) (string, error) {
	ctx, cancel := context.WithTimeout(c.t.Context(), stepLimit)
	defer cancel()
	cmd := c.command(ctx, script)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *container) run(script string) (string, error) { return c.runInput(script, "") }

// must runs script and fails the test if it fails.
func (c *container) must(script string) string {
	c.t.Helper()
	return c.mustInput(script, "")
}

func (c *container) mustInput(script, stdin string) string {
	c.t.Helper()
	out, err := c.runInput(script, stdin)
	if err != nil {
		status, _ := c.run("systemctl status edgemc --no-pager --lines=20")
		c.t.Fatalf("in the container: %s: %v\n%s\nsystemctl status edgemc:\n%s", script, err, out, status)
	}
	return out
}

// unit is edgemc.service's state as systemctl show gives it.
func (c *container) unit() map[string]string {
	c.t.Helper()
	u := map[string]string{}
	out := c.must("systemctl show edgemc -p ActiveState -p SubState -p Result -p ExecMainStatus -p NRestarts -p MainPID")
	for line := range strings.Lines(out) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		u[k] = v
	}
	return u
}

// waitUnit polls the unit's state until ok, within stateLimit.
func (c *container) waitUnit(what string, ok func(map[string]string) bool) map[string]string {
	c.t.Helper()
	deadline := time.Now().Add(stateLimit)
	for {
		u := c.unit()
		if ok(u) {
			return u
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting %v for %s: the unit is %v", stateLimit, what, u)
		}
		time.Sleep(100 * time.Millisecond) // systemd has no wait for a state
	}
}

// waitOutput polls a script until its output is ok (journald writes
// entries asynchronously), within stateLimit.
func (c *container) waitOutput(what, script string, ok func(string) bool) string {
	c.t.Helper()
	deadline := time.Now().Add(stateLimit)
	for {
		out, err := c.run(script)
		if err == nil && ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting %v for %s: %s: %v\n%s", stateLimit, what, script, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
