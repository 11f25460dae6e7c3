package watch

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func historyCalls(f *fakeHistory) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Watchers that resume from the same past revision share History reads:
// 200 of them on 50 keys (and two ranges) cost a few reads, not 200, and
// each gets exactly its own events, filters and prev_kv applied.
func TestCatchUpSharesReads(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour, MaxRevsPerBatch: 100})
	defer h.Close()
	for i := range 300 {
		k := fmt.Sprintf("k%02d", i%50)
		if i%7 == 0 {
			put(f, h, d(k))
		} else {
			put(f, h, p(k))
		}
	}
	// Hold History until every watcher is made, so that one pass sees
	// them all.
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	type made struct {
		w   *Watcher
		req *pb.WatchCreateRequest
	}
	var ws []made
	for i := range 200 {
		req := &pb.WatchCreateRequest{Key: []byte(fmt.Sprintf("k%02d", i%50)), StartRevision: 20 + int64(i%3), PrevKv: i%2 == 0}
		switch i % 10 {
		case 1:
			req.RangeEnd = []byte("k99")
		case 2:
			req.RangeEnd = []byte{0}
		case 3:
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
		}
		ws = append(ws, made{mustWatch(t, h, req), req})
	}
	f.mu.Lock()
	before := f.calls
	f.hold = nil
	f.mu.Unlock()
	close(hold)
	for _, m := range ws {
		var want []*mvccpb.Event
		_ = f.Events(m.req.StartRevision, m.req.Key, m.req.RangeEnd, func(ev *mvccpb.Event) bool {
			if ev = m.w.shape(ev); ev != nil {
				want = append(want, ev)
			}
			return true
		})
		got := events(t, m.w, len(want))
		for i := range got {
			if got[i].Kv.ModRevision != want[i].Kv.ModRevision || string(got[i].Kv.Key) != string(want[i].Kv.Key) ||
				got[i].Type != want[i].Type || (got[i].PrevKv != nil) != (want[i].PrevKv != nil) {
				t.Fatalf("watcher %d (%v) event %d: got %s want %s", m.w.ID(), m.req, i, desc(got[i:i+1]), desc(want[i:i+1]))
			}
		}
	}
	// 281 revisions in reads of 100: three passes of one read each, and
	// a few more for the pass that was held with only the first watchers
	// (the test's own reads above are not counted). A read per watcher
	// would be 600.
	reads := historyCalls(f) - before - len(ws)
	if reads > 20 {
		t.Fatalf("%d History reads for 200 watchers resuming together", reads)
	}
	// Live again: the next revision comes from Notify, once.
	put(f, h, p("k00"))
	if evs := events(t, ws[0].w, 1); evs[0].Kv.ModRevision != 301 {
		t.Fatalf("live event %s", desc(evs))
	}
}

// A watcher far behind does not hold up watchers that need only the last
// few revisions: they are read in their own group and are live after the
// first pass, while it still catches up.
func TestCatchUpFarBehindDoesNotHoldUpOthers(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour, MaxRevsPerBatch: 10, BufferSize: 2})
	defer h.Close()
	for range 1000 {
		put(f, h, p("k"))
	}
	far := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	near := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 998})
	if evs := events(t, near, 3); evs[0].Kv.ModRevision != 998 {
		t.Fatalf("near watcher: %s", desc(evs))
	}
	// far has filled its channel of 2 and waits for the hour-long tick;
	// near is live.
	put(f, h, p("k"))
	if evs := events(t, near, 1); evs[0].Kv.ModRevision != 1001 {
		t.Fatalf("near watcher live: %s", desc(evs))
	}
	if evs := events(t, far, 10); evs[0].Kv.ModRevision != 1 {
		t.Fatalf("far watcher: %s", desc(evs))
	}
}

// Two single-key watchers far apart share a read whose span holds a big
// key neither watches: it counts towards no cut and is not kept.
func TestCatchUpSpanSkipsUnwantedKeys(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{MaxBatchBytes: 100 << 10})
	defer h.Close()
	for i := 0; i < 500; i++ {
		put(f, h, op{key: "a"}, op{key: "m", size: 100 << 10}, op{key: "zzz"})
	}
	hold := make(chan struct{})
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	a := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 1})
	z := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("zzz"), StartRevision: 1})
	f.mu.Lock()
	f.hold = nil
	c0 := f.calls
	f.mu.Unlock()
	close(hold)
	go func() {
		for range z.C() {
		}
	}()
	n := 0
	for n < 500 {
		n += len(recv(t, a).Events)
	}
	// A read per revision (the span's unwanted key counted against
	// MaxBatchBytes) would be 500.
	if reads := historyCalls(f) - c0; reads > 10 {
		t.Fatalf("%d History reads for 500 revisions of two watched keys", reads)
	}
}
