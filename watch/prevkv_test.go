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

// WantsPrevKV counts the watchers asking for prev_kv in either group.
// NotifyWithoutPrevKV hands over events read without PrevKv while none
// does, and refuses them, doing nothing, once one does: the caller then
// hands them over with PrevKv. A watcher made that way stays synced, so a
// compaction right after its revision does not cancel it (it would, had
// it been sent to read them from the history).
func TestNotifyWithoutPrevKV(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("a"), p("b"))
	if h.WantsPrevKV() {
		t.Fatal("no watcher, but WantsPrevKV")
	}
	plain := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a")})
	other := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("b"), PrevKv: true})
	past := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("z"), PrevKv: true, StartRevision: 1})
	if !h.WantsPrevKV() {
		t.Fatal("prev_kv watchers (synced and catching up), but not WantsPrevKV")
	}
	other.Cancel()
	past.Cancel()
	if h.WantsPrevKV() {
		t.Fatal("prev_kv watchers canceled, but WantsPrevKV")
	}
	// Revision 2, read without PrevKv while no watcher asks for it.
	rev, evs := f.write(p("a"))
	if !h.NotifyWithoutPrevKV(rev, [][]*mvccpb.Event{withoutPrevKV(evs)}) {
		t.Fatal("NotifyWithoutPrevKV refused with no prev_kv watcher")
	}
	if got := events(t, plain, 1); got[0].Kv.ModRevision != rev || got[0].PrevKv != nil {
		t.Fatalf("plain watcher: %s", desc(got))
	}
	// Revisions 3 and 4, read without PrevKv; a prev_kv watcher is made
	// before they are handed over.
	r3, e3 := f.write(p("a"))
	_, e4 := f.write(p("a"), p("b"))
	late := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), PrevKv: true})
	if h.NotifyWithoutPrevKV(r3, [][]*mvccpb.Event{withoutPrevKV(e3), withoutPrevKV(e4)}) {
		t.Fatal("NotifyWithoutPrevKV took events without PrevKv with a prev_kv watcher")
	}
	if h.Rev() != rev {
		t.Fatalf("a refused NotifyWithoutPrevKV moved the hub to %d", h.Rev())
	}
	h.Notify(r3, e3)
	h.Notify(r3+1, e4)
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
