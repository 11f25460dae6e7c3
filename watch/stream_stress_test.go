package watch

import (
	"bytes"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// inst is one watcher of a stream as its reader sees it: an id can be
// reused after a cancel.
type inst struct {
	req       *pb.WatchCreateRequest
	start     int64
	idx       int // matching history events received so far
	ended     bool
	compacted bool  // canceled by a compaction, before the caller's cancel
	lastRev   int64 // the highest progress revision received
	log       []string
}

// histFor returns the history events on [key, end) from start.
func histFor(f *fakeHistory, start int64, key, end []byte) []*mvccpb.Event {
	f.mu.Lock()
	evs := f.evs
	f.mu.Unlock()
	var out []*mvccpb.Event
	for _, ev := range evs {
		if ev.Kv.ModRevision >= start && inRange(ev.Kv.Key, key, end) {
			out = append(out, ev)
		}
	}
	return out
}

// Streams whose watchers are created (some from past revisions), canceled
// and their ids reused at random, with progress requests and ticks, while
// a writer notifies or only advances the hub and compacts now and then,
// and readers of different speeds: each watcher gets exactly History's
// events from its start, nothing after its canceled response, no event at
// or below a progress revision it got, and every watcher still running
// ends with all its events.
func TestStreamStress(t *testing.T) {
	for seed := int64(0); seed < 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { streamStress(t, seed) })
	}
}

func streamStress(t *testing.T, seed int64) {
	f := newFakeHistory()
	opts := Options{BufferSize: 2, MaxRevsPerBatch: 2, SyncInterval: 2 * time.Millisecond}
	h := NewHub(f, 0, opts)
	defer h.Close()
	keys := []string{"a", "b", "c", "d"}
	const revs = 3000
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		rnd := rand.New(rand.NewSource(seed))
		for i := 0; i < revs; i++ {
			k := keys[rnd.Intn(len(keys))]
			rev, evs := f.write(op{key: k, del: rnd.Intn(5) == 0})
			if rnd.Intn(30) == 0 {
				h.Advance(rev)
			} else {
				h.Notify(rev, evs)
			}
			if rnd.Intn(400) == 0 && rev > 40 {
				f.compact(rev - 30)
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		close(stop)
	}()
	errs := make(chan error, 100)
	for si := 0; si < 4; si++ {
		wg.Add(1)
		go func(si int) {
			defer wg.Done()
			s := h.NewStream()
			defer s.Close()
			rnd := rand.New(rand.NewSource(seed*100 + int64(si)))
			var pmu sync.Mutex
			pending := map[int64][]*pb.WatchCreateRequest{}
			done := make(chan struct{})
			ctlDone := make(chan struct{})
			go func() { // control loop (recvLoop)
				defer close(ctlDone)
				r := rand.New(rand.NewSource(seed*1000 + int64(si)))
				ws := map[int64]*Watcher{}
				for {
					select {
					case <-stop:
						return
					case <-done:
						return
					default:
					}
					id := int64(r.Intn(6))
					switch x := r.Intn(10); {
					case x < 4:
						if ws[id] != nil {
							continue
						}
						req := &pb.WatchCreateRequest{Key: []byte(keys[r.Intn(len(keys))])}
						if r.Intn(2) == 0 {
							req.Key, req.RangeEnd = []byte("b"), []byte("d")
						}
						if r.Intn(2) == 0 {
							cur := h.Rev()
							req.StartRevision = max(1, cur-int64(r.Intn(60)))
						}
						if r.Intn(3) == 0 {
							req.ProgressNotify = true
						}
						pmu.Lock()
						pending[id] = append(pending[id], req)
						pmu.Unlock()
						w, err := s.Watch(id, req, done)
						if err != nil {
							return
						}
						ws[id] = w
					case x < 7:
						w := ws[id]
						if w == nil {
							continue
						}
						delete(ws, id)
						if s.Cancel(w, &pb.WatchResponse{Header: &pb.ResponseHeader{}, WatchId: id, Canceled: true}, done) != nil {
							return
						}
					default:
						s.RequestProgress()
					}
					time.Sleep(time.Duration(r.Intn(300)) * time.Microsecond)
				}
			}()
			defer func() { close(done); <-ctlDone }()
			cur := map[int64]*inst{}
			check := func(o Out) error {
				r := o.Resp
				id := r.WatchId
				if id == InvalidWatchID {
					R := r.Header.Revision
					for wid, in := range cur {
						if in.ended {
							continue
						}
						hs := histFor(f, in.start, in.req.Key, in.req.RangeEnd)
						if in.idx < len(hs) && hs[in.idx].Kv.ModRevision <= R {
							return fmt.Errorf("stream progress %d but watcher %d (start %d) still misses event at %d; log %v", R, wid, in.start, hs[in.idx].Kv.ModRevision, in.log)
						}
						in.lastRev = max(in.lastRev, R)
					}
					return nil
				}
				in := cur[id]
				if r.Created {
					if in != nil && !in.ended {
						return fmt.Errorf("created %d while previous instance alive", id)
					}
					pmu.Lock()
					req := pending[id][0]
					pending[id] = pending[id][1:]
					pmu.Unlock()
					start := req.StartRevision
					if start == 0 {
						start = r.Header.Revision + 1
					}
					cur[id] = &inst{req: req, start: start, log: []string{fmt.Sprintf("created@%d req=%d", r.Header.Revision, req.StartRevision)}}
					return nil
				}
				if in != nil && in.ended && in.compacted && r.Canceled && r.CompactRevision == 0 {
					in.compacted = false
					return nil
				}
				if in == nil || in.ended {
					return fmt.Errorf("response for %d with no live instance: %v", id, r)
				}
				if r.Canceled {
					in.compacted = r.CompactRevision != 0
					in.ended = true
					return nil
				}
				hs := histFor(f, in.start, in.req.Key, in.req.RangeEnd)
				if len(r.Events) == 0 { // per-watcher progress
					R := r.Header.Revision
					if in.idx < len(hs) && hs[in.idx].Kv.ModRevision <= R {
						return fmt.Errorf("watcher %d progress %d but misses event at %d", id, R, hs[in.idx].Kv.ModRevision)
					}
					in.lastRev = max(in.lastRev, R)
					return nil
				}
				in.log = append(in.log, fmt.Sprintf("hdr%d:%d-%d", r.Header.Revision, r.Events[0].Kv.ModRevision, r.Events[len(r.Events)-1].Kv.ModRevision))
				for _, ev := range r.Events {
					if in.idx >= len(hs) {
						return fmt.Errorf("watcher %d: extra event %d", id, ev.Kv.ModRevision)
					}
					want := hs[in.idx]
					if ev.Kv.ModRevision != want.Kv.ModRevision || !bytes.Equal(ev.Kv.Key, want.Kv.Key) || ev.Type != want.Type {
						return fmt.Errorf("watcher %d (start %d): got %s@%d want %s@%d", id, in.start, ev.Kv.Key, ev.Kv.ModRevision, want.Kv.Key, want.Kv.ModRevision)
					}
					if ev.Kv.ModRevision <= in.lastRev {
						return fmt.Errorf("watcher %d: event %d after progress %d", id, ev.Kv.ModRevision, in.lastRev)
					}
					in.idx++
				}
				return nil
			}
			stop := stop
			tick := time.NewTicker(3 * time.Millisecond)
			defer tick.Stop()
			var finalDeadline <-chan time.Time
			for {
				out, err := s.Take(nil)
				if err != nil {
					errs <- err
					return
				}
				for _, o := range out {
					if err := check(o); err != nil {
						errs <- fmt.Errorf("stream %d: %w", si, err)
						return
					}
				}
				if rnd.Intn(3) == 0 {
					time.Sleep(time.Duration(rnd.Intn(500)) * time.Microsecond)
				}
				if len(out) == 0 {
					select {
					case <-s.Ready():
					case <-tick.C:
						s.ProgressTick()
					case <-stop:
						if finalDeadline == nil {
							finalDeadline = time.After(3 * time.Second)
						}
						stop = nil
					case <-finalDeadline:
						// liveness: every live instance has all history
						for wid, in := range cur {
							if in.ended {
								continue
							}
							hs := histFor(f, in.start, in.req.Key, in.req.RangeEnd)
							if in.idx != len(hs) {
								errs <- fmt.Errorf("stream %d watcher %d stuck: %d/%d events", si, wid, in.idx, len(hs))
							}
						}
						return
					}
				}
			}
		}(si)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
