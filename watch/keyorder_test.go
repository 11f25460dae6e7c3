package watch

import (
	"fmt"
	"math/rand"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// keyOrder.in, filtered as its callers filter it, gives exactly the
// events of the read that a range or from-key watcher's has() accepts, in
// the read's order, for keys that are prefixes of one another, "",
// "\x00", "\xff", repeated keys (several events of one key, one of them in
// the same revision), ranges whose end no event reaches, and an empty
// read. (Written by a reviewer.)
func TestKeyOrderAgreesWithFilter(t *testing.T) {
	keys := []string{"", "\x00", "\x00\x00", "a", "a\x00", "ab", "abc", "abd", "b", "b\x00", "ba", "c", "\xff", "\xff\xff"}
	ends := append([]string{"\x00"}, keys...)
	rnd := rand.New(rand.NewSource(1))
	for iter := 0; iter < 3000; iter++ {
		var evs []*mvccpb.Event
		rev := int64(1)
		for i, n := 0, rnd.Intn(25); i < n; i++ {
			if rnd.Intn(3) != 0 {
				rev++
			}
			evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(keys[rnd.Intn(len(keys))]), ModRevision: rev}})
		}
		o := newKeyOrder(evs)
		for _, k := range keys {
			for _, e := range ends {
				req := &pb.WatchCreateRequest{Key: []byte(k), RangeEnd: []byte(e)}
				if e != "\x00" && e <= k {
					continue
				}
				h := &Hub{}
				w, err := h.newWatcher(req)
				if err != nil {
					t.Fatal(err)
				}
				var want []*mvccpb.Event
				for _, ev := range evs {
					if w.has(ev.Kv.Key) {
						want = append(want, ev)
					}
				}
				var got []*mvccpb.Event
				for _, ev := range o.in(w) {
					if w.has(ev.Kv.Key) {
						got = append(got, ev)
					}
				}
				if fmt.Sprint(positions(evs, got)) != fmt.Sprint(positions(evs, want)) {
					t.Fatalf("[%q,%q) over %s: got %v want %v", k, e, desc(evs), positions(evs, got), positions(evs, want))
				}
			}
		}
	}
}

func positions(all, some []*mvccpb.Event) []int {
	var out []int
	for _, ev := range some {
		for i, a := range all {
			if a == ev {
				out = append(out, i)
				break
			}
		}
	}
	return out
}
