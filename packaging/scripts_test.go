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
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
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

// systemctl returns only the systemctl calls among calls.
func systemctl(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "systemctl ") {
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
	enable := []string{"systemctl --root=$ROOT enable edgemc.service"}
	restart := []string{"systemctl daemon-reload", "systemctl try-restart edgemc.service"}
	tests := []struct {
		name    string
		args    []string
		systemd bool
		want    []string // systemctl calls
		setup   bool     // state directory, env file group, buffers
	}{
		{"deb first install", []string{"configure", ""}, false, enable, true},
		{"rpm first install", []string{"1"}, false, enable, true},
		{"deb first install, systemd running", []string{"configure", ""}, true, append([]string{"systemctl daemon-reload"}, enable...), true},
		{"deb upgrade", []string{"configure", "0.1.0-1"}, true, restart, true},
		{"rpm upgrade", []string{"2"}, true, restart, true},
		{"upgrade in a chroot", []string{"2"}, false, nil, true},
		{"deb abort-upgrade", []string{"abort-upgrade", "0.1.0-1"}, true, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newScriptEnv(t, tt.systemd, "212992")
			calls := e.run(t, "postinstall.sh", tt.args...)
			if got := systemctl(calls); !slices.Equal(got, tt.want) {
				t.Errorf("systemctl calls %q, want %q", got, tt.want)
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

func TestPostinstallNeverLowersBuffers(t *testing.T) {
	e := newScriptEnv(t, false, "16000000")
	e.run(t, "postinstall.sh", "configure", "")
	if got := readSource(t, filepath.Join(e.root, "proc/sys/net/core/rmem_max")); got != "16000000" {
		t.Errorf("rmem_max = %q, want it left at 16000000", got)
	}
}

func TestPreremove(t *testing.T) {
	stopDisable := []string{"systemctl stop edgemc.service", "systemctl --root=$ROOT disable edgemc.service"}
	for _, tt := range []struct {
		arg  string
		want []string
	}{
		{"remove", stopDisable},
		{"0", stopDisable},
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
	}{
		{"remove", true},
		{"0", true},
		{"upgrade", true},
		{"1", true},
		{"purge", false},
	} {
		e := newScriptEnv(t, true, "0")
		e.run(t, "postremove.sh", tt.arg)
		if got := e.exists("var/lib/edgemc/state.db"); got != tt.wantState {
			t.Errorf("postremove %s: state kept %v, want %v", tt.arg, got, tt.wantState)
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
