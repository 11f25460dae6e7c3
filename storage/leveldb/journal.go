package leveldb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// journalSyncer closes a durability gap in goleveldb. A write with
// WriteOptions.Sync fsyncs only the current journal file. When a memtable
// fills up, goleveldb starts a new journal (newMem) and closes the old one
// without fsyncing it; the old journal stays on disk until the frozen
// memtable has been flushed to a (synced) table. If the machine crashes in
// that window, a synced record in the new journal could survive while
// unsynced records of the old journal, written earlier, are lost: recovery
// would then show later batches without earlier ones. (A process crash is
// not affected: every commit has reached the kernel via write(2) before
// Commit returns.) The directory entry of a new journal is likewise only
// fsynced when goleveldb next commits its manifest.
//
// So after every synced write, sync lists the journal files and fsyncs
// each one older than the newest that it has not fsynced before (a journal
// file never receives another write once a newer one exists, since
// goleveldb creates and switches journals under its write lock), and
// fsyncs the directory when a new journal has appeared. In the steady state
// that is one readdir per synced write.
type journalSyncer struct {
	dir string

	mu sync.Mutex
	// syncedBelow: every journal numbered below it is durable (fsynced by
	// us, or already flushed to tables and deleted by goleveldb).
	syncedBelow uint64
	// dirSyncedFor is the newest journal number the directory was fsynced
	// after; 0 before the first sync.
	dirSyncedFor uint64
}

func (j *journalSyncer) sync() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	nums, err := journalNums(j.dir)
	if err != nil {
		return fmt.Errorf("listing journals: %w", err)
	}
	if len(nums) == 0 {
		return nil
	}
	newest := nums[0]
	for _, n := range nums {
		newest = max(newest, n)
	}
	for _, n := range nums {
		if n < newest && n >= j.syncedBelow {
			if err := fsyncFile(filepath.Join(j.dir, journalName(n))); err != nil {
				return fmt.Errorf("syncing old journal: %w", err)
			}
		}
	}
	j.syncedBelow = newest
	if newest != j.dirSyncedFor {
		if err := fsyncDir(j.dir); err != nil {
			return fmt.Errorf("syncing directory: %w", err)
		}
		j.dirSyncedFor = newest
	}
	return nil
}

// journalName is goleveldb's name for journal n (storage.fsGenName).
func journalName(n uint64) string { return fmt.Sprintf("%06d.log", n) }

// journalNums returns the numbers of the journal files ("000123.log") in
// dir, in no particular order. goleveldb's info log is "LOG", which does
// not match.
func journalNums(dir string) ([]uint64, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, name := range names {
		num, ok := strings.CutSuffix(name, ".log")
		if !ok || num == "" {
			continue
		}
		n, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	return nums, nil
}

// fsyncFile fsyncs the file at path through a fresh read-only descriptor
// (fsync applies to the file, whichever descriptor names it). A file that
// no longer exists was flushed to tables and removed, which is fine.
func fsyncFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	err = f.Sync()
	return errors.Join(err, f.Close())
}

// fsyncDir fsyncs a directory, ignoring EINVAL from file systems that do
// not support it (as goleveldb does).
func fsyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) {
		err = nil
	}
	return errors.Join(err, d.Close())
}
