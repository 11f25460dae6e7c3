package mvcc

import (
	"math"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/storage"
)

// History calls fn with the events of the keys in [key, end) (etcd's
// range_end rules: empty end is the single key, "\x00" every key >= key)
// whose revision is from or later, in revision order (main, then sub), up
// to the revision r is at; fn returning false stops the scan. It is the
// catch-up read of a watch starting at revision from.
//
// A PUT event carries the KeyValue as written; a DELETE event a KeyValue
// with only the key and mod_revision set, as etcd's watch sends it. PrevKv
// is not set (see HistoryWithPrevKV). fn owns the events.
//
// Like etcd's watch, History fails with ErrCompacted when from is below
// the compacted revision; from equal to it is allowed and sees every
// event of that revision (physical compaction keeps the records of the
// compacted revision itself). from < 1 reads from revision 1.
//
// On the live engine, a physical compaction past from running during the
// scan may remove events before they are read; History then returns
// ErrCompacted after the fact (fn has seen some events). A snapshot
// avoids that.
func (s *Store) History(r storage.Reader, from int64, key, end []byte, fn func(ev *mvccpb.Event) bool) error {
	return history(r, from, key, end, false, fn)
}

// HistoryWithPrevKV is History with PrevKv set as etcd's watch sets it
// for a watcher asking for prev_kv: on every event but a creation (a PUT
// whose create_revision is its mod_revision), the key's version at the
// event's revision minus one, if the key existed then and that revision
// is not compacted (so never on events of the compacted revision itself).
// Two changes of one key in one revision both get the version before that
// revision. It costs one bounded index lookup and one read per event.
func (s *Store) HistoryWithPrevKV(r storage.Reader, from int64, key, end []byte, fn func(ev *mvccpb.Event) bool) error {
	return history(r, from, key, end, true, fn)
}

func history(r storage.Reader, from int64, key, end []byte, withPrev bool, fn func(ev *mvccpb.Event) bool) error {
	c, err := readInt64(r, metaCompact, -1)
	if err != nil {
		return err
	}
	if from < c {
		return ErrCompacted
	}
	if from < 1 {
		from = 1
	}
	prevFrom := int64(math.MaxInt64) // no PrevKv
	if withPrev {
		prevFrom = c + 1
	}
	if err := scanHistory(r, from, key, end, prevFrom, fn); err != nil {
		return err
	}
	return checkCompactedAfter(r, from)
}

// scanHistory is History's scan; events from revision prevFrom on get
// their PrevKv.
func scanHistory(r storage.Reader, from int64, key, end []byte, prevFrom int64, fn func(ev *mvccpb.Event) bool) error {
	it, err := r.NewIterator(storage.IterOptions{Lower: revKey(revision{main: from}), Upper: endRev})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		kind, kv, err := decodeRecord(it.Value())
		if err != nil {
			return err
		}
		if !inRange(kv.Key, key, end) {
			continue
		}
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv}
		if kind == kindDelete {
			ev.Type = mvccpb.Event_DELETE
			kv.ModRevision = parseRev(it.Key()[len(prefixRev):]).main
		}
		if kv.ModRevision >= prevFrom && (kind == kindDelete || kv.CreateRevision != kv.ModRevision) {
			prev, _, err := rangePast(r, rangeSpec{key: kv.Key, rev: kv.ModRevision - 1})
			if err != nil {
				return err
			}
			if len(prev) == 1 {
				ev.PrevKv = prev[0]
			}
		}
		if !fn(ev) {
			return nil
		}
	}
	return it.Err()
}
