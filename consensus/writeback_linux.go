package consensus

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback starts writing back a range of f's dirty pages and returns
// without waiting (sync_file_range(2) with SYNC_FILE_RANGE_WRITE). It
// touches neither metadata nor the journal, so it does not hold up other
// files' fsyncs as an fsync would.
func startWriteback(f *os.File, off, n int64) error {
	return unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
