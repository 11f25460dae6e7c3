package mvcc

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
	"github.com/metcd/metcd/watch"
)

var _ watch.History = WatchHistory{}

// collector gathers a watcher's responses on its own goroutine.
type collector struct {
	mu    sync.Mutex
	resps []*pb.WatchResponse
	done  chan struct{}
}

func collect(w *watch.Watcher) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for r := range w.C() {
			c.mu.Lock()
			c.resps = append(c.resps, r)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector) events() []*mvccpb.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var evs []*mvccpb.Event
	for _, r := range c.resps {
		evs = append(evs, r.Events...)
	}
	return evs
}

// waitEvents waits until c holds n events (or fails after a timeout) and
// returns them after a short wait for extra ones.
func (c *collector) waitEvents(t *testing.T, what string, n int) []*mvccpb.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(c.events()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d events, want %d", what, len(c.events()), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	return c.events()
}

func evDesc(ev *mvccpb.Event) string {
	s := fmt.Sprintf("%v %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
	if ev.PrevKv != nil {
		s += fmt.Sprintf(" prev@%d", ev.PrevKv.ModRevision)
	}
	return s
}

// TestWatchHubOverStore runs a watch.Hub over a Store on a memory engine:
// random write txns grouped in batches, Notify per committed revision with
// RevisionEvents, watchers from past revisions (some slow, so they catch up
// from History), then a compaction.
func TestWatchHubOverStore(t *testing.T) {
	eng := memory.New()
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	hist := WatchHistory{Store: s, Read: func(fn func(storage.Reader) error) error { return fn(eng) }}
	hub := watch.NewHub(hist, s.Rev(), watch.Options{BufferSize: 4, MaxRevsPerBatch: 3, SyncInterval: 2 * time.Millisecond})
	defer hub.Close()
	rnd := rand.New(rand.NewSource(1))
	keys := []string{"a", "b", "c", "d", "e", "f", "g"}
	ob := overlay.New(eng)

	var all []*mvccpb.Event // every event, in order, as notified
	type watcher struct {
		req     *pb.WatchCreateRequest
		from    int64 // first revision it must see
		w       *watch.Watcher
		c       *collector
		started bool
	}
	var ws []*watcher
	newWatcher := func(slow bool) {
		req := &pb.WatchCreateRequest{PrevKv: rnd.Intn(2) == 0}
		switch rnd.Intn(3) {
		case 0:
			req.Key = []byte(keys[rnd.Intn(len(keys))])
		case 1:
			req.Key, req.RangeEnd = []byte("b"), []byte("e")
		default:
			req.Key, req.RangeEnd = []byte{0}, []byte{0}
		}
		if rnd.Intn(4) == 0 {
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_FilterType(rnd.Intn(2))}
		}
		from := hub.Rev() + 1
		if hub.Rev() > 0 && rnd.Intn(3) > 0 {
			req.StartRevision = 1 + rnd.Int63n(hub.Rev())
			from = req.StartRevision
		}
		w, err := hub.Watch(req)
		if err != nil {
			t.Fatal(err)
		}
		x := &watcher{req: req, from: from, w: w}
		if !slow {
			x.c, x.started = collect(w), true
		}
		ws = append(ws, x)
	}
	expect := func(x *watcher, evs []*mvccpb.Event) []*mvccpb.Event {
		var out []*mvccpb.Event
		for _, ev := range evs {
			if ev.Kv.ModRevision < x.from || !inRange(ev.Kv.Key, x.req.Key, x.req.RangeEnd) {
				continue
			}
			if len(x.req.Filters) > 0 && (x.req.Filters[0] == pb.WatchCreateRequest_NOPUT) == (ev.Type == mvccpb.Event_PUT) {
				continue
			}
			if !x.req.PrevKv {
				ev = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
			}
			out = append(out, ev)
		}
		return out
	}

	newWatcher(false)
	for batch := 0; batch < 60; batch++ {
		before := s.Rev()
		for n := rnd.Intn(3) + 1; n > 0; n-- {
			w := s.Write(ob)
			perm := rnd.Perm(len(keys))
			for i := rnd.Intn(3) + 1; i > 0; i-- {
				k := []byte(keys[perm[i]])
				if rnd.Intn(4) == 0 {
					if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: k}); err != nil {
						t.Fatal(err)
					}
				} else if _, err := w.Put(&pb.PutRequest{Key: k, Value: []byte(fmt.Sprint(batch))}); err != nil {
					t.Fatal(err)
				}
			}
			w.End()
		}
		// Events read from the batch before the commit are those read
		// from the engine after it.
		pending := map[int64][]*mvccpb.Event{}
		for rev := before + 1; rev <= s.Rev(); rev++ {
			if pending[rev], err = s.RevisionEvents(ob, rev); err != nil {
				t.Fatal(err)
			}
		}
		if err := commitBatch(eng, ob); err != nil {
			t.Fatal(err)
		}
		for rev := before + 1; rev <= s.Rev(); rev++ {
			evs, err := s.RevisionEvents(eng, rev)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 || len(evs) != len(pending[rev]) {
				t.Fatalf("rev %d: %d events, %d before commit", rev, len(evs), len(pending[rev]))
			}
			bare, err := s.RevisionEventsWithoutPrevKV(eng, rev)
			if err != nil || len(bare) != len(evs) {
				t.Fatalf("rev %d without PrevKv: %d events, %v; %d with", rev, len(bare), err, len(evs))
			}
			for i := range evs {
				if !proto.Equal(evs[i], pending[rev][i]) {
					t.Fatalf("rev %d: %s after commit, %s before", rev, evDesc(evs[i]), evDesc(pending[rev][i]))
				}
				want := proto.Clone(evs[i]).(*mvccpb.Event)
				want.PrevKv = nil
				if !proto.Equal(bare[i], want) {
					t.Fatalf("rev %d without PrevKv: %s, want %s", rev, evDesc(bare[i]), evDesc(want))
				}
			}
			all = append(all, evs...)
			hub.Notify(rev, evs)
		}
		if batch%6 == 0 {
			newWatcher(batch%12 == 0)
		}
	}
	final := s.Rev()

	// The events are the store's: each PUT's kv and each event's prev_kv
	// are what Range answers at that revision and the one before.
	seen := map[string]bool{}
	for _, ev := range all {
		r := ev.Kv.ModRevision
		at := mustRangeOn(t, s, eng, ev.Kv.Key, r)
		if ev.Type == mvccpb.Event_PUT && !proto.Equal(at, ev.Kv) || ev.Type == mvccpb.Event_DELETE && at != nil {
			t.Fatalf("%s: range at %d gives %v", evDesc(ev), r, at)
		}
		want := mustRangeOn(t, s, eng, ev.Kv.Key, r-1)
		if !proto.Equal(want, ev.PrevKv) {
			t.Fatalf("%s: prev_kv %v, want %v", evDesc(ev), ev.PrevKv, want)
		}
		seen[ev.Type.String()] = true
	}
	if !seen["PUT"] || !seen["DELETE"] {
		t.Fatalf("event types %v", seen)
	}
	// And exactly History's.
	var hevs []*mvccpb.Event
	if err := hist.Events(1, []byte{0}, []byte{0}, func(ev *mvccpb.Event) bool {
		hevs = append(hevs, ev)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(hevs) != len(all) {
		t.Fatalf("history: %d events, notified %d", len(hevs), len(all))
	}
	for i := range hevs {
		if !proto.Equal(hevs[i], all[i]) {
			t.Fatalf("history event %d: %s, notified %s", i, evDesc(hevs[i]), evDesc(all[i]))
		}
	}

	checkWatchers := func() {
		t.Helper()
		for i, x := range ws {
			if !x.started {
				x.c, x.started = collect(x.w), true
			}
			want := expect(x, all)
			got := x.c.waitEvents(t, fmt.Sprintf("watcher %d", i), len(want))
			if len(got) != len(want) {
				t.Fatalf("watcher %d (%v from %d): %d events, want %d", i, x.req, x.from, len(got), len(want))
			}
			for j := range got {
				if !proto.Equal(got[j], want[j]) {
					t.Fatalf("watcher %d (%v from %d) event %d: %s, want %s", i, x.req, x.from, j, evDesc(got[j]), evDesc(want[j]))
				}
			}
		}
	}
	checkWatchers()
	if len(ws) < 10 {
		t.Fatalf("only %d watchers", len(ws))
	}

	// Compaction: a watcher starting below it is canceled with the
	// compacted revision; one starting at it sees every event of it on.
	c := final - 20
	if _, err := s.Compact(ob, c); err != nil {
		t.Fatal(err)
	}
	if err := commitBatch(eng, ob); err != nil {
		t.Fatal(err)
	}
	if err := s.PhysicalCompact(eng, c, 7, nil); err != nil {
		t.Fatal(err)
	}
	if got := hist.CompactRevision(); got != c {
		t.Fatalf("CompactRevision %d, want %d", got, c)
	}
	for _, start := range []int64{1, c - 1} {
		w, err := hub.Watch(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: start})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-w.C():
			if !r.Canceled || r.CompactRevision != c || len(r.Events) != 0 {
				t.Fatalf("start %d after compaction at %d: %v", start, c, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("start %d: no cancel", start)
		}
		if _, ok := <-w.C(); ok {
			t.Fatalf("start %d: channel not closed", start)
		}
	}
	x := &watcher{req: &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: c}, from: c}
	if x.w, err = hub.Watch(x.req); err != nil {
		t.Fatal(err)
	}
	ws = append(ws[:0], x)
	checkWatchers()
}

// mustRangeOn reads key at rev (nil if absent).
func mustRangeOn(t *testing.T, s *Store, r storage.Reader, key []byte, rev int64) *mvccpb.KeyValue {
	t.Helper()
	if rev < 1 {
		return nil
	}
	resp, err := s.Range(r, &pb.RangeRequest{Key: key, Revision: rev})
	if err != nil {
		t.Fatalf("range %q at %d: %v", key, rev, err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}
