package store

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (and the size, if it changed) but not its timestamps, which would cost a journal
// commit on every log record.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
