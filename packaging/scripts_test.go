package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// scriptEnv runs the install scripts against a scratch root ($DPKG_ROOT)
// with the commands that change the system replaced by stubs that log
// their arguments.
type scriptEnv struct {
	root, log, path string
	// notWasEnabled makes `deb-systemd-helper was-enabled` answer no, as
	// after a remove of a unit the administrator had disabled.
	notWasEnabled bool
	// out is what the last script printed.
	out string
}

func newScriptEnv(t *testing.T, systemdRunning bool, rmemMax string) *scriptEnv {
	t.Helper()
	dir := t.TempDir()
	e := &scriptEnv{root: filepath.Join(dir, "root"), log: filepath.Join(dir, "log")}
	stubs := filepath.Join(dir, "stubs")
	files := map[string]string{
		"root/etc/edgemc/edgemc.env":      "",
		"root/var/lib/edgemc/state.db":    "meetings",
		"root/proc/sys/net/core/rmem_max": rmemMax,
		"root/proc/sys/net/core/wmem_max": rmemMax,
		"stubs/getent":                    "exit 2", // no such user or group
		"stubs/stat":                      "echo root",
		"stubs/groupadd":                  "",
		"stubs/useradd":                   "",
		"stubs/install":                   "",
		"stubs/chgrp":                     "",
		"stubs/systemctl":                 "",
		"stubs/deb-systemd-helper":        `case "$*" in *was-enabled*) [ -z "$STUB_NOT_WAS_ENABLED" ] ;; esac`,
	}
	if systemdRunning {
		files["root/run/systemd/system/.keep"] = ""
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(name, "stubs/") {
			body = "#!/bin/sh\necho \"${0##*/} $*\" >>\"$STUB_LOG\"\n" + body + "\n"
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.path = stubs + string(os.PathListSeparator) + os.Getenv("PATH")
	return e
}

// run runs one script with args and returns the stub calls it made, with
// the scratch root shown as $ROOT.
func (e *scriptEnv) run(t *testing.T, script string, args ...string) []string {
	t.Helper()
	os.Remove(e.log)
	cmd := exec.CommandContext(t.Context(), "sh", append([]string{filepath.Join("scripts", script)}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+e.path, "DPKG_ROOT="+e.root, "STUB_LOG="+e.log)
	if e.notWasEnabled {
		cmd.Env = append(cmd.Env, "STUB_NOT_WAS_ENABLED=1")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
	e.out = string(out)
	b, err := os.ReadFile(e.log)
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(strings.ReplaceAll(string(b), e.root, "$ROOT")), "\n")
}

func (e *scriptEnv) exists(path string) bool {
	_, err := os.Stat(filepath.Join(e.root, path))
	return err == nil
}

// unitCalls returns only the calls that enable, disable, start or stop the
// unit: those of systemctl and deb-systemd-helper.
func unitCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "systemctl ") || strings.HasPrefix(c, "deb-systemd-helper ") {
			out = append(out, c)
		}
	}
	return out
}

func TestScriptsSyntax(t *testing.T) {
	scripts, _ := filepath.Glob("scripts/*.sh")
	if len(scripts) != 4 {
		t.Fatalf("scripts: %v, want the four install scripts", scripts)
	}
	for _, s := range append(scripts, "build.sh", "pkgversion.sh") {
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
		}
	}
}

func TestPreinstallCreatesUser(t *testing.T) {
	for _, arg := range []string{"install", "1"} {
		e := newScriptEnv(t, false, "0")
		calls := e.run(t, "preinstall.sh", arg)
		if !slices.Contains(calls, "groupadd --system edgemc") ||
			!slices.Contains(calls, "useradd --system --gid edgemc --home-dir /var/lib/edgemc --no-create-home --shell /usr/sbin/nologin --comment edgemc meeting controller edgemc") {
			t.Errorf("preinstall %s: %q", arg, calls)
		}
	}
}

func TestPostinstall(t *testing.T) {
	debEnable := []string{"deb-systemd-helper unmask edgemc.service", "deb-systemd-helper --quiet was-enabled edgemc.service", "deb-systemd-helper enable edgemc.service"}
	debKeepDisabled := []string{"deb-systemd-helper unmask edgemc.service", "deb-systemd-helper --quiet was-enabled edgemc.service", "deb-systemd-helper update-state edgemc.service"}
	rpmEnable := []string{"systemctl --root=$ROOT enable edgemc.service"}
	restart := []string{"systemctl try-restart edgemc.service"}
	reload := []string{"systemctl daemon-reload"}
	cat := func(lists ...[]string) []string { return slices.Concat(lists...) }
	tests := []struct {
		name          string
		args          []string
		systemd       bool
		notWasEnabled bool
		want          []string // systemctl and deb-systemd-helper calls
		setup         bool     // state directory, env file group, buffers
	}{
		{"deb first install", []string{"configure", ""}, false, false, debEnable, true},
		{"rpm first install", []string{"1"}, false, false, rpmEnable, true},
		{"deb first install, systemd running", []string{"configure", ""}, true, false, cat(reload, debEnable), true},
		// An upgrade, or a reinstall after a remove of an enabled unit.
		{"deb upgrade", []string{"configure", "0.1.0-1"}, true, false, cat(reload, debEnable, restart), true},
		{"deb reinstall after a remove, was disabled", []string{"configure", "0.1.0-1"}, true, true, cat(reload, debKeepDisabled, restart), true},
		{"rpm upgrade", []string{"2"}, true, false, cat(reload, restart), true},
		{"rpm upgrade in a chroot", []string{"2"}, false, false, nil, true},
		{"deb abort-upgrade", []string{"abort-upgrade", "0.1.0-1"}, true, false, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t, tt.systemd, "212992")
			e.notWasEnabled = tt.notWasEnabled
			calls := e.run(t, "postinstall.sh", tt.args...)
			if got := unitCalls(calls); !slices.Equal(got, tt.want) {
				t.Errorf("unit calls %q, want %q", got, tt.want)
			}
			for _, c := range []string{
				"install -d -o edgemc -g edgemc -m 0750 $ROOT/var/lib/edgemc",
				"chgrp edgemc $ROOT/etc/edgemc/edgemc.env",
			} {
				if slices.Contains(calls, c) != tt.setup {
					t.Errorf("%q called: %v, want %v (calls %q)", c, !tt.setup, tt.setup, calls)
				}
			}
			for _, key := range []string{"rmem_max", "wmem_max"} {
				got := strings.TrimSpace(readSource(t, filepath.Join(e.root, "proc/sys/net/core", key)))
				if (got == "7500000") != tt.setup {
					t.Errorf("%s = %s after the script (raise expected: %v)", key, got, tt.setup)
				}
			}
		})
	}
}

// TestPostinstallSaysWhatToSet: while neither jwks-url nor jwt-public-key is
// set, the postinstall script prints one line saying so, before any start.
func TestPostinstallSaysWhatToSet(t *testing.T) {
	for _, tt := range []struct {
		name, toml, env string
		hint            bool
	}{
		{"stock configuration", readSource(t, "edgemc.toml"), readSource(t, "edgemc.env"), true},
		{"jwks-url in the file", readSource(t, "edgemc.toml") + "jwks-url = \"https://ac.example.net/jwks\"\n", "", false},
		{"jwt-public-key in the file", "  jwt-public-key = \"/etc/edgemc/jwt.pem\"\n", "", false},
		{"jwks-url in the environment file", "", "EDGEMC_JWKS_URL=https://ac.example.net/jwks\n", false},
		{"an empty variable does not count", "", "EDGEMC_JWKS_URL=\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t, false, "0")
			for name, body := range map[string]string{"edgemc.toml": tt.toml, "edgemc.env": tt.env} {
				if err := os.WriteFile(filepath.Join(e.root, "etc/edgemc", name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			e.run(t, "postinstall.sh", "configure", "")
			const want = "edgemc: set jwks-url (or jwt-public-key) in /etc/edgemc/edgemc.toml, and gc-url and the advertise URLs to join a Global Controller, then run: systemctl start edgemc\n"
			if got := e.out == want; got != tt.hint {
				t.Errorf("output %q; want the hint: %v", e.out, tt.hint)
			}
		})
	}
}

func TestPostinstallNeverLowersBuffers(t *testing.T) {
	e := newScriptEnv(t, false, "16000000")
	e.run(t, "postinstall.sh", "configure", "")
	if got := readSource(t, filepath.Join(e.root, "proc/sys/net/core/rmem_max")); got != "16000000" {
		t.Errorf("rmem_max = %q, want it left at 16000000", got)
	}
}

func TestPreremove(t *testing.T) {
	for _, tt := range []struct {
		arg  string
		want []string
	}{
		// A deb remove keeps the enable state (postremove masks the unit).
		{"remove", []string{"systemctl stop edgemc.service"}},
		{"0", []string{"systemctl stop edgemc.service", "systemctl --root=$ROOT disable edgemc.service"}},
		{"upgrade", nil},
		{"1", nil},
		{"deconfigure", nil},
	} {
		e := newScriptEnv(t, true, "0")
		if got := e.run(t, "preremove.sh", tt.arg); !slices.Equal(got, tt.want) {
			t.Errorf("preremove %s: %q, want %q", tt.arg, got, tt.want)
		}
	}
}

func TestPostremove(t *testing.T) {
	for _, tt := range []struct {
		arg       string
		wantState bool
		want      []string // systemctl and deb-systemd-helper calls
	}{
		{"remove", true, []string{"deb-systemd-helper mask edgemc.service", "systemctl daemon-reload"}},
		{"0", true, []string{"systemctl daemon-reload"}},
		{"upgrade", true, nil},
		{"1", true, nil},
		{"purge", false, []string{"deb-systemd-helper purge edgemc.service", "deb-systemd-helper unmask edgemc.service"}},
	} {
		e := newScriptEnv(t, true, "0")
		calls := e.run(t, "postremove.sh", tt.arg)
		if got := e.exists("var/lib/edgemc/state.db"); got != tt.wantState {
			t.Errorf("postremove %s: state kept %v, want %v", tt.arg, got, tt.wantState)
		}
		if got := unitCalls(calls); !slices.Equal(got, tt.want) {
			t.Errorf("postremove %s: unit calls %q, want %q", tt.arg, got, tt.want)
		}
	}
}

func TestPkgVersion(t *testing.T) {
	for _, tt := range []struct{ version, commits, want string }{
		{"v1.2.3", "9", "1.2.3"},
		{"v1.2.3-4-gabc1234", "9", "1.2.3+4.gabc1234"},
		{"v1.2.3-dirty", "9", "1.2.3+dirty"},
		{"v1.2.3-4-gabc1234-dirty", "9", "1.2.3+4.gabc1234.dirty"},
		{"v1.3.0-rc1", "9", "1.3.0~rc1"},
		{"v1.3.0-rc1-2-gdeadbee", "9", "1.3.0~rc1+2.gdeadbee"},
		{"abc1234", "57", "0.0.0+57.gabc1234"},
		{"00a3232", "90", "0.0.0+90.g00a3232"}, // a hash that starts with digits
		{"abc1234-dirty", "57", "0.0.0+57.gabc1234.dirty"},
		{"dev", "0", "0.0.0+0.dev"},
		{"", "1", ""},
		{"v1.2.3 x", "1", ""},
	} {
		out, err := exec.Command("sh", "pkgversion.sh", tt.version, tt.commits).Output()
		if got := strings.TrimSpace(string(out)); got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("pkgversion.sh %q %s = %q (%v), want %q", tt.version, tt.commits, got, err, tt.want)
		}
	}
}

// TestPkgVersionOrder checks that dpkg and rpm order the versions as the
// builds were made: untagged builds, a release candidate, the release, later commits.
func TestPkgVersionOrder(t *testing.T) {
	order := []string{"0.0.0+5.gabc1234", "0.0.0+12.g0123abc", "1.2.0~rc1", "1.2.0~rc1+2.gdeadbee", "1.2.0", "1.2.0+3.gabc1234", "1.2.0+10.g0000000", "1.2.1"}
	for i := 1; i < len(order); i++ {
		older, newer := order[i-1], order[i]
		if _, err := exec.LookPath("dpkg"); err == nil {
			if err := exec.Command("dpkg", "--compare-versions", older+"-1", "lt", newer+"-1").Run(); err != nil {
				t.Errorf("dpkg: %s is not older than %s", older, newer)
			}
		}
		if _, err := exec.LookPath("rpm"); err == nil {
			out, err := exec.Command("rpm", "--eval", `%{lua: print(rpm.vercmp("`+older+`", "`+newer+`"))}`).Output()
			if err != nil || strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm: %s is not older than %s (%q, %v)", older, newer, out, err)
			}
		}
	}
}
