package mvcc

import (
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/storage"
)

// WatchHistory adapts a Store to the watch hub's History interface
// (watch.History): Events is HistoryWithPrevKV and CompactRevision the
// compacted revision, both read inside Read, which calls its function
// with the view to read, normally the live engine (the revisions the hub
// is notified of must be committed to it), kept open until the function
// returns. The hub reads it from its sync loop, so Read must be safe to
// call from any goroutine.
//
// On the live engine a physical compaction running during Events may make
// it fail with ErrCompacted after it has called fn; the hub then delivers
// nothing of that call, as watch.History allows.
type WatchHistory struct {
	Store *Store
	Read  func(fn func(r storage.Reader) error) error
}

// Events calls fn with the events from revision from on keys in
// [key, end), PrevKv set; see Store.HistoryWithPrevKV.
func (h WatchHistory) Events(from int64, key, end []byte, fn func(ev *mvccpb.Event) bool) error {
	return h.Read(func(r storage.Reader) error {
		return h.Store.HistoryWithPrevKV(r, from, key, end, fn)
	})
}

// CompactRevision returns the logically compacted revision of the view
// (-1 when nothing was compacted, as etcd). If the view cannot be read it
// falls back to the Store's own (which may include a compaction not
// committed yet).
func (h WatchHistory) CompactRevision() int64 {
	var c int64
	err := h.Read(func(r storage.Reader) (err error) {
		c, err = readInt64(r, metaCompact, -1)
		return err
	})
	if err != nil {
		return h.Store.CompactRev()
	}
	return c
}

// RevisionEvents returns the events of revision rev as the watch hub's
// Notify takes them (PrevKv set, as in HistoryWithPrevKV), read from r:
// the batch the revision was written to, or any view it was committed to.
// A revision that changed nothing (or does not exist yet) has no events.
// The apply loop calls it for each revision its writes produced, and
// Notify with the result once the batch is committed.
func (s *Store) RevisionEvents(r storage.Reader, rev int64) ([]*mvccpb.Event, error) {
	return revisionEvents(r, rev, true)
}

// RevisionEventsWithoutPrevKV is RevisionEvents without PrevKv, for when
// no watcher asks for it (watch.Hub.Interest): it saves a lookup of
// each changed key's previous version.
func (s *Store) RevisionEventsWithoutPrevKV(r storage.Reader, rev int64) ([]*mvccpb.Event, error) {
	return revisionEvents(r, rev, false)
}

func revisionEvents(r storage.Reader, rev int64, withPrev bool) ([]*mvccpb.Event, error) {
	var evs []*mvccpb.Event
	err := history(r, rev, []byte{0}, []byte{0}, withPrev, func(ev *mvccpb.Event) bool {
		if ev.Kv.ModRevision != rev {
			return false
		}
		evs = append(evs, ev)
		return true
	})
	if err != nil {
		return nil, err
	}
	return evs, nil
}
