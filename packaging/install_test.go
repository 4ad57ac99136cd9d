package packaging

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	stateDir  = packageDataDir
	configDir = "/etc/edgemc"
	wantsLink = "/etc/systemd/system/multi-user.target.wants/" + unitName
	// maskLink masks the unit between a deb remove and a reinstall or purge.
	maskLink = "/etc/systemd/system/" + unitName
)

// unitState is where deb-systemd-helper keeps the unit's enable state
// from a remove until the purge.
var unitState = []string{
	"/var/lib/systemd/deb-systemd-helper-enabled/" + unitName + ".dsh-also",
	"/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/" + unitName,
	"/var/lib/systemd/deb-systemd-helper-masked/" + unitName,
}

var bufferSysctls = []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"}

// dpkgStatus returns dpkg's status of edgemc: "not-installed", "installed",
// "config-files", ...
func dpkgStatus() string {
	out, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "edgemc").Output()
	if err != nil {
		return "not-installed"
	}
	return string(out)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func dpkg(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "dpkg", args...).CombinedOutput()
	t.Logf("dpkg %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Fatalf("dpkg %s: %v", strings.Join(args, " "), err)
	}
}

// TestInstallDeb installs the .deb on this machine, checks what it set up,
// runs the installed binary as the edgemc user, upgrades, removes,
// reinstalls (still enabled) and purges it, then puts back everything it
// changed. It runs only as root with
// EDGEMC_INSTALL_TEST=1, and only on a machine without edgemc.
func TestInstallDeb(t *testing.T) {
	if os.Getenv("EDGEMC_INSTALL_TEST") != "1" {
		t.Skip("EDGEMC_INSTALL_TEST=1 is not set: not installing the .deb on this machine")
	}
	if os.Geteuid() != 0 {
		t.Skip("installing the .deb needs root")
	}
	deb := debFor(t, packagesDir(t), runtime.GOARCH)
	needTool(t, "dpkg")
	if s := dpkgStatus(); s != "not-installed" {
		t.Skipf("edgemc is %s on this machine: not touching it", s)
	}
	t.Parallel() // with TestSystemd, which installs in a container
	for _, p := range append([]string{configDir, stateDir, "/usr/bin/edgemc", wantsLink, maskLink, "/usr/share/edgemc"}, unitState...) {
		if exists(p) {
			t.Skipf("%s exists on this machine: not touching it", p)
		}
	}
	_, errUser := user.Lookup("edgemc")
	_, errGroup := user.LookupGroup("edgemc")
	userExisted, groupExisted := errUser == nil, errGroup == nil
	sysctls := map[string][]byte{}
	for _, p := range bufferSysctls {
		if b, err := os.ReadFile(p); err == nil {
			sysctls[p] = b
		}
	}
	t.Cleanup(func() {
		if dpkgStatus() != "not-installed" {
			if out, err := exec.Command("dpkg", "-P", "edgemc").CombinedOutput(); err != nil {
				t.Errorf("cleanup: dpkg -P: %v\n%s", err, out)
			}
		}
		for _, p := range append([]string{configDir, stateDir, wantsLink, maskLink}, unitState...) {
			os.RemoveAll(p)
		}
		if !userExisted {
			if out, err := exec.Command("userdel", "edgemc").CombinedOutput(); err != nil {
				t.Errorf("cleanup: userdel: %v\n%s", err, out)
			}
		}
		if _, err := user.LookupGroup("edgemc"); err == nil && !groupExisted {
			if out, err := exec.Command("groupdel", "edgemc").CombinedOutput(); err != nil {
				t.Errorf("cleanup: groupdel: %v\n%s", err, out)
			}
		}
		for p, b := range sysctls {
			if now, _ := os.ReadFile(p); !bytes.Equal(now, b) {
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Errorf("cleanup: restoring %s: %v", p, err)
				}
			}
		}
	})

	dpkg(t, "-i", deb)
	u := checkInstalled(t)

	out := run(t, "/usr/bin/edgemc", "version")
	if v := versionIn(strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version"))); !strings.Contains(out, v) {
		t.Errorf("edgemc version printed %q, want it to name %s", out, v)
	}
	serveOnce(t, u)

	// Upgrade (the same package again): the local configuration and the state stay.
	const localChange = "# changed on this machine\n"
	appendFile(t, filepath.Join(configDir, "edgemc.toml"), localChange)
	dpkg(t, "-i", deb)
	if !strings.HasSuffix(readSource(t, filepath.Join(configDir, "edgemc.toml")), localChange) {
		t.Error("upgrade replaced the changed edgemc.toml")
	}
	if !stateFilesOf(t, u) {
		t.Error("upgrade lost the state in " + stateDir)
	}

	// Remove, then reinstall: the configuration, the state and the enable
	// state stay until purge (Debian's convention).
	_, systemctl := exec.LookPath("systemctl")
	dpkg(t, "-r", "edgemc")
	if s := dpkgStatus(); s != "config-files" {
		t.Errorf("after dpkg -r: status %s, want config-files", s)
	}
	for _, p := range []string{"/usr/bin/edgemc", "/usr/lib/systemd/system/" + unitName, "/usr/share/edgemc"} {
		if exists(p) {
			t.Errorf("after dpkg -r: %s remains", p)
		}
	}
	if !exists(filepath.Join(configDir, "edgemc.toml")) || !stateFilesOf(t, u) {
		t.Error("dpkg -r must keep the configuration and the state")
	}
	if systemctl == nil && !exists(wantsLink) {
		t.Error("dpkg -r forgot that the unit was enabled")
	}
	dpkg(t, "-i", deb)
	if systemctl == nil && (!exists(wantsLink) || exists(maskLink)) {
		t.Errorf("after remove and reinstall: enabled %v (want true), masked %v (want false)", exists(wantsLink), exists(maskLink))
	}

	dpkg(t, "-r", "edgemc")
	dpkg(t, "-P", "edgemc")
	if s := dpkgStatus(); s != "not-installed" {
		t.Errorf("after dpkg -P: status %s", s)
	}
	for _, p := range append([]string{configDir, stateDir, wantsLink, maskLink}, unitState...) {
		if exists(p) {
			t.Errorf("after dpkg -P: %s remains", p)
		}
	}
	if _, err := user.Lookup("edgemc"); err != nil {
		t.Errorf("after dpkg -P: the edgemc user is gone (%v); it is meant to stay", err)
	}
	t.Log("after purge only the edgemc system user remains, as with Debian's own packages; the cleanup removes it")
}

// installedUser is the edgemc account.
type installedUser struct{ uid, gid uint32 }

func checkInstalled(t *testing.T) installedUser {
	t.Helper()
	u, err := user.Lookup("edgemc")
	if err != nil {
		t.Fatalf("no edgemc user: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 || uid >= 1000 || u.HomeDir != stateDir {
		t.Errorf("edgemc user: uid %d, home %s; want a system user at home in %s", uid, u.HomeDir, stateDir)
	}
	if g, err := user.LookupGroupId(u.Gid); err != nil || g.Name != "edgemc" {
		t.Errorf("edgemc's group: %v %v", g, err)
	}
	passwd := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", "edgemc")), ":")
	if !strings.HasSuffix(passwd[len(passwd)-1], "nologin") {
		t.Errorf("edgemc's shell is %s, want nologin", passwd[len(passwd)-1])
	}
	iu := installedUser{uint32(uid), uint32(gid)}

	checkStat(t, stateDir, fs.ModeDir|0o750, iu.uid, iu.gid)
	checkStat(t, filepath.Join(configDir, "edgemc.env"), 0o640, 0, iu.gid)
	for _, f := range append(packagedFiles, packagedFile{path: licenseFile["deb"]}) {
		if !exists(f.path) {
			t.Errorf("%s is not installed", f.path)
		}
	}
	if _, err := exec.LookPath("systemctl"); err == nil && !exists(wantsLink) {
		t.Errorf("edgemc.service is not enabled (%s missing)", wantsLink)
	}
	if exists("/run/systemd/system") {
		t.Log("systemd runs here, but the test does not start the service; it runs the binary itself")
	} else {
		t.Log("systemd is not PID 1 here: the unit cannot run; verifying the installed unit with systemd-analyze instead")
	}
	verifyUnit(t, "/")
	for _, p := range bufferSysctls {
		if syscall.Access(p, 2) != nil {
			t.Logf("%s is read-only here: not checking that it was raised", p)
			continue
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(readSource(t, p))); n < 7500000 {
			t.Errorf("%s = %d, want at least 7500000", p, n)
		}
	}
	return iu
}

func checkStat(t *testing.T, path string, mode fs.FileMode, uid, gid uint32) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Error(err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode() != mode || st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: %v %d:%d, want %v %d:%d", path, fi.Mode(), st.Uid, st.Gid, mode, uid, gid)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// stateFilesOf reports whether the state directory holds a file owned by u.
func stateFilesOf(t *testing.T, u installedUser) bool {
	t.Helper()
	found := false
	filepath.WalkDir(stateDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil && fi.Sys().(*syscall.Stat_t).Uid == u.uid {
				found = true
			}
		}
		return nil
	})
	return found
}

// versionIn returns what `edgemc version` must print for a package version,
// undoing pkgversion.sh: 1.2.3+4.gabc-1 → 1.2.3, 0.0.0+57.gabc1234-1 → abc1234.
func versionIn(pkgVersion string) string {
	v := pkgVersion[:strings.LastIndex(pkgVersion, "-")] // the package revision
	if rest, ok := strings.CutPrefix(v, "0.0.0+"); ok {
		_, word, _ := strings.Cut(rest, ".")
		word, _ = strings.CutSuffix(word, ".dirty")
		return strings.TrimPrefix(word, "g")
	}
	v, _, _ = strings.Cut(v, "+")
	return strings.ReplaceAll(v, "~", "-")
}

// serveOnce runs the installed `edgemc serve` as the edgemc user with the
// installed configuration and environment file (listeners moved to free
// loopback ports, and a join-token key of its own), waits for its READY=1, stops it with SIGTERM as systemd
// would and expects a clean exit.
func serveOnce(t *testing.T, u installedUser) {
	t.Helper()
	// A notify socket the edgemc user can reach.
	dir, err := os.MkdirTemp("", "edgemc-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for p, mode := range map[string]fs.FileMode{dir: 0o755, sock: 0o777} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "jwt.pem")
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}

	notices := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(notices)
				return
			}
			notices <- string(buf[:n])
		}
	}()

	env := []string{"PATH=/usr/bin:/bin", "NOTIFY_SOCKET=" + sock}
	for line := range strings.Lines(readSource(t, filepath.Join(configDir, "edgemc.env"))) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			env = append(env, line)
		}
	}
	var logs bytes.Buffer
	cmd := exec.Command("/usr/bin/edgemc", "serve", "--config", filepath.Join(configDir, "edgemc.toml"),
		"--webtransport-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0",
		"--jwt-public-key", key)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, stateDir, &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("edgemc serve output:\n%s", logs.String())
		}
	}()

	// Bounds for a hung process, not speed goals.
	const startLimit, stopLimit = 30 * time.Second, 45 * time.Second
	deadline := time.After(startLimit)
	for ready := false; !ready; {
		select {
		case n, ok := <-notices:
			if !ok {
				t.Fatal("notify socket closed")
			}
			ready = strings.Contains("\n"+n+"\n", "\nREADY=1\n")
		case err := <-exited:
			t.Fatalf("edgemc serve exited before READY=1: %v", err)
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			t.Fatalf("no READY=1 within %v", startLimit)
		}
	}
	if !stateFilesOf(t, u) {
		t.Errorf("edgemc is ready but wrote no state owned by edgemc in %s", stateDir)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("edgemc serve after SIGTERM: %v, want a clean exit", err)
		}
	case <-time.After(stopLimit):
		cmd.Process.Kill()
		<-exited
		t.Errorf("edgemc serve did not exit within %v of SIGTERM", stopLimit)
	}
}
