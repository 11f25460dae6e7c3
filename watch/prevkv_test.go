package watch

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// WantsPrevKV counts the watchers asking for prev_kv in either group, and
// a revision handed over without PrevKv reaches a prev_kv watcher made
// since through catch-up, with PrevKv, while the others get it at once;
// watchers it does not concern stay synced.
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
	// The apply loop reads revision 2 without PrevKv; meanwhile a prev_kv
	// watcher on a and one on b are made.
	rev, evs := f.write(p("a"))
	bare := make([]*mvccpb.Event, len(evs))
	for i, ev := range evs {
		bare[i] = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
	}
	late := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), PrevKv: true})
	onB := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("b"), PrevKv: true})
	h.NotifyWithoutPrevKV(rev, bare)
	if got := events(t, plain, 1); got[0].Kv.ModRevision != rev || got[0].PrevKv != nil {
		t.Fatalf("plain watcher: %s", desc(got))
	}
	got := events(t, late, 1)
	if got[0].Kv.ModRevision != rev || got[0].PrevKv == nil || got[0].PrevKv.ModRevision != 1 {
		t.Fatalf("prev_kv watcher made meanwhile: %s, prev %v", desc(got), got[0].PrevKv)
	}
	h.mu.Lock()
	st := onB.state
	h.mu.Unlock()
	if st != stateSynced {
		t.Fatalf("a watcher no event concerned left the synced group (state %v)", st)
	}
	// Live again, with PrevKv: the next revision comes through Notify.
	put(f, h, p("a"), p("b"))
	for _, w := range []*Watcher{late, onB} {
		if got := events(t, w, 1); got[0].PrevKv == nil {
			t.Fatalf("watcher %d: %s without PrevKv", w.ID(), desc(got))
		}
	}
}
