package packaging

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitName = "edgemc.service"

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, src string) unitFile {
	t.Helper()
	u := unitFile{}
	var section string
	sc := bufio.NewScanner(strings.NewReader(src))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("unit: bad line %q", line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

// one returns the single value of key, failing the test unless there is exactly one.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s= set %d times, want once", section, key, len(vs))
		return ""
	}
	return vs[0]
}

// TestUnitSettings checks the unit's promises: readiness, user, state,
// restarts that end (no restart after a configuration error, a start limit
// a crash loop reaches), a stop that outlasts the drain, and the hardening
// asked for.
func TestUnitSettings(t *testing.T) {
	u := parseUnit(t, readSource(t, unitName))
	want := map[string]string{
		"Type":                     "notify",
		"ExecStart":                "/usr/bin/edgemc serve --config /etc/edgemc/edgemc.toml",
		"EnvironmentFile":          "-/etc/edgemc/edgemc.env",
		"User":                     "edgemc",
		"StateDirectory":           strings.TrimPrefix(packageDataDir, "/var/lib/"),
		"WorkingDirectory":         packageDataDir,
		"Restart":                  "on-failure",
		"RestartPreventExitStatus": "2",
		"Environment":              "GOTRACEBACK=crash",
		"KillSignal":               "SIGTERM",
		"CapabilityBoundingSet":    "",
		"AmbientCapabilities":      "",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		"ProtectHome":              "yes",
		"PrivateTmp":               "yes",
		"RestrictAddressFamilies":  "AF_UNIX AF_INET AF_INET6",
	}
	for k, v := range want {
		if got := u.one(t, "Service", k); got != v {
			t.Errorf("%s=%s, want %s", k, got, v)
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%s", got)
	}

	drain, err := time.ParseDuration(settingDefault(t, "drain-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	stop, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec"))
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	if stop < drain+10*time.Second {
		t.Errorf("TimeoutStopSec=%v leaves the %v drain under 10 s to exit", stop, drain)
	}
	if _, err := time.ParseDuration(u.one(t, "Service", "WatchdogSec")); err != nil {
		t.Errorf("WatchdogSec: %v", err)
	}
	// A crash loop (a start, a failure, RestartSec=, again) makes the burst
	// of starts well within the interval, so the start limit ends it.
	restart, err1 := time.ParseDuration(u.one(t, "Service", "RestartSec"))
	interval, err2 := time.ParseDuration(u.one(t, "Unit", "StartLimitIntervalSec"))
	burst, err3 := strconv.Atoi(u.one(t, "Unit", "StartLimitBurst"))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Errorf("restart and start limit: %v", err)
	} else if loop := time.Duration(burst) * restart; loop*2 > interval {
		t.Errorf("StartLimitBurst=%d × RestartSec=%v = %v: a crash loop may never reach the start limit of StartLimitIntervalSec=%v", burst, restart, loop, interval)
	}
	if n, err := strconv.Atoi(u.one(t, "Service", "LimitNOFILE")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%d (%v), want at least 65536", n, err)
	}
	// make bench runs its servers with this slack too.
	if slack, err := time.ParseDuration(u.one(t, "Service", "TimerSlackNSec")); err != nil || slack <= 0 || slack > 10*time.Millisecond {
		t.Errorf("TimerSlackNSec=%v (%v), want a slack of at most 10 ms", slack, err)
	}
}

// stageRoot lays out a file system root holding the unit, an executable at
// /usr/bin/edgemc and the man page, plus this host's targets and slices,
// so that `systemd-analyze verify --root` resolves everything it names.
// With pkgRoot set, that root (an unpacked package) is used instead of the sources.
func stageRoot(t *testing.T, pkgRoot string) string {
	t.Helper()
	root := pkgRoot
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if root == "" {
		root = t.TempDir()
		unitDir = filepath.Join(root, "usr/lib/systemd/system")
		files := []struct {
			name, body string
			mode       os.FileMode
		}{
			{"usr/bin/edgemc", "#!/bin/sh\n", 0o755},
			{"usr/share/man/man1/edgemc.1", readSource(t, "edgemc.1"), 0o644},
			{"usr/lib/systemd/system/" + unitName, readSource(t, unitName), 0o644},
		}
		for _, f := range files {
			p := filepath.Join(root, f.name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, pattern := range []string{"*.target", "*.slice"} {
		host, _ := filepath.Glob(filepath.Join("/usr/lib/systemd/system", pattern))
		if len(host) == 0 {
			t.Skipf("no systemd units on this host (%s)", pattern)
		}
		for _, src := range host {
			if err := exec.Command("cp", "-P", src, unitDir).Run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (apt-get install its package to run this test)", name)
	}
}

// verifyUnit runs `systemd-analyze verify` on the unit in root; it must
// report nothing. The Documentation= man page is checked when man is installed.
func verifyUnit(t *testing.T, root string) {
	t.Helper()
	needTool(t, "systemd-analyze")
	args := []string{"verify", "--root=" + root}
	if _, err := exec.LookPath("man"); err != nil {
		t.Log("man is not installed: Documentation= is not checked")
		args = append(args, "--man=no")
	}
	cmd := exec.CommandContext(t.Context(), "systemd-analyze", append(args, unitName)...)
	cmd.Env = append(os.Environ(), "MANPATH="+filepath.Join(root, "usr/share/man"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func TestUnitVerify(t *testing.T) {
	verifyUnit(t, stageRoot(t, ""))
}

// exposureAccepted lists the checks of `systemd-analyze security` that the
// unit fails on purpose, and why.
var exposureAccepted = map[string]string{
	"RootDirectory=/RootImage=":                "runs from the host's /usr/bin; ProtectSystem=strict makes it read-only",
	"RestrictAddressFamilies=~AF_UNIX":         "sd_notify and journald are AF_UNIX sockets",
	"RestrictAddressFamilies=~AF_(INET|INET6)": "a network service: QUIC, gRPC, HTTP",
	"PrivateNetwork=":                          "a network service",
	"IPAddressDeny=":                           "clients and the GC may be anywhere",
	"ProcSubset=":                              "heartbeats read /proc/stat and /proc/meminfo",
	"DeviceAllow=":                             "ProtectClock= allows reading the RTC",
	"UMask=":                                   "0027: files are readable by the edgemc group, by design",
}

var exposureLine = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestUnitSecurity runs the offline security analysis: the exposure must stay
// low and every failed check must be one explained above.
func TestUnitSecurity(t *testing.T) {
	needTool(t, "systemd-analyze")
	cmd := exec.CommandContext(t.Context(), "systemd-analyze", "security", "--offline=true", "--no-pager", "./"+unitName)
	cmd.Env = append(os.Environ(), "SYSTEMD_COLORS=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposureLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	level, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure level %.1f (0 best, 10 worst)", level)
	if level > 1.5 {
		t.Errorf("exposure level %.1f, want at most 1.5", level)
	}
	var failed []string
	for line := range strings.Lines(string(out)) {
		if check, ok := strings.CutPrefix(line, "✗ "); ok {
			name, _, _ := strings.Cut(check, " ")
			failed = append(failed, name)
			if _, ok := exposureAccepted[name]; !ok {
				t.Errorf("unexplained security finding: %s", strings.TrimSpace(line))
			}
		}
	}
	for name, why := range exposureAccepted {
		if !slices.Contains(failed, name) {
			t.Errorf("%s (%s) no longer fails: drop it from exposureAccepted", name, why)
		}
	}
}
