package watch

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// BenchmarkNotifyRangeWatchers hands the hub revisions of 1,000 events
// while 100 range watchers watch other keys: the cost of finding that no
// range watcher wants them, which the apply loop pays under the hub's
// lock (a large delete or transaction next to prefix watchers).
func BenchmarkNotifyRangeWatchers(b *testing.B) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour})
	defer h.Close()
	for i := range 100 {
		if _, err := h.Watch(&pb.WatchCreateRequest{Key: fmt.Appendf(nil, "w%03d/", i), RangeEnd: fmt.Appendf(nil, "w%03d0", i)}); err != nil {
			b.Fatal(err)
		}
	}
	evs := make([]*mvccpb.Event, 1000)
	for i := range evs {
		evs[i] = &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: fmt.Appendf(nil, "e%05d", i)}}
	}
	rev := int64(0)
	for b.Loop() {
		rev++
		h.Notify(rev, evs)
	}
}
