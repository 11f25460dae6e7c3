package watch

import (
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The apply loop's protocol (server/apply.go) against concurrent watch
// creation, cancel and progress requests: Interest, a batch of revisions
// read as it says (or read in full with PrevKv before a compaction in the
// batch), the commit (the compaction becomes visible), NotifyBatch, and on
// refusal a read again as Interest now says (with PrevKv the second time)
// and NotifyBatch again. Every watcher must get exactly its events, in
// order; a batch with a compaction is never refused; and, with queues that
// never fill and no snapshot install, no watcher made with start_revision 0
// is canceled, which fails if an unread batch is passed to Advance instead
// (as before 633e9bb).
func TestNotifyBatchRandom(t *testing.T) {
	for seed := int64(0); seed < 8; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { notifyBatchRandom(t, seed) })
	}
}

func notifyBatchRandom(t *testing.T, seed int64) {
	rnd := rand.New(rand.NewSource(seed))
	roomy := seed%2 == 0 // queues never fill, no Advance: start-0 watchers must never be canceled
	f := newFakeHistory()
	lh := &lateHist{fakeHistory: f, rnd: rand.New(rand.NewSource(seed + 100))}
	opts := Options{BufferSize: 2 + rnd.Intn(4), MaxRevsPerBatch: 1 + rnd.Intn(5), SyncInterval: time.Millisecond}
	if roomy {
		opts.BufferSize = 1 << 20
	}
	h := NewHub(lh, 0, opts)
	defer h.Close()
	keys := []string{"a", "ab", "b", "c"}
	randomOps := func(r *rand.Rand) []op {
		var ops []op
		seen := map[string]bool{}
		for j := 0; j < 1+r.Intn(2); j++ {
			k := keys[r.Intn(len(keys))]
			if !seen[k] {
				seen[k] = true
				ops = append(ops, op{key: k, del: r.Intn(5) == 0})
			}
		}
		return ops
	}
	var (
		amu   sync.Mutex
		all   []*rvWatch
		zero  = map[*rvWatch]bool{}
		rwg   sync.WaitGroup
		wmu   sync.Mutex // serializes the watcher goroutine's rnd
		wrnd  = rand.New(rand.NewSource(seed + 200))
		done  = make(chan struct{})
		curMu sync.Mutex
		cur   int64
	)
	newW := func() {
		wmu.Lock()
		req := &pb.WatchCreateRequest{Key: []byte(keys[wrnd.Intn(len(keys))]), PrevKv: wrnd.Intn(2) == 0}
		if wrnd.Intn(3) == 0 {
			req.RangeEnd = []byte{0}
		}
		historical := wrnd.Intn(3) == 0
		slow := !roomy && wrnd.Intn(3) == 0
		wmu.Unlock()
		curMu.Lock()
		c := cur
		curMu.Unlock()
		if historical && c > 5 {
			req.StartRevision = c - 3
		}
		w, err := h.Watch(req)
		if err != nil {
			return
		}
		x := &rvWatch{w: w, req: req, from: req.StartRevision}
		if x.from == 0 {
			x.from = w.CreatedRev() + 1
		}
		amu.Lock()
		all = append(all, x)
		if req.StartRevision == 0 {
			zero[x] = true
		}
		amu.Unlock()
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for r := range w.C() {
				if r.Events == nil && !r.Canceled {
					continue // progress
				}
				x.add(r)
				if slow {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}()
	}
	// Watchers come and go while batches apply.
	var cwg sync.WaitGroup
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		var live []*rvWatch
		for {
			select {
			case <-done:
				return
			default:
			}
			wmu.Lock()
			act := wrnd.Intn(10)
			wmu.Unlock()
			switch {
			case act < 3:
				newW()
				live = append(live, all[len(all)-1])
			case act < 5 && len(live) > 0:
				live[0].w.RequestProgress()
			case act == 5:
				// Cancel every live watcher: the next batches may start
				// with none (canceled ones are checked for order only).
				for _, x := range live {
					x.w.Cancel()
				}
				live = live[:0]
			}
			time.Sleep(20 * time.Microsecond)
		}
	}()
	canceled := func(x *rvWatch) bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return x.w.state == stateDone
	}
	refused := 0
	for b := 0; b < 1000; b++ {
		if !roomy && rnd.Intn(40) == 0 {
			// A snapshot install: revisions the hub is not told of.
			rev, _ := f.write(randomOps(rnd)...)
			h.Advance(rev)
		}
		watching, withPrev := h.Interest()
		f.mu.Lock()
		revBefore := f.rev
		f.mu.Unlock()
		var full [][]*mvccpb.Event
		var read [][]*mvccpb.Event
		compactTo := int64(0)
		n := 1 + rnd.Intn(4)
		for i := 0; i < n; i++ {
			_, evs := f.write(randomOps(rnd)...)
			full = append(full, evs)
			if i == n-1 && rnd.Intn(8) == 0 {
				// A compaction in the batch, after its last write: every
				// revision is read with PrevKv before it applies.
				watching, withPrev = true, true
				compactTo = revBefore + int64(1+rnd.Intn(n))
			}
			if rnd.Intn(3) == 0 {
				time.Sleep(50 * time.Microsecond) // the batch takes time
			}
		}
		if watching {
			for _, evs := range full {
				if withPrev {
					read = append(read, evs)
				} else {
					read = append(read, withoutPrevKV(evs))
				}
			}
		}
		last := revBefore + int64(n)
		curMu.Lock()
		cur = last
		curMu.Unlock()
		if compactTo > 0 {
			f.compact(compactTo) // committed with the batch
		}
		for rereads := 0; !h.NotifyBatch(revBefore+1, last, read, withPrev); rereads++ {
			if compactTo > 0 {
				t.Fatalf("batch %d with a compaction refused", b)
			}
			if rereads > 1 {
				t.Fatalf("batch %d refused after it was read with PrevKv", b)
			}
			refused++
			_, withPrev = h.Interest()
			withPrev = withPrev || rereads > 0
			read = read[:0]
			for _, evs := range full {
				if withPrev {
					read = append(read, evs)
				} else {
					read = append(read, withoutPrevKV(evs))
				}
			}
		}
	}
	close(done)
	cwg.Wait()
	t.Logf("roomy %v, refused %d batches, %d watchers", roomy, refused, len(all))
	deadline := time.Now().Add(60 * time.Second)
	for {
		pending := 0
		amu.Lock()
		ws := append([]*rvWatch(nil), all...)
		amu.Unlock()
		for _, x := range ws {
			want := expected(f, x)
			x.mu.Lock()
			x.checkGot(t, want)
			if x.compacted != 0 && roomy && zero[x] {
				t.Errorf("watcher %d made with start_revision 0 (from %d) canceled by compaction %d after %d of %d events", x.w.ID(), x.from, x.compacted, len(x.got), len(want))
			}
			c := x.compacted != 0
			x.mu.Unlock()
			if !c && len(x.got) < len(want) && !canceled(x) {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d watchers stuck", pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.Close()
	rwg.Wait()
}
