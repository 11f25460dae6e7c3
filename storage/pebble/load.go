package pebble

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/metcd/metcd/storage"
)

// loadTableSize is where a load starts its next table: the size Pebble's
// own compactions write to the bottom level. A variable for tests.
var loadTableSize uint64 = 64 << 20

// loadDir holds a load's tables until Ingest links them into the store.
// Pebble ignores directories inside its own.
const loadDir = "load.tmp"

var _ storage.Loader = (*Engine)(nil)

// NewLoad implements storage.Loader. The keys go into sstables written
// beside the store and ingested by Finish. Ingesting is atomic, and Pebble
// syncs the tables and its manifest before the keys become visible.
func (e *Engine) NewLoad() (storage.Load, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, fmt.Errorf("pebble: new load: %w", storage.ErrClosed)
	}
	dir := filepath.Join(e.dir, loadDir)
	// A load a crash interrupted left its tables here; nobody needs them.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("pebble: new load: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("pebble: new load: %w", err)
	}
	// The bottom level's writer options: an empty store puts ingested
	// tables there.
	wo := e.opts.MakeWriterOptions(len(e.opts.Levels)-1, e.db.TableFormat())
	return &load{e: e, dir: dir, wo: wo}, nil
}

type load struct {
	e     *Engine
	dir   string
	wo    sstable.WriterOptions
	w     *sstable.Writer // the table being written; nil between tables
	paths []string        // every table started, the one being written last
	last  []byte          // the last key added, to check the order
	n     int             // keys added
	done  bool            // finished or aborted
	err   error
}

func (l *load) Put(key, value []byte) error {
	if l.err != nil {
		return l.err
	}
	if l.done {
		return fmt.Errorf("pebble: load put: %w", storage.ErrClosed)
	}
	if l.n > 0 && bytes.Compare(key, l.last) <= 0 {
		l.err = fmt.Errorf("pebble: load put: key %q does not follow %q", key, l.last)
		return l.err
	}
	if l.w == nil {
		path := filepath.Join(l.dir, fmt.Sprintf("%06d.sst", len(l.paths)))
		f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
		if err != nil {
			l.err = fmt.Errorf("pebble: load: %w", err)
			return l.err
		}
		l.w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), l.wo)
		l.paths = append(l.paths, path)
	}
	if err := l.w.Set(key, value); err != nil {
		l.err = fmt.Errorf("pebble: load put: %w", err)
		return l.err
	}
	l.last = append(l.last[:0], key...)
	// Sizing a table is not free; a few hundred keys more or less in a
	// 64 MiB table do not matter.
	if l.n++; l.n%256 == 0 && l.w.Raw().EstimatedSize() >= loadTableSize {
		return l.closeTable()
	}
	return nil
}

// closeTable finishes the table being written; sstable.Writer.Close
// flushes, fsyncs and closes its file.
func (l *load) closeTable() error {
	w := l.w
	l.w = nil
	if err := w.Close(); err != nil {
		l.err = fmt.Errorf("pebble: load: finish table: %w", err)
		return l.err
	}
	return nil
}

func (l *load) Finish() error {
	if l.done {
		return fmt.Errorf("pebble: load finish: %w", storage.ErrClosed)
	}
	if l.err != nil {
		return l.err
	}
	if l.w != nil {
		if err := l.closeTable(); err != nil {
			return err
		}
	}
	l.e.mu.RLock()
	var err error
	if l.e.closed {
		err = storage.ErrClosed
	} else if len(l.paths) > 0 {
		err = l.e.db.Ingest(context.Background(), l.paths)
	}
	l.e.mu.RUnlock()
	if err != nil {
		l.err = fmt.Errorf("pebble: load finish: %w", err)
		return l.err
	}
	l.done = true
	// Ingest linked the tables into the store; these names are spare.
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("pebble: load finish: %w", err)
	}
	return nil
}

func (l *load) Abort() error {
	if l.done {
		return nil
	}
	l.done = true
	if l.w != nil {
		// Close the file; the error of a table nobody will read is moot.
		_ = l.w.Close()
		l.w = nil
	}
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("pebble: load abort: %w", err)
	}
	return nil
}
