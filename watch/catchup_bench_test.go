package watch

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// BenchmarkCatchUpRangeWatchers times 2,000 watchers on ranges of two
// keys each, resuming together from 1,000 revisions back over 1,000 keys,
// until each has its two keys' events: one shared read, then each range
// watcher picks its events out of it.
func BenchmarkCatchUpRangeWatchers(b *testing.B) {
	const keys, watchers = 1000, 2000
	f := newFakeHistory()
	for i := range keys {
		f.write(p(fmt.Sprintf("k%04d", i)))
	}
	benchCatchUp(b, f, watchers, 2, func(i int) *pb.WatchCreateRequest {
		k := i % (keys - 1)
		return &pb.WatchCreateRequest{
			Key:           []byte(fmt.Sprintf("k%04d", k)),
			RangeEnd:      []byte(fmt.Sprintf("k%04d", k+2)),
			StartRevision: 1,
		}
	})
}

// BenchmarkCatchUpWideWatchers: 200 watchers on wide ranges (half
// from-key over everything, half [k0000, k9)) resuming together over
// 1,000 revisions of 20 keys each: each range watcher's events are most
// of the read.
func BenchmarkCatchUpWideWatchers(b *testing.B) {
	const revs, perRev, watchers = 1000, 20, 200
	f := newFakeHistory()
	for i := range revs {
		var ops []op
		for j := range perRev {
			ops = append(ops, p(fmt.Sprintf("k%04d", (i*perRev+j)%5000)))
		}
		f.write(ops...)
	}
	benchCatchUp(b, f, watchers, revs*perRev, func(i int) *pb.WatchCreateRequest {
		if i%2 == 1 {
			return &pb.WatchCreateRequest{Key: []byte("k0000"), RangeEnd: []byte("k9"), StartRevision: 1}
		}
		return &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte{0}, StartRevision: 1}
	})
}

// benchCatchUp makes n watchers with req(i) on a fresh hub over f, held
// from reading until all are made (not timed), then times until each has
// events events.
func benchCatchUp(b *testing.B, f *fakeHistory, n, events int, req func(i int) *pb.WatchCreateRequest) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := NewHub(f, f.rev, Options{SyncInterval: time.Hour})
		f.mu.Lock()
		hold := make(chan struct{})
		f.hold = hold
		f.mu.Unlock()
		ws := make([]*Watcher, n)
		for i := range ws {
			w, err := h.Watch(req(i))
			if err != nil {
				b.Fatal(err)
			}
			ws[i] = w
		}
		b.StartTimer()
		f.mu.Lock()
		f.hold = nil
		f.mu.Unlock()
		close(hold)
		for _, w := range ws {
			for got := 0; got < events; {
				select {
				case r := <-w.C():
					got += len(r.Events)
				case <-time.After(20 * time.Second):
					b.Fatalf("watcher %d: %d events", w.ID(), got)
				}
			}
		}
		b.StopTimer()
		h.Close()
		b.StartTimer()
	}
}
