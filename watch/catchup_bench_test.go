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
// watcher picks its events out of it. Making the watchers is not timed.
func BenchmarkCatchUpRangeWatchers(b *testing.B) {
	const keys, watchers = 1000, 2000
	f := newFakeHistory()
	for i := range keys {
		f.write(p(fmt.Sprintf("k%04d", i)))
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := NewHub(f, f.rev, Options{SyncInterval: time.Hour})
		f.mu.Lock()
		hold := make(chan struct{})
		f.hold = hold
		f.mu.Unlock()
		ws := make([]*Watcher, watchers)
		for i := range ws {
			k := i % (keys - 1)
			w, err := h.Watch(&pb.WatchCreateRequest{
				Key:           []byte(fmt.Sprintf("k%04d", k)),
				RangeEnd:      []byte(fmt.Sprintf("k%04d", k+2)),
				StartRevision: 1,
			})
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
			for n := 0; n < 2; {
				select {
				case r := <-w.C():
					n += len(r.Events)
				case <-time.After(10 * time.Second):
					b.Fatalf("watcher %d: %d events", w.ID(), n)
				}
			}
		}
		b.StopTimer()
		h.Close()
		b.StartTimer()
	}
}

// BenchmarkCatchUpWideWatchers: 200 watchers on wide ranges (half from-key over everything, half
// [k0000, k9)) resuming together over 1,000 revisions of 20 keys each:
// each range watcher's events are most of the read.
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
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		h := NewHub(f, f.rev, Options{SyncInterval: time.Hour})
		f.mu.Lock()
		hold := make(chan struct{})
		f.hold = hold
		f.mu.Unlock()
		ws := make([]*Watcher, watchers)
		for i := range ws {
			req := &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte{0}, StartRevision: 1}
			if i%2 == 1 {
				req = &pb.WatchCreateRequest{Key: []byte("k0000"), RangeEnd: []byte("k9"), StartRevision: 1}
			}
			w, err := h.Watch(req)
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
			for n := 0; n < revs*perRev; {
				select {
				case r := <-w.C():
					n += len(r.Events)
				case <-time.After(20 * time.Second):
					b.Fatalf("watcher %d: %d events", w.ID(), n)
				}
			}
		}
		b.StopTimer()
		h.Close()
		b.StartTimer()
	}
}
