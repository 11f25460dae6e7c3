package watch

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestNotifyLargeRevisions: revisions of up to 200 events, which Notify
// hands to range watchers through the events sorted by key, reach every
// watcher (ranges, from-key ranges, single keys, filters, prev_kv) exactly as History has them, in order.
func TestNotifyLargeRevisions(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour, BufferSize: 1000})
	defer h.Close()
	key := func(i int) string { return fmt.Sprintf("k%03d", i) }
	type made struct {
		w   *Watcher
		req *pb.WatchCreateRequest
	}
	var ws []made
	for i := range 60 {
		a := rng.IntN(300)
		b := a + 1 + rng.IntN(300-a)
		req := &pb.WatchCreateRequest{Key: []byte(key(a)), PrevKv: i%3 == 0}
		switch i % 6 {
		case 0, 1, 2:
			req.RangeEnd = []byte(key(b))
		case 3:
			req.RangeEnd = []byte{0}
		case 4:
			req.Key, req.RangeEnd = []byte("k"), []byte(key(a)+"\x00") // a prefix of later keys' names
		}
		if i%5 == 0 {
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
		}
		w, err := h.Watch(req)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, made{w, req})
	}
	for range 40 {
		n := rng.IntN(200)
		var ops []op
		for _, k := range rng.Perm(300)[:n] {
			if rng.IntN(4) == 0 {
				ops = append(ops, d(key(k)))
			} else {
				ops = append(ops, p(key(k)))
			}
		}
		put(f, h, ops...)
	}
	for _, m := range ws {
		var want []*mvccpb.Event
		_ = f.Events(1, m.req.Key, m.req.RangeEnd, func(ev *mvccpb.Event) bool {
			if ev = m.w.shape(ev); ev != nil {
				want = append(want, ev)
			}
			return true
		})
		var got []*mvccpb.Event
		for len(got) < len(want) {
			got = append(got, recv(t, m.w).Events...)
		}
		select {
		case r := <-m.w.C():
			t.Fatalf("watcher %q-%q: %d more events", m.req.Key, m.req.RangeEnd, len(r.Events))
		default:
		}
		for i := range want {
			if got[i].Kv.ModRevision != want[i].Kv.ModRevision || string(got[i].Kv.Key) != string(want[i].Kv.Key) ||
				got[i].Type != want[i].Type || (got[i].PrevKv != nil) != (want[i].PrevKv != nil) {
				t.Fatalf("watcher %q-%q event %d: got %s want %s", m.req.Key, m.req.RangeEnd, i, desc(got[i:i+1]), desc(want[i:i+1]))
			}
		}
	}
}
