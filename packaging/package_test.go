package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// packagesDir returns EDGEMC_PACKAGES_DIR (build.sh's output), skipping the
// test when it is not set.
func packagesDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("EDGEMC_PACKAGES_DIR")
	if dir == "" {
		t.Skip("EDGEMC_PACKAGES_DIR is not set: build the packages with `make package` and run `make test-package`")
	}
	return dir
}

// arches maps Go's architecture names to rpm's and ELF's.
var arches = []struct {
	goarch, rpm string
	machine     elf.Machine
}{
	{"amd64", "x86_64", elf.EM_X86_64},
	{"arm64", "aarch64", elf.EM_AARCH64},
}

// findPackage returns the one package file matching pattern in dir.
func findPackage(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("%s in %s: found %v (%v), want exactly one", pattern, dir, m, err)
	}
	return m[0]
}

func debFor(t *testing.T, dir, goarch string) string {
	return findPackage(t, dir, "edgemc_*_"+goarch+".deb")
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// packagedFile is one regular file every package ships.
type packagedFile struct {
	path, mode string
	config     bool
	// source is the file in packaging/ it is a copy of; "" for built ones.
	source string
}

// envFile is the service's environment file, readable by its group.
const envFile = "/etc/edgemc/edgemc.env"

var packagedFiles = []packagedFile{
	{"/usr/bin/edgemc", "-rwxr-xr-x", false, ""},
	{"/etc/edgemc/edgemc.toml", "-rw-r--r--", true, "edgemc.toml"},
	{envFile, "-rw-r-----", true, "edgemc.env"},
	{"/usr/lib/systemd/system/edgemc.service", "-rw-r--r--", false, unitName},
	{"/usr/lib/sysctl.d/60-edgemc.conf", "-rw-r--r--", false, "60-edgemc.conf"},
	{"/usr/share/man/man1/edgemc.1.gz", "-rw-r--r--", false, ""},
	{"/usr/share/edgemc/grafana/edgemc.json", "-rw-r--r--", false, "grafana/edgemc.json"},
	{"/usr/share/edgemc/prometheus/edgemc-rules.yml", "-rw-r--r--", false, "prometheus/edgemc-rules.yml"},
}

// packagedDirs are the directories every package owns.
var packagedDirs = []string{"/etc/edgemc", "/usr/share/edgemc", "/usr/share/edgemc/grafana", "/usr/share/edgemc/prometheus"}

// licenseFile is where each format expects the copyright file.
var licenseFile = map[string]string{
	"deb": "/usr/share/doc/edgemc/copyright",
	"rpm": "/usr/share/licenses/edgemc/copyright",
}

// debFiles reads the data archive of a .deb: path → contents, for regular files.
func debFiles(t *testing.T, deb string) map[string][]byte {
	t.Helper()
	tr := tar.NewReader(strings.NewReader(run(t, "dpkg-deb", "--fsys-tarfile", deb)))
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		} else if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[strings.TrimPrefix(h.Name, ".")] = b
		}
	}
}

// checkBinary checks that the packaged edgemc is a static executable for machine.
func checkBinary(t *testing.T, b []byte, machine elf.Machine) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("/usr/bin/edgemc: %v", err)
	}
	if f.Machine != machine {
		t.Errorf("/usr/bin/edgemc is for %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("/usr/bin/edgemc is dynamically linked (%v)", p.Type)
		}
	}
}

// checkSources checks packaged files against their sources in packaging/.
func checkSources(t *testing.T, contents map[string][]byte) {
	t.Helper()
	for _, f := range packagedFiles {
		if f.source != "" && string(contents[f.path]) != readSource(t, f.source) {
			t.Errorf("%s differs from packaging/%s", f.path, f.source)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(contents["/usr/share/man/man1/edgemc.1.gz"]))
	if err != nil {
		t.Fatalf("man page: %v", err)
	}
	if page, err := io.ReadAll(zr); err != nil || string(page) != readSource(t, "edgemc.1") {
		t.Errorf("packaged man page differs from edgemc.1 (%v)", err)
	}
}

func TestDeb(t *testing.T) {
	dir := packagesDir(t)
	needTool(t, "dpkg-deb")
	for _, a := range arches {
		t.Run(a.goarch, func(t *testing.T) {
			deb := debFor(t, dir, a.goarch)

			// Files, modes and owners.
			listed := map[string]string{}
			for line := range strings.Lines(run(t, "dpkg-deb", "-c", deb)) {
				fields := strings.Fields(line)
				if len(fields) < 6 {
					t.Fatalf("dpkg-deb -c: %q", line)
				}
				if !strings.HasPrefix(fields[0], "d") {
					listed[strings.TrimPrefix(fields[5], ".")] = fields[0] + " " + fields[1]
				}
			}
			want := map[string]string{licenseFile["deb"]: "-rw-r--r-- root/root"}
			for _, f := range packagedFiles {
				want[f.path] = f.mode + " root/root"
			}
			for path, w := range want {
				if listed[path] != w {
					t.Errorf("%s: %q, want %q", path, listed[path], w)
				}
				delete(listed, path)
			}
			for path := range listed {
				t.Errorf("unexpected file %s", path)
			}

			// Control fields: no dependencies, the right architecture.
			for field, w := range map[string]string{"Package": "edgemc", "Architecture": a.goarch, "Depends": "", "Pre-Depends": "", "Recommends": ""} {
				if got := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, field)); got != w {
					t.Errorf("%s: %q, want %q", field, got, w)
				}
			}
			info := run(t, "dpkg-deb", "-I", deb)
			for _, w := range []string{"conffiles", "preinst", "postinst", "prerm", "postrm"} {
				if !strings.Contains(info, " "+w+" ") {
					t.Errorf("dpkg-deb -I lists no %s:\n%s", w, info)
				}
			}
			conffiles := strings.Fields(run(t, "dpkg-deb", "-I", deb, "conffiles"))
			for _, f := range packagedFiles {
				if slices.Contains(conffiles, f.path) != f.config {
					t.Errorf("%s: conffile %v, want %v", f.path, !f.config, f.config)
				}
			}
			for control, script := range map[string]string{"preinst": "preinstall.sh", "postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
				if got := run(t, "dpkg-deb", "-I", deb, control); got != readSource(t, filepath.Join("scripts", script)) {
					t.Errorf("%s differs from scripts/%s", control, script)
				}
			}

			contents := debFiles(t, deb)
			checkBinary(t, contents["/usr/bin/edgemc"], a.machine)
			checkSources(t, contents)
			if string(contents[licenseFile["deb"]]) != readSource(t, "copyright") {
				t.Errorf("copyright differs")
			}

			// The packaged unit verifies in the unpacked tree, real binary included.
			root := t.TempDir()
			run(t, "dpkg-deb", "-x", deb, root)
			if a.goarch == runtime.GOARCH {
				verifyUnit(t, stageRoot(t, root))
			}
		})
	}
}

func TestRPM(t *testing.T) {
	dir := packagesDir(t)
	needTool(t, "rpm")
	needTool(t, "dpkg-deb")
	for _, a := range arches {
		t.Run(a.goarch, func(t *testing.T) {
			rpm := findPackage(t, dir, "edgemc-*."+a.rpm+".rpm")

			if got := run(t, "rpm", "-qp", "--qf", "%{NAME} %{ARCH} %{LICENSE}", rpm); got != "edgemc "+a.rpm+" proprietary" {
				t.Errorf("name, arch, license: %q", got)
			}
			if info := run(t, "rpm", "-qpi", rpm); !strings.Contains(info, "Architecture: "+a.rpm) {
				t.Errorf("rpm -qpi:\n%s", info)
			}
			// What the scripts run, and nothing else.
			var reqs []string
			for req := range strings.Lines(run(t, "rpm", "-qpR", rpm)) {
				if !strings.HasPrefix(req, "rpmlib(") {
					reqs = append(reqs, strings.TrimSpace(req))
				}
			}
			if want := []string{"/bin/sh", "/usr/sbin/groupadd", "/usr/sbin/useradd"}; !slices.Equal(slices.Sorted(slices.Values(reqs)), want) {
				t.Errorf("requirements %q, want %q", reqs, want)
			}

			// Files: the same bytes as the .deb ships (the license file aside),
			// with modes, owners and config flags.
			debContents := debFiles(t, debFor(t, dir, a.goarch))
			want := map[string]string{}
			for _, f := range packagedFiles {
				flags, group := "", "root"
				if f.config {
					flags = "cn"
				}
				if f.path == envFile {
					// The group the deb's postinstall gives it, so that rpm -V
					// finds it as installed.
					group = "edgemc"
				}
				sum := sha256.Sum256(debContents[f.path])
				want[f.path] = strings.Join([]string{f.mode, "root", group, flags, hex.EncodeToString(sum[:])}, " ")
			}
			sum := sha256.Sum256([]byte(readSource(t, "copyright")))
			want[licenseFile["rpm"]] = "-rw-r--r-- root root l " + hex.EncodeToString(sum[:])
			for _, d := range packagedDirs {
				want[d] = "drwxr-xr-x root root  "
			}
			want["/usr/share/licenses/edgemc"] = "drwxr-xr-x root root  "
			listed := run(t, "rpm", "-qp", "--qf", `[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILEDIGESTS}\t%{FILENAMES}\n]`, rpm)
			for line := range strings.Lines(listed) {
				attrs, path, _ := strings.Cut(strings.TrimSuffix(line, "\n"), "\t")
				if want[path] != attrs {
					t.Errorf("%s: %q, want %q", path, attrs, want[path])
				}
				delete(want, path)
			}
			for path := range want {
				t.Errorf("rpm lacks %s", path)
			}
			if l := strings.Fields(run(t, "rpm", "-qpl", rpm)); !slices.Contains(l, "/usr/bin/edgemc") {
				t.Errorf("rpm -qpl: %v", l)
			}

			scripts := run(t, "rpm", "-qp", "--scripts", rpm)
			for kind, script := range map[string]string{"preinstall": "preinstall.sh", "postinstall": "postinstall.sh", "preuninstall": "preremove.sh", "postuninstall": "postremove.sh"} {
				if !strings.Contains(scripts, kind+" scriptlet (using /bin/sh):\n"+readSource(t, filepath.Join("scripts", script))) {
					t.Errorf("%s scriptlet is not scripts/%s", kind, script)
				}
			}
		})
	}
}
