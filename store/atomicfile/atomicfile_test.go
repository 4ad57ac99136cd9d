package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileCreatesAndReplaces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "binding.key")
	for _, c := range []struct {
		data string
		perm os.FileMode
	}{{"first\n", 0o600}, {"second, longer\n", 0o640}} {
		if err := WriteFile(path, []byte(c.data), c.perm); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, c.data, c.perm)
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "x"), nil, 0o600); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}

// failAt fails one step of a write, and counts the steps that ran.
type failAt struct {
	osOps
	step string
	ran  []string
}

var errInjected = errors.New("injected failure")

func (f *failAt) do(step string, real func() error) error {
	f.ran = append(f.ran, step)
	if step == f.step {
		return errInjected
	}
	return real()
}

func (f *failAt) write(file *os.File, data []byte) error {
	return f.do("write", func() error {
		return f.osOps.write(file, data)
	})
}
func (f *failAt) sync(file *os.File) error {
	return f.do("sync", func() error { return f.osOps.sync(file) })
}
func (f *failAt) rename(from, to string) error {
	return f.do("rename", func() error { return f.osOps.rename(from, to) })
}
func (f *failAt) syncDir(dir string) error {
	return f.do("syncdir", func() error { return f.osOps.syncDir(dir) })
}

// A write that fails at any step before the rename — as a crash there would stop it — leaves the old file as it
// was, and no temporary file behind.
func TestWriteFileFailureKeepsOldFile(t *testing.T) {
	for _, step := range []string{"write", "sync", "rename"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "cert.pem")
			if err := WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			// A partial write first: what a crash mid-write leaves in the temporary file.
			o := &failAt{step: step}
			err := writeFile(path, []byte("new contents that do not fit in one go"), 0o644, partial{o})
			if !errors.Is(err, errInjected) {
				t.Fatalf("writeFile failing at %s: %v, want the injected error", step, err)
			}
			checkFile(t, path, "old", 0o600)
			if names := dirNames(t, dir); len(names) != 1 {
				t.Errorf("directory holds %v after a failed write, want only cert.pem", names)
			}
		})
	}
	// After the rename the new file stands even if the directory sync fails; the error says so.
	dir := t.TempDir()
	path := filepath.Join(dir, "cert.pem")
	o := &failAt{step: "syncdir"}
	if err := writeFile(path, []byte("new"), 0o600, o); !errors.Is(err, errInjected) {
		t.Fatalf("writeFile failing at the directory sync: %v", err)
	}
	checkFile(t, path, "new", 0o600)
	if want := []string{"write", "sync", "rename", "syncdir"}; len(o.ran) != len(want) {
		t.Errorf("steps %v, want %v", o.ran, want)
	}
}

// partial writes half the data before a failing write step reports its error.
type partial struct{ *failAt }

func (p partial) write(f *os.File, data []byte) error {
	if p.step == "write" {
		if _, err := f.Write(data[:len(data)/2]); err != nil {
			return err
		}
	}
	return p.failAt.write(f, data)
}

func checkFile(t *testing.T, path, data string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != data || fi.Mode().Perm() != perm {
		t.Errorf("%s = %q mode %v, want %q mode %v", path, b, fi.Mode().Perm(), data, perm)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
