package watch

import (
	"errors"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// lateHist is fakeHistory that may notice a compaction after calling fn,
// and sleeps a little in the middle of reads.
type lateHist struct {
	*fakeHistory
	rnd   *rand.Rand
	rmu   sync.Mutex
	reads int
}

func (l *lateHist) Events(from int64, key, end []byte, fn func(*mvccpb.Event) bool) error {
	l.rmu.Lock()
	l.reads++
	sl := l.rnd.Intn(4) == 0
	l.rmu.Unlock()
	n := 0
	err := l.fakeHistory.Events(from, key, end, func(ev *mvccpb.Event) bool {
		n++
		if sl && n == 2 {
			time.Sleep(50 * time.Microsecond)
		}
		return fn(ev)
	})
	if err != nil {
		return err
	}
	if from < l.CompactRevision() {
		return ErrCompacted
	}
	return nil
}

type rvWatch struct {
	w         *Watcher
	req       *pb.WatchCreateRequest
	from      int64
	mu        sync.Mutex
	got       []*mvccpb.Event
	compacted int64
	closed    bool
	err       string
}

// checkGot fails t if x reported an error, or if the events it got so
// far are not the first of want. With x.mu held.
func (x *rvWatch) checkGot(t *testing.T, want []*mvccpb.Event) {
	t.Helper()
	if x.err != "" {
		t.Fatalf("watcher %v: %s", x.req, x.err)
	}
	for i, ev := range x.got {
		if i >= len(want) || !same(ev, want[i]) {
			var w string
			if i < len(want) {
				w = desc(want[i : i+1])
			}
			t.Fatalf("watcher %d %q-%q from %d filters %v: event %d got %s want %s\n got %s\nwant %s", x.w.ID(), x.req.Key, x.req.RangeEnd, x.from, x.req.Filters, i, desc(x.got[i:i+1]), w, desc(x.got), desc(want))
		}
	}
}

func (x *rvWatch) add(r *pb.WatchResponse) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.compacted != 0 || x.closed {
		x.err = fmt.Sprintf("response after end: %v", r)
		return
	}
	if r.Canceled {
		x.compacted = r.CompactRevision
		if x.compacted == 0 {
			x.err = "cancel without compact revision"
		}
		return
	}
	for _, ev := range r.Events {
		if ev.Kv.ModRevision > r.Header.Revision {
			x.err = fmt.Sprintf("event %d above header %d", ev.Kv.ModRevision, r.Header.Revision)
		}
	}
	x.got = append(x.got, r.Events...)
}

func expected(f *fakeHistory, x *rvWatch) []*mvccpb.Event {
	f.mu.Lock()
	evs := f.evs
	f.mu.Unlock()
	var out []*mvccpb.Event
	for _, ev := range evs {
		if ev.Kv.ModRevision < x.from || !inRange(ev.Kv.Key, x.req.Key, x.req.RangeEnd) {
			continue
		}
		if ev = x.w.shape(ev); ev != nil {
			out = append(out, ev)
		}
	}
	return out
}

func same(a, b *mvccpb.Event) bool {
	return a.Type == b.Type && string(a.Kv.Key) == string(b.Kv.Key) && a.Kv.ModRevision == b.Kv.ModRevision &&
		(a.PrevKv != nil) == (b.PrevKv != nil)
}

// Own-channel and stream watchers of every kind of range (empty keys,
// keys that are prefixes of others, from-key), filters and prev_kv catch
// up with tiny batch limits, slow readers, Advance, and compactions that
// History may notice after its read: every watcher gets exactly its
// History events (by the reviewer of the shared catch-up reads).
func TestCatchUpRandom(t *testing.T) {
	for seed := int64(0); seed < 6; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { rvRandom(t, seed) })
	}
}

func rvRandom(t *testing.T, seed int64) {
	rnd := rand.New(rand.NewSource(seed))
	f := newFakeHistory()
	lh := &lateHist{fakeHistory: f, rnd: rand.New(rand.NewSource(seed + 100))}
	opts := Options{BufferSize: 2 + rnd.Intn(4), MaxRevsPerBatch: 1 + rnd.Intn(5), MaxBatchBytes: 1 + rnd.Intn(1200), SyncInterval: time.Millisecond}
	h := NewHub(lh, 0, opts)
	t.Logf("opts %+v", opts)
	defer h.Close()
	keys := []string{"", "a", "ab", "abc", "abd", "b", "b\x00", "ba", "c", "\x00", "\xff"}
	compactions := seed%3 != 0
	// randomOps returns the ops of one revision: one to three distinct keys.
	randomOps := func() []op {
		n := 1 + rnd.Intn(3)
		var ops []op
		seen := map[string]bool{}
		for j := 0; j < n; j++ {
			k := keys[rnd.Intn(len(keys))]
			if seen[k] {
				continue
			}
			seen[k] = true
			ops = append(ops, op{key: k, del: rnd.Intn(5) == 0, size: rnd.Intn(3) * 50})
		}
		return ops
	}
	for i := 0; i < 200; i++ {
		put(f, h, randomOps()...)
	}
	var all []*rvWatch
	var amu sync.Mutex
	var rwg sync.WaitGroup
	stop := make(chan struct{})
	mkReq := func() *pb.WatchCreateRequest {
		req := &pb.WatchCreateRequest{Key: []byte(keys[rnd.Intn(len(keys))]), PrevKv: rnd.Intn(2) == 0}
		switch rnd.Intn(4) {
		case 1:
			e := keys[rnd.Intn(len(keys))]
			if e > string(req.Key) {
				req.RangeEnd = []byte(e)
			}
		case 2:
			req.RangeEnd = []byte{0}
		}
		switch rnd.Intn(5) {
		case 0:
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
		case 1:
			req.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
		}
		return req
	}
	newW := func(cur int64) {
		req := mkReq()
		if rnd.Intn(6) != 0 {
			req.StartRevision = max(1, cur-int64(rnd.Intn(60)))
		}
		w, err := h.Watch(req)
		if err != nil {
			t.Fatal(err)
		}
		x := &rvWatch{w: w, req: req, from: req.StartRevision}
		if x.from == 0 {
			x.from = w.CreatedRev() + 1
		}
		amu.Lock()
		all = append(all, x)
		amu.Unlock()
		slow := rnd.Intn(3) == 0
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for r := range w.C() {
				x.add(r)
				if slow {
					time.Sleep(200 * time.Microsecond)
				}
			}
			x.mu.Lock()
			x.closed = true
			x.mu.Unlock()
		}()
	}
	// Stream watchers share queues.
	var streams []*Stream
	var sx = map[*Stream]map[int64]*rvWatch{}
	var smu sync.Mutex
	for i := 0; i < 3; i++ {
		s := h.NewStream()
		streams = append(streams, s)
		sx[s] = map[int64]*rvWatch{}
		rwg.Add(1)
		go func(s *Stream) {
			defer rwg.Done()
			var buf []Out
			for {
				select {
				case <-s.Ready():
				case <-stop:
					return
				}
				var err error
				buf, err = s.Take(buf[:0])
				if err != nil {
					return
				}
				for _, o := range buf {
					if o.Resp.Created || o.Resp.WatchId == InvalidWatchID {
						continue
					}
					smu.Lock()
					x := sx[s][o.Resp.WatchId]
					smu.Unlock()
					x.add(o.Resp)
				}
				time.Sleep(time.Duration(len(buf)%2) * 100 * time.Microsecond)
			}
		}(s)
	}
	sid := int64(0)
	newS := func(cur int64) {
		s := streams[rnd.Intn(len(streams))]
		req := mkReq()
		if rnd.Intn(6) != 0 {
			req.StartRevision = max(1, cur-int64(rnd.Intn(60)))
		}
		sid++
		x := &rvWatch{req: req, from: req.StartRevision}
		smu.Lock()
		sx[s][sid] = x
		smu.Unlock()
		w, err := s.Watch(sid, req, stop)
		if err != nil {
			t.Fatal(err)
		}
		x.w = w
		if x.from == 0 {
			x.from = w.CreatedRev() + 1
		}
		amu.Lock()
		all = append(all, x)
		amu.Unlock()
	}
	cur := int64(200)
	for i := 0; i < 600; i++ {
		if rnd.Intn(3) == 0 {
			for j := 0; j < 1+rnd.Intn(6); j++ {
				if rnd.Intn(2) == 0 {
					newW(cur)
				} else {
					newS(cur)
				}
			}
		}
		rev, evs := f.write(randomOps()...)
		cur = rev
		if rnd.Intn(15) == 0 {
			h.Advance(rev)
		} else {
			h.Notify(rev, evs)
		}
		if compactions && rnd.Intn(60) == 0 {
			f.compact(rev - int64(rnd.Intn(40)))
		}
		if rnd.Intn(20) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	// Wait for every live watcher to have all its events.
	deadline := time.Now().Add(90 * time.Second)
	measured := false
	for {
		pending := 0
		var bad *rvWatch
		amu.Lock()
		ws := append([]*rvWatch(nil), all...)
		amu.Unlock()
		for _, x := range ws {
			want := expected(f, x)
			x.mu.Lock()
			x.checkGot(t, want)
			if x.compacted != 0 {
				last := x.from - 1
				if len(x.got) > 0 {
					last = x.got[len(x.got)-1].Kv.ModRevision
				}
				if x.compacted <= last+1 && len(x.got) < len(want) {
					// the next needed revision was last+1 or later; etcd
					// cancels only below the compact revision
					t.Errorf("watcher %d: compacted at %d after receiving up to %d", x.w.ID(), x.compacted, last)
				}
			} else if len(x.got) < len(want) {
				pending++
				bad = x
			}
			x.mu.Unlock()
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline.Add(-15*time.Second)) && !measured && bad != nil {
			measured = true
			lh.rmu.Lock()
			r0 := lh.reads
			lh.rmu.Unlock()
			h.mu.Lock()
			m0 := bad.w.minRev
			h.mu.Unlock()
			time.Sleep(time.Second)
			lh.rmu.Lock()
			r1 := lh.reads
			lh.rmu.Unlock()
			h.mu.Lock()
			m1 := bad.w.minRev
			h.mu.Unlock()
			t.Logf("reads/s %d minRev %d -> %d", r1-r0, m0, m1)
		}
		if time.Now().After(deadline) {
			h.mu.Lock()
			st, mr := bad.w.state, bad.w.minRev
			hr := h.rev
			nu := len(h.unsynced)
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			for _, g := range strings.Split(string(buf[:n]), "\n\n") {
				if strings.Contains(g, "watch.(*Hub)") {
					t.Log(g)
				}
			}
			for w := range h.unsynced {
				ql := -1
				if w.s != nil {
					ql = w.s.queued()
				}
				t.Logf("unsynced %d key %q end %q minRev %d compacted %d full %v backlog %v ql %d chlen %d", w.id, w.key, w.end, w.minRev, w.compacted, w.full(), w.backlogTooBig(), ql, len(w.ch))
			}
			h.mu.Unlock()
			t.Fatalf("%d watchers stuck, e.g. %d %q-%q state %d minRev %d hub %d unsynced %d compacted %d got %d want %d",
				pending, bad.w.ID(), bad.req.Key, bad.req.RangeEnd, st, mr, hr, nu, f.CompactRevision(), len(bad.got), len(expected(f, bad)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	h.Close()
	rwg.Wait()
	_ = errors.Is
}
