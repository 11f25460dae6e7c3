package pebble

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/sstable"

	"github.com/metcd/metcd/storage"
)

// loadTableSize is how many bytes of keys and values a load puts in one
// table. Each table is written by a worker of its own while the caller goes
// on, so a load holds up to loadWorkers+1 tables' worth of records in memory.
// A variable for tests.
var loadTableSize = 16 << 20

// loadWorkers is how many tables a load writes at once: encoding and
// compressing a table is CPU work, and the caller's own (decoding and
// checking a snapshot stream) runs beside it.
var loadWorkers = min(max(runtime.GOMAXPROCS(0), 1), 4)

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
	l := &load{
		e:   e,
		dir: dir,
		// The bottom level's writer options: an empty store puts ingested
		// tables there.
		wo:   e.opts.MakeWriterOptions(len(e.opts.Levels)-1, e.db.TableFormat()),
		work: make(chan *loadChunk),
		free: make(chan *loadChunk, loadWorkers+1),
	}
	l.wg.Add(loadWorkers)
	for range loadWorkers {
		go l.writeTables()
	}
	return l, nil
}

// load is driven by one goroutine (Put, Finish, Abort); its workers share
// only the channels, stop and the first error they hit.
type load struct {
	e   *Engine
	dir string
	wo  sstable.WriterOptions

	cur     *loadChunk // records not yet handed to a worker
	chunks  int        // chunks made, at most loadWorkers+1
	tables  int        // tables handed to workers
	last    []byte     // the last key added, to check the order
	n       int        // keys added
	done    bool       // finished or aborted
	err     error
	stopped bool // work is closed and the workers are gone

	work chan *loadChunk // full chunks, to the workers
	free chan *loadChunk // written chunks, back to Put
	wg   sync.WaitGroup
	stop atomic.Bool // set by Abort: workers skip what is left

	mu   sync.Mutex
	werr error // the first error of a worker
}

// loadChunk holds the records of one table, in order: key i is
// buf[ends[2i-1]:ends[2i]] and its value buf[ends[2i]:ends[2i+1]], with
// ends[-1] taken as 0.
type loadChunk struct {
	table int
	buf   []byte
	ends  []int
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
	if l.cur == nil {
		l.cur = l.newChunk()
	}
	c := l.cur
	c.buf = append(c.buf, key...)
	c.ends = append(c.ends, len(c.buf))
	c.buf = append(c.buf, value...)
	c.ends = append(c.ends, len(c.buf))
	l.last = append(l.last[:0], key...)
	l.n++
	if len(c.buf) >= loadTableSize {
		return l.handOver()
	}
	return nil
}

// newChunk takes a chunk a worker is done with, or makes one while fewer
// than loadWorkers+1 exist.
func (l *load) newChunk() *loadChunk {
	var c *loadChunk
	select {
	case c = <-l.free:
	default:
		if l.chunks <= loadWorkers {
			l.chunks++
			// Room for a table and a record over: growing a slice this
			// large would copy it and leave the old array to the collector.
			c = &loadChunk{buf: make([]byte, 0, loadTableSize+loadTableSize/8)}
		} else {
			c = <-l.free
		}
	}
	c.buf, c.ends = c.buf[:0], c.ends[:0]
	return c
}

// handOver gives the current chunk to a worker as the next table.
func (l *load) handOver() error {
	if err := l.workerErr(); err != nil {
		l.err = err
		return err
	}
	c := l.cur
	l.cur = nil
	c.table = l.tables
	l.tables++
	l.work <- c
	return nil
}

func (l *load) workerErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.werr
}

func (l *load) tablePath(i int) string {
	return filepath.Join(l.dir, fmt.Sprintf("%06d.sst", i))
}

// writeTables is a worker: it writes each chunk it is given as a table.
func (l *load) writeTables() {
	defer l.wg.Done()
	for c := range l.work {
		if !l.stop.Load() && l.workerErr() == nil {
			if err := l.writeTable(c); err != nil {
				l.mu.Lock()
				if l.werr == nil {
					l.werr = err
				}
				l.mu.Unlock()
			}
		}
		l.free <- c
	}
}

// writeTable writes chunk c as one table; sstable.Writer.Close flushes,
// fsyncs and closes its file.
func (l *load) writeTable(c *loadChunk) error {
	f, err := os.Create(l.tablePath(c.table))
	if err != nil {
		return fmt.Errorf("pebble: load: %w", err)
	}
	w := sstable.NewWriter(newTableFile(f), l.wo)
	start := 0
	for i := 0; i < len(c.ends); i += 2 {
		if i%4096 == 0 && l.stop.Load() {
			break
		}
		k, v := c.buf[start:c.ends[i]], c.buf[c.ends[i]:c.ends[i+1]]
		start = c.ends[i+1]
		if err := w.Set(k, v); err != nil {
			w.Close()
			return fmt.Errorf("pebble: load: table %d: %w", c.table, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("pebble: load: finish table %d: %w", c.table, err)
	}
	return nil
}

// stopWorkers lets the workers finish (or, after stop is set, skip) what
// they were given, waits for them, and gives the runs' memory back.
func (l *load) stopWorkers() {
	if l.stopped {
		return
	}
	l.stopped = true
	close(l.work)
	l.wg.Wait()
	l.cur = nil
	for len(l.free) > 0 {
		<-l.free
	}
	// The runs (tens of MiB) are garbage now, and a member that has just
	// installed a snapshot may allocate too little for the collector to
	// run for minutes: one that caught up from 1 M keys served at 150-240
	// MiB of RSS instead of about 50. A collection of the little that is
	// live takes milliseconds.
	debug.FreeOSMemory()
}

func (l *load) Finish() error {
	if l.done {
		return fmt.Errorf("pebble: load finish: %w", storage.ErrClosed)
	}
	if l.err != nil {
		return l.err
	}
	if l.cur != nil {
		if err := l.handOver(); err != nil {
			return err
		}
	}
	l.stopWorkers()
	if err := l.workerErr(); err != nil {
		l.err = err
		return err
	}
	paths := make([]string, l.tables)
	for i := range paths {
		paths[i] = l.tablePath(i)
	}
	l.e.mu.RLock()
	var err error
	if l.e.closed {
		err = storage.ErrClosed
	} else if len(paths) > 0 {
		err = l.e.db.Ingest(context.Background(), paths)
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
	l.stop.Store(true)
	l.stopWorkers()
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("pebble: load abort: %w", err)
	}
	return nil
}

// tableFileBuffer is how much of a table is written to its file at once.
// Pebble's own writable buffers 4 KiB, one data block: one write(2) per
// block took a third of a load's time.
const tableFileBuffer = 1 << 20

// tableFile is the objstorage.Writable a load writes a table to.
type tableFile struct {
	f  *os.File
	bw *bufio.Writer
}

func newTableFile(f *os.File) *tableFile {
	return &tableFile{f: f, bw: bufio.NewWriterSize(f, tableFileBuffer)}
}

func (t *tableFile) Write(p []byte) error {
	_, err := t.bw.Write(p)
	return err
}

// Finish writes out the rest, syncs and closes the file.
func (t *tableFile) Finish() error {
	err := t.bw.Flush()
	if err == nil {
		err = t.f.Sync()
	}
	if cerr := t.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (t *tableFile) Abort() { _ = t.f.Close() }
