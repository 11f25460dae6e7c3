package mvcc

import (
	"bytes"
	"fmt"

	"github.com/metcd/metcd/storage"
)

// PhysicalCompact removes from eng the history that reads at rev or later
// no longer need, in engine batches of about batchSize operations
// (default 1000 if <= 0). rev must not be above the logical compaction
// committed in eng (Compact, then commit the batch, then PhysicalCompact).
//
// For every key written since the last physical compaction it keeps the
// last version at or below rev (unless that is a delete) and drops the
// older index entries and revision records; the revision records of rev
// itself are all kept, so that History(rev) still sees every event of rev.
// The current state (vk) is never touched.
//
// It may run on its own goroutine while the apply loop writes newer
// revisions and readers read at rev or later: per key it deletes the
// oldest entries first, so every intermediate state answers those reads
// correctly. It must not run concurrently with itself. It is idempotent;
// an interrupted run (PhysicalRev below CompactRev after Open) is finished
// by running it again.
//
// After each batch it commits, with no iterator or batch open, it calls
// pause (if not nil), where the caller lets other work at the engine (a
// run over a long history would otherwise hold it for seconds); an error
// from pause ends the run with that error, to be finished by a later one.
// When pause returns nil, eng must still be open.
func (s *Store) PhysicalCompact(eng storage.Engine, rev int64, batchSize int, pause func() error) error {
	if batchSize <= 0 {
		batchSize = 1000
	}
	m, err := readMeta(eng)
	if err != nil {
		return err
	}
	if rev > m.compact {
		return fmt.Errorf("mvcc: physical compaction at %d above the committed compaction %d", rev, m.compact)
	}
	if rev <= m.physical {
		return nil
	}
	c := compactor{eng: eng, rev: rev, batchSize: batchSize, pause: pause, b: eng.NewBatch()}
	defer func() {
		if c.b != nil {
			c.b.Close()
		}
	}()
	// Every record from the last physical compaction's revision (whose
	// records were all kept) up to rev, inclusive: their keys are the ones
	// with history to drop.
	lower := revKey(revision{main: m.physical})
	upper := revKey(revision{main: rev + 1})
	for {
		recs, next, err := c.readChunk(lower, upper)
		if err != nil {
			return err
		}
		if err := c.compactChunk(recs); err != nil {
			return err
		}
		if next == nil {
			break
		}
		lower = next
	}
	c.b.Put(metaPhysical, putInt64(rev))
	if err := c.b.Commit(false); err != nil {
		return err
	}
	s.physical.Store(rev)
	return nil
}

type compactor struct {
	eng       storage.Engine
	rev       int64
	batchSize int
	pause     func() error
	b         storage.Batch
}

type record struct {
	rev revision
	key []byte
}

// readChunk reads up to batchSize revision records in [lower, upper) and
// returns the lower bound of the rest (nil if none).
func (c *compactor) readChunk(lower, upper []byte) ([]record, []byte, error) {
	it, err := c.eng.NewIterator(storage.IterOptions{Lower: lower, Upper: upper})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	var recs []record
	for it.Next() {
		if len(recs) == c.batchSize {
			return recs, bytes.Clone(it.Key()), nil
		}
		k := it.Key()
		if len(k) != len(prefixRev)+revLen {
			return nil, nil, fmt.Errorf("%w: revision key %q", errCorrupt, k)
		}
		_, kv, err := decodeRecord(it.Value())
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, record{rev: parseRev(k[len(prefixRev):]), key: kv.Key})
	}
	return recs, nil, it.Err()
}

// compactChunk compacts the keys of recs, then drops the records of recs
// below rev that no index entry keeps (such as those of the previous
// compaction's revision whose index entries it already removed).
func (c *compactor) compactChunk(recs []record) error {
	keep := make(map[string]revision) // per key: the kept revision, or main 0
	for _, rc := range recs {
		if _, done := keep[string(rc.key)]; done {
			continue
		}
		kept, err := c.compactKey(rc.key)
		if err != nil {
			return err
		}
		keep[string(rc.key)] = kept
	}
	for _, rc := range recs {
		if rc.rev.main < c.rev && keep[string(rc.key)] != rc.rev {
			c.b.Delete(revKey(rc.rev))
			if err := c.maybeCommit(); err != nil {
				return err
			}
		}
	}
	return nil
}

// compactKey drops key's index entries at or below rev except the last
// one if it is a put, oldest first, with their revision records below
// rev. It returns the kept revision (main 0 if none).
func (c *compactor) compactKey(key []byte) (revision, error) {
	prefix := indexPrefix(key)
	upper := appendRev(bytes.Clone(prefix), revision{main: c.rev + 1})
	it, err := c.eng.NewIterator(storage.IterOptions{Lower: prefix, Upper: upper})
	if err != nil {
		return revision{}, err
	}
	var revs []revision
	var lastPut bool
	for it.Next() {
		_, rv, err := splitIndexKey(it.Key())
		if err != nil {
			it.Close()
			return revision{}, err
		}
		revs = append(revs, rv)
		lastPut = len(it.Value()) == 1 && it.Value()[0] == kindPut
	}
	err = it.Err()
	it.Close()
	if err != nil {
		return revision{}, err
	}
	var kept revision
	if len(revs) > 0 && lastPut {
		kept = revs[len(revs)-1]
		revs = revs[:len(revs)-1]
	}
	for _, rv := range revs {
		c.b.Delete(indexKey(key, rv))
		if rv.main < c.rev {
			c.b.Delete(revKey(rv))
		}
		if err := c.maybeCommit(); err != nil {
			return revision{}, err
		}
	}
	return kept, nil
}

func (c *compactor) maybeCommit() error {
	if c.b.Len() < c.batchSize {
		return nil
	}
	if err := c.b.Commit(false); err != nil {
		return err
	}
	c.b.Close()
	c.b = nil
	if c.pause != nil {
		if err := c.pause(); err != nil {
			return err
		}
	}
	c.b = c.eng.NewBatch()
	return nil
}
