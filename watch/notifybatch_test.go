package watch

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func withoutPrevKV(evs []*mvccpb.Event) []*mvccpb.Event {
	bare := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		bare[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
	}
	return bare
}

// handOver gives h the events of revisions first, first+1, ..., read with
// PrevKv, after it refused them, as the apply loop does.
func handOver(h *Hub, first int64, revs ...[]*mvccpb.Event) {
	for i, evs := range revs {
		h.Notify(first+int64(i), evs)
	}
	h.Advance(first + int64(len(revs)) - 1)
}

// Interest counts the watchers asking for prev_kv in either group.
// NotifyBatch hands over events read without PrevKv while none does, and
// refuses them, doing nothing, once one does: the caller then hands them
// over with PrevKv. A watcher made that way stays synced, so a
// compaction right after its revision does not cancel it (it would, had
// it been sent to read them from the history).
func TestNotifyBatchWithoutPrevKV(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("a"), p("b"))
	if _, prev := h.Interest(); prev {
		t.Fatal("no watcher, but Interest says one wants prev_kv")
	}
	plain := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a")})
	other := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("b"), PrevKv: true})
	past := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("z"), PrevKv: true, StartRevision: 1})
	if _, prev := h.Interest(); !prev {
		t.Fatal("prev_kv watchers (synced and catching up), but Interest says none wants prev_kv")
	}
	other.Cancel()
	past.Cancel()
	if _, prev := h.Interest(); prev {
		t.Fatal("prev_kv watchers canceled, but Interest says one wants prev_kv")
	}
	// Revision 2, read without PrevKv while no watcher asks for it.
	rev, evs := f.write(p("a"))
	if !h.NotifyBatch(rev, rev, [][]*mvccpb.Event{withoutPrevKV(evs)}, false) {
		t.Fatal("NotifyBatch refused events without PrevKv with no prev_kv watcher")
	}
	if got := events(t, plain, 1); got[0].Kv.ModRevision != rev || got[0].PrevKv != nil {
		t.Fatalf("plain watcher: %s", desc(got))
	}
	// Revisions 3 and 4, read without PrevKv; a prev_kv watcher is made
	// before they are handed over.
	r3, e3 := f.write(p("a"))
	_, e4 := f.write(p("a"), p("b"))
	late := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), PrevKv: true})
	if h.NotifyBatch(r3, r3+1, [][]*mvccpb.Event{withoutPrevKV(e3), withoutPrevKV(e4)}, false) {
		t.Fatal("NotifyBatch took events without PrevKv with a prev_kv watcher")
	}
	if h.Rev() != rev {
		t.Fatalf("a refused NotifyBatch moved the hub to %d", h.Rev())
	}
	handOver(h, r3, e3, e4)
	// A compaction right after: the watcher is synced and keeps going.
	f.compact(r3 + 1)
	put(f, h, p("a"))
	got := events(t, late, 3)
	for i, ev := range got {
		if ev.Kv.ModRevision != r3+int64(i) || ev.PrevKv == nil || ev.PrevKv.ModRevision != r3+int64(i)-1 {
			t.Fatalf("prev_kv watcher event %d: %s, prev %v", i, desc(got[i:i+1]), ev.PrevKv)
		}
	}
	if got := events(t, plain, 3); got[0].Kv.ModRevision != r3 {
		t.Fatalf("plain watcher: %s", desc(got))
	}
	select {
	case r := <-late.C():
		t.Fatalf("prev_kv watcher: unexpected %v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

// A batch read with no watcher at all is refused once a synced watcher
// that expects its revisions exists (made while the batch applied): the
// caller then hands the events over, and the watcher stays synced through
// a compaction right after, as etcd keeps a watcher made with
// start_revision 0. Watchers that expect none of them, or catch up
// anyway, do not stop the hub from just advancing.
func TestNotifyBatchUnread(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("a"))
	if watching, _ := h.Interest(); watching {
		t.Fatal("no watcher, but Interest says one exists")
	}
	// Revision 2, not read: nobody watched.
	r2, _ := f.write(p("a"))
	if !h.NotifyBatch(r2, r2, nil, false) || h.Rev() != r2 {
		t.Fatalf("NotifyBatch of an unread revision with no watcher: hub at %d", h.Rev())
	}
	// One catching up from revision 1 does not need the batch handed over.
	past := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 1})
	r3, _ := f.write(p("a"))
	if !h.NotifyBatch(r3, r3, nil, false) || h.Rev() != r3 {
		t.Fatalf("NotifyBatch of an unread revision with a watcher catching up: hub at %d", h.Rev())
	}
	if got := events(t, past, 3); got[2].Kv.ModRevision != r3 {
		t.Fatalf("catching-up watcher: %s", desc(got))
	}
	past.Cancel()
	// Revisions 4 and 5 not read; a watcher is made before they are handed over.
	r4, e4 := f.write(p("a"))
	_, e5 := f.write(p("b"), p("a"))
	late := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a")})
	if h.NotifyBatch(r4, r4+1, nil, false) {
		t.Fatal("NotifyBatch advanced past revisions a new synced watcher expects")
	}
	if h.Rev() != r3 {
		t.Fatalf("a refused NotifyBatch moved the hub to %d", h.Rev())
	}
	handOver(h, r4, e4, e5)
	// A compaction right after: the watcher is synced and keeps going.
	f.compact(r4 + 1)
	r6 := put(f, h, p("a"))
	got := events(t, late, 3)
	for i, ev := range got {
		if i < 2 && ev.Kv.ModRevision != r4+int64(i) {
			t.Fatalf("watcher made during the batch, event %d: %s", i, desc(got[i:i+1]))
		}
	}
	if got[2].Kv.ModRevision != r6 {
		t.Fatalf("watcher made during the batch: %s", desc(got))
	}
	// A watcher of another key, made after: the next unread batch is refused
	// only while a synced watcher expects it, whatever its key.
	r7, e7 := f.write(p("z"))
	if h.NotifyBatch(r7, r7, nil, false) {
		t.Fatal("NotifyBatch advanced past a revision a synced watcher expects")
	}
	h.Notify(r7, e7)
	noResponse(t, late)
	late.Cancel()
	r8, _ := f.write(p("a"))
	if !h.NotifyBatch(r8, r8, nil, false) || h.Rev() != r8 {
		t.Fatalf("NotifyBatch of an unread revision after the last cancel: hub at %d", h.Rev())
	}
}
