// Package atomicfile writes whole files so that a crash leaves either the old file or the new one, never a mix or an
// empty file. edgemc writes every secret and state file it keeps outside its store this way: the binding key, the
// self-signed certificate and its key.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path with mode perm: it writes a temporary file in path's directory, syncs it, renames it
// over path and syncs the directory, so the new file and its name are on disk when WriteFile returns. If it fails,
// path is as it was and the temporary file is removed; a crash part-way leaves path as it was, and at worst a
// temporary file named ".<name>.tmp*" beside it.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, osOps{})
}

// ops are the file system calls WriteFile makes, so tests can fail any of them.
type ops interface {
	write(f *os.File, data []byte) error
	sync(f *os.File) error
	rename(from, to string) error
	syncDir(dir string) error
}

type osOps struct{}

func (osOps) write(f *os.File, data []byte) error { _, err := f.Write(data); return err }
func (osOps) sync(f *os.File) error               { return f.Sync() }
func (osOps) rename(from, to string) error        { return os.Rename(from, to) }

func (osOps) syncDir(dir string) error { return SyncDir(dir) }

// SyncDir fsyncs the directory dir, so that the names created or renamed in
// it survive a crash.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func writeFile(path string, data []byte, perm os.FileMode, o ops) error {
	dir := filepath.Dir(path)
	if err := replace(path, dir, data, perm, o); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The new file is in place; a failed directory sync means only that the rename may not survive a crash.
	if err := o.syncDir(dir); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// replace writes the temporary file and renames it over path, removing it on failure.
func replace(path, dir string, data []byte, perm os.FileMode, o ops) (err error) {
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := o.write(f, data); err != nil {
		return err
	}
	if err := o.sync(f); err != nil {
		return err
	}
	closed = true
	if err := f.Close(); err != nil {
		return err
	}
	return o.rename(f.Name(), path)
}
