package watch

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// fakeHistory is an in-memory History: every event ever written, in
// revision order, and a compacted revision below which Events fails (as
// etcd and the mvcc package do, from == compacted is allowed).
type fakeHistory struct {
	mu        sync.Mutex
	evs       []*mvccpb.Event
	last      map[string]*mvccpb.KeyValue
	rev       int64
	compacted int64
	calls     int
	hold      chan struct{} // if set, Events waits until it is closed
}

func newFakeHistory() *fakeHistory {
	return &fakeHistory{last: make(map[string]*mvccpb.KeyValue)}
}

type op struct {
	del  bool
	key  string
	size int // value size; 0: the revision as text
}

// write commits one revision with the given ops and returns its events.
func (f *fakeHistory) write(ops ...op) (int64, []*mvccpb.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	var evs []*mvccpb.Event
	for _, o := range ops {
		prev := f.last[o.key]
		ev := &mvccpb.Event{PrevKv: prev}
		if o.del {
			ev.Type = mvccpb.Event_DELETE
			ev.Kv = &mvccpb.KeyValue{Key: []byte(o.key), ModRevision: f.rev}
			delete(f.last, o.key)
		} else {
			kv := &mvccpb.KeyValue{Key: []byte(o.key), ModRevision: f.rev, CreateRevision: f.rev, Version: 1, Value: []byte(fmt.Sprint(f.rev))}
			if o.size > 0 {
				kv.Value = make([]byte, o.size)
			}
			if prev != nil {
				kv.CreateRevision = prev.CreateRevision
				kv.Version = prev.Version + 1
			}
			ev.Type = mvccpb.Event_PUT
			ev.Kv = kv
			f.last[o.key] = kv
		}
		evs = append(evs, ev)
	}
	f.evs = append(f.evs, evs...)
	return f.rev, evs
}

func (f *fakeHistory) compact(rev int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = rev
}

func inRange(k, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, key)
	case len(end) == 1 && end[0] == 0:
		return bytes.Compare(k, key) >= 0
	default:
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
}

func (f *fakeHistory) Events(from int64, key, end []byte, fn func(*mvccpb.Event) bool) error {
	f.mu.Lock()
	f.calls++
	if from < f.compacted {
		f.mu.Unlock()
		return ErrCompacted
	}
	evs, hold := f.evs, f.hold
	f.mu.Unlock()
	if hold != nil {
		<-hold
	}
	for _, ev := range evs {
		if ev.Kv.ModRevision < from || !inRange(ev.Kv.Key, key, end) {
			continue
		}
		if !fn(ev) {
			return nil
		}
	}
	return nil
}

func (f *fakeHistory) CompactRevision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.compacted
}

// put writes and notifies one revision.
func put(f *fakeHistory, h *Hub, ops ...op) int64 {
	rev, evs := f.write(ops...)
	h.Notify(rev, evs)
	return rev
}

func p(k string) op { return op{key: k} }
func d(k string) op { return op{del: true, key: k} }

func fastOpts() Options {
	return Options{SyncInterval: 5 * time.Millisecond}
}

func mustWatch(t *testing.T, h *Hub, req *pb.WatchCreateRequest) *Watcher {
	t.Helper()
	w, err := h.Watch(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	return w
}

// recv returns the next response or fails after a timeout.
func recv(t *testing.T, w *Watcher) *pb.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-w.C():
		if !ok {
			t.Fatalf("watcher %d: channel closed", w.ID())
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("watcher %d: no response", w.ID())
		return nil
	}
}

// events reads responses until n events arrived and returns them.
func events(t *testing.T, w *Watcher, n int) []*mvccpb.Event {
	t.Helper()
	var out []*mvccpb.Event
	for len(out) < n {
		r := recv(t, w)
		if r.Canceled {
			t.Fatalf("unexpected cancel: %v", r)
		}
		if r.WatchId != w.ID() {
			t.Fatalf("watch id %d, want %d", r.WatchId, w.ID())
		}
		out = append(out, r.Events...)
	}
	if len(out) != n {
		t.Fatalf("got %d events, want %d", len(out), n)
	}
	return out
}

func noResponse(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case r := <-w.C():
		t.Fatalf("unexpected response %v", r)
	case <-time.After(30 * time.Millisecond):
	}
}

func desc(evs []*mvccpb.Event) string {
	var b bytes.Buffer
	for _, ev := range evs {
		fmt.Fprintf(&b, "%s:%s@%d ", ev.Type, ev.Kv.Key, ev.Kv.ModRevision)
	}
	return b.String()
}

func TestLiveRanges(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	single := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a")})
	rng := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c")})
	prefix := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("b/"), RangeEnd: []byte("b0")})
	from := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte{0}})
	all := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}})

	put(f, h, p("a"), p("b/x"))    // 1
	put(f, h, p("c"))              // 2
	put(f, h, p("ab"), d("b/x"))   // 3
	put(f, h, p("b0"), p("zzzzz")) // 4

	cases := []struct {
		w    *Watcher
		want string
	}{
		{single, "PUT:a@1 "},
		{rng, "PUT:a@1 PUT:b/x@1 PUT:ab@3 DELETE:b/x@3 PUT:b0@4 "},
		{prefix, "PUT:b/x@1 DELETE:b/x@3 "},
		{from, "PUT:b/x@1 PUT:c@2 DELETE:b/x@3 PUT:b0@4 PUT:zzzzz@4 "},
		{all, "PUT:a@1 PUT:b/x@1 PUT:c@2 PUT:ab@3 DELETE:b/x@3 PUT:b0@4 PUT:zzzzz@4 "},
	}
	for i, c := range cases {
		n := bytes.Count([]byte(c.want), []byte(" "))
		if got := desc(events(t, c.w, n)); got != c.want {
			t.Errorf("watcher %d: got %q want %q", i, got, c.want)
		}
		noResponse(t, c.w)
	}
	// One response per revision, header revision = the revision.
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	rev := put(f, h, p("k"))
	if r := recv(t, w); r.Header.Revision != rev || len(r.Events) != 1 {
		t.Fatalf("response %v", r)
	}
	if _, err := h.Watch(&pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")}); !errors.Is(err, ErrEmptyRange) {
		t.Fatalf("empty range: %v", err)
	}
}

func TestCatchUpThenLive(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	for i := 0; i < 10; i++ {
		put(f, h, p("k"))
	}
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 4})
	got := events(t, w, 7)
	for i, ev := range got {
		if ev.Kv.ModRevision != int64(4+i) {
			t.Fatalf("event %d at %d", i, ev.Kv.ModRevision)
		}
	}
	put(f, h, p("k"))
	if ev := events(t, w, 1)[0]; ev.Kv.ModRevision != 11 {
		t.Fatalf("live event at %d", ev.Kv.ModRevision)
	}
	// start_revision 0 and above the current revision: only later events.
	now := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	future := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 14})
	put(f, h, p("k")) // 12
	put(f, h, p("k")) // 13
	put(f, h, p("k")) // 14
	if got := desc(events(t, now, 3)); got != "PUT:k@12 PUT:k@13 PUT:k@14 " {
		t.Fatalf("now watcher: %s", got)
	}
	if got := desc(events(t, future, 1)); got != "PUT:k@14 " {
		t.Fatalf("future watcher: %s", got)
	}
}

func TestCatchUpBatches(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.MaxRevsPerBatch = 10
	h := NewHub(f, 0, opts)
	defer h.Close()
	for i := 0; i < 35; i++ {
		put(f, h, p("a"), p("b")) // two events per revision
	}
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c"), StartRevision: 1})
	var all []*mvccpb.Event
	for len(all) < 70 {
		r := recv(t, w)
		revs := map[int64]bool{}
		for _, ev := range r.Events {
			revs[ev.Kv.ModRevision] = true
		}
		if len(revs) > 10 {
			t.Fatalf("batch with %d revisions", len(revs))
		}
		all = append(all, r.Events...)
	}
	for i, ev := range all {
		if ev.Kv.ModRevision != int64(i/2+1) {
			t.Fatalf("event %d at revision %d", i, ev.Kv.ModRevision)
		}
	}
}

// TestCatchUpBoundsWhatItQueues catches a watcher that does not read up
// on a history of large values. Each catching-up watcher reads history on
// its own, so the hub must stop at about maxQueuedBatchBytes queued (in
// responses of about MaxBatchBytes) rather than hold the whole history
// in the watcher's channel; read on, every revision arrives in order.
func TestCatchUpBoundsWhatItQueues(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.MaxBatchBytes = 1 << 20
	h := NewHub(f, 0, opts)
	defer h.Close()
	const n, size = 100, 256 << 10 // 25 MiB of history
	for range n {
		put(f, h, op{key: "k", size: size})
	}
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	time.Sleep(300 * time.Millisecond) // 60 sync ticks
	queued := 0
	for range len(w.C()) {
		for _, ev := range (<-w.C()).Events {
			queued += len(ev.Kv.Value)
		}
	}
	if limit := maxQueuedBatchBytes + 1<<20 + size; queued > limit {
		t.Fatalf("%d bytes of values queued for a watcher that does not read, want at most %d", queued, limit)
	}
	next := int64(queued/size + 1)
	for next <= n {
		r := recv(t, w)
		if b := len(r.Events) * size; b > 1<<20+size {
			t.Fatalf("a catch-up response of %d bytes of values, want at most %d", b, 1<<20+size)
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != next {
				t.Fatalf("event at revision %d, want %d", ev.Kv.ModRevision, next)
			}
			next++
		}
	}
}

func TestFiltersAndPrevKV(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("k")) // 1: history
	put(f, h, d("k")) // 2
	mk := func(start int64, prev bool, fs ...pb.WatchCreateRequest_FilterType) *Watcher {
		return mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: start, PrevKv: prev, Filters: fs})
	}
	for _, start := range []int64{1, 0} { // catch-up and live paths
		noPut := mk(start, false, pb.WatchCreateRequest_NOPUT)
		noDel := mk(start, false, pb.WatchCreateRequest_NODELETE)
		prev := mk(start, true)
		plain := mk(start, false)
		if start == 0 {
			put(f, h, p("k"))
			put(f, h, d("k"))
		}
		if ev := events(t, noPut, 1)[0]; ev.Type != mvccpb.Event_DELETE {
			t.Fatalf("start %d: NOPUT got %v", start, ev)
		}
		if ev := events(t, noDel, 1)[0]; ev.Type != mvccpb.Event_PUT {
			t.Fatalf("start %d: NODELETE got %v", start, ev)
		}
		pe := events(t, prev, 2)
		if pe[0].PrevKv != nil || pe[1].PrevKv == nil || pe[1].PrevKv.ModRevision != pe[0].Kv.ModRevision {
			t.Fatalf("start %d: prev_kv events %v", start, pe)
		}
		for _, ev := range events(t, plain, 2) {
			if ev.PrevKv != nil {
				t.Fatalf("start %d: prev_kv not stripped: %v", start, ev)
			}
		}
		// The stripped copy does not touch the shared event.
		if pe[1].PrevKv == nil {
			t.Fatal("shared event modified")
		}
		noResponse(t, noPut)
		noResponse(t, noDel)
	}
}

func TestCompactedStart(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	for i := 0; i < 10; i++ {
		put(f, h, p("k"))
	}
	f.compact(6)
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 3})
	r := recv(t, w)
	if !r.Canceled || r.CompactRevision != 6 || len(r.Events) != 0 || r.WatchId != w.ID() {
		t.Fatalf("response %v", r)
	}
	if _, ok := <-w.C(); ok {
		t.Fatal("channel not closed after compaction cancel")
	}
	w.Cancel() // idempotent
	// At the compacted revision itself the History still serves.
	ok := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 6})
	if got := len(events(t, ok, 5)); got != 5 {
		t.Fatal(got)
	}
}

// A watcher that never reads must not slow Notify or other watchers; when
// it reads again it gets every event, in order, from History.
func TestSlowWatcher(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.BufferSize = 4
	h := NewHub(f, 0, opts)
	defer h.Close()
	slow := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	fast := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})

	const n = 2000
	done := make(chan []*mvccpb.Event)
	go func() {
		var got []*mvccpb.Event
		for len(got) < n {
			r := <-fast.C()
			got = append(got, r.Events...)
		}
		done <- got
	}()
	// A Notify that waited for the stuck watcher would never return; the
	// bound only turns that hang into a failure.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i := 0; i < n; i++ {
			put(f, h, p("k"))
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the fast reader keep up
			}
		}
	}()
	select {
	case <-wrote:
	case <-time.After(30 * time.Second):
		t.Fatal("Notify blocked by a stuck watcher")
	}
	fastGot := <-done
	slowGot := events(t, slow, n)
	for i := 0; i < n; i++ {
		if fastGot[i].Kv.ModRevision != int64(i+1) || slowGot[i].Kv.ModRevision != int64(i+1) {
			t.Fatalf("event %d: fast at %d, slow at %d", i, fastGot[i].Kv.ModRevision, slowGot[i].Kv.ModRevision)
		}
	}
	// Back in the synced group: live events again.
	put(f, h, p("k"))
	if ev := events(t, slow, 1)[0]; ev.Kv.ModRevision != n+1 {
		t.Fatal(ev)
	}
}

// A slow watcher whose missing revisions get compacted is canceled with the
// compact revision, after the responses it had already received.
func TestSlowWatcherCompacted(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.BufferSize = 2
	h := NewHub(f, 0, opts)
	defer h.Close()
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	for i := 0; i < 10; i++ {
		put(f, h, p("k"))
	}
	f.compact(8)
	for i := 1; i <= 2; i++ {
		if r := recv(t, w); r.Events[0].Kv.ModRevision != int64(i) {
			t.Fatalf("response %d: %v", i, r)
		}
	}
	r := recv(t, w)
	if !r.Canceled || r.CompactRevision != 8 {
		t.Fatalf("want compaction cancel, got %v", r)
	}
	if _, ok := <-w.C(); ok {
		t.Fatal("channel open")
	}
}

// TestProgressNotify: a tick ending a quiet period sends a progress
// notification at the hub's revision to a progress_notify watcher; a
// period in which it got events sends none; a watcher without
// progress_notify gets nothing.
func TestProgressNotify(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("x"))
	w := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), ProgressNotify: true})
	quiet := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	w.ProgressTick()
	quiet.ProgressTick()
	r := recv(t, w)
	if len(r.Events) != 0 || r.Header.Revision != 1 || r.WatchId != w.ID() || r.Canceled {
		t.Fatalf("progress %v", r)
	}
	put(f, h, p("k"))
	if r = recv(t, w); len(r.Events) != 1 || r.Header.Revision != 2 {
		t.Fatalf("event %v", r)
	}
	w.ProgressTick() // the period had an event: no notification
	noResponse(t, w)
	put(f, h, p("y"))
	w.ProgressTick() // a quiet period again
	if r = recv(t, w); len(r.Events) != 0 || r.Header.Revision != 3 {
		t.Fatalf("progress %v, want one at revision 3", r)
	}
	if r = recv(t, quiet); len(r.Events) != 1 {
		t.Fatalf("quiet watcher: %v, want only its event", r)
	}
	noResponse(t, quiet)
}

func TestRequestProgress(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour})
	defer h.Close()
	put(f, h, p("k"))
	put(f, h, p("k"))
	a := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	if !a.RequestProgress() {
		t.Fatal("synced watcher refused progress")
	}
	if r := recv(t, a); len(r.Events) != 0 || r.Header.Revision != 2 {
		t.Fatalf("progress %v", r)
	}
	// b starts unsynced; its catch-up reads the history, which is held
	// until after the first ask, so b is still catching up then.
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // before h.Close, which waits for the catch-up
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	b := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	if b.RequestProgress() {
		t.Fatal("progress for a watcher catching up")
	}
	release()
	events(t, b, 2) // served by the kick, not the (hour-long) tick
	if !b.RequestProgress() {
		t.Fatal("caught-up watcher refused progress")
	}
	if r := recv(t, b); len(r.Events) != 0 || r.Header.Revision != 2 {
		t.Fatalf("progress %v", r)
	}
	future := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 10})
	if future.RequestProgress() {
		t.Fatal("progress before a future start revision")
	}
}

func TestCancelAndClose(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	a := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	b := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	put(f, h, p("k"))
	a.Cancel()
	a.Cancel()
	// Buffered responses stay readable, then the channel is closed.
	if r, ok := <-a.C(); !ok || len(r.Events) != 1 {
		t.Fatalf("buffered response lost: %v %v", r, ok)
	}
	if _, ok := <-a.C(); ok {
		t.Fatal("canceled channel open")
	}
	put(f, h, p("k")) // no panic sending to a canceled watcher
	events(t, b, 2)
	c := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	h.Close()
	h.Close()
	for _, w := range []*Watcher{b, c} {
		for range w.C() {
		}
	}
	if _, err := h.Watch(&pb.WatchCreateRequest{Key: []byte("k")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("watch after close: %v", err)
	}
	put(f, h, p("k"))
	b.Cancel()
}

func TestWatchIDs(t *testing.T) {
	h := NewHub(newFakeHistory(), 0, fastOpts())
	defer h.Close()
	a := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	b := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k")})
	c := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("k"), WatchId: 42})
	if a.ID() == b.ID() || c.ID() != 42 {
		t.Fatalf("ids %d %d %d", a.ID(), b.ID(), c.ID())
	}
	if _, err := h.Watch(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: -1}); err == nil {
		t.Fatal("negative start revision accepted")
	}
}

func TestFragments(t *testing.T) {
	var evs []*mvccpb.Event
	for i := 0; i < 10; i++ {
		evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: bytes.Repeat([]byte{'v'}, 100), ModRevision: 7}})
	}
	resp := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 7}, WatchId: 3, Events: evs}
	if got := Fragments(resp, 1<<20); len(got) != 1 || got[0] != resp {
		t.Fatal("small response fragmented")
	}
	parts := Fragments(resp, 350)
	var joined []*mvccpb.Event
	for i, pt := range parts {
		if size := proto.Size(pt); size > 350 {
			t.Fatalf("part %d is %d bytes", i, size)
		}
		if pt.Fragment != (i < len(parts)-1) || pt.WatchId != 3 || pt.Header.Revision != 7 {
			t.Fatalf("part %d: %v", i, pt)
		}
		joined = append(joined, pt.Events...)
	}
	if len(parts) < 4 || len(joined) != 10 {
		t.Fatalf("%d parts, %d events", len(parts), len(joined))
	}
	// An event over the limit travels alone.
	parts = Fragments(resp, 10)
	if len(parts) != 10 {
		t.Fatalf("%d parts", len(parts))
	}
	one := &pb.WatchResponse{Events: evs[:1]}
	if got := Fragments(one, 10); len(got) != 1 || got[0].Fragment {
		t.Fatal("single event fragmented")
	}
}

// TestFragmentsBoundary checks the split against the rule of etcd's
// sendFragments, measured part by part with proto.Size: a response is
// split unless it is below the limit, and a part takes events while it
// stays below the limit (an event alone may exceed it). The limits are
// exclusive, so a response of exactly maxBytes is split.
func TestFragmentsBoundary(t *testing.T) {
	reference := func(resp *pb.WatchResponse, max int) []int {
		if proto.Size(resp) < max || len(resp.Events) < 2 {
			return []int{len(resp.Events)}
		}
		var counts []int
		for i := 0; i < len(resp.Events); {
			cur := &pb.WatchResponse{Header: resp.Header, WatchId: resp.WatchId, Fragment: true}
			for i < len(resp.Events) {
				cur.Events = append(cur.Events, resp.Events[i])
				if len(cur.Events) > 1 && proto.Size(cur) >= max {
					cur.Events = cur.Events[:len(cur.Events)-1]
					break
				}
				i++
			}
			counts = append(counts, len(cur.Events))
		}
		return counts
	}
	rnd := rand.New(rand.NewSource(7))
	for c := 0; c < 3000; c++ {
		var evs []*mvccpb.Event
		for i := 0; i < 1+rnd.Intn(12); i++ {
			evs = append(evs, &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("key"), Value: make([]byte, rnd.Intn(300)), ModRevision: 1000}})
		}
		resp := &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: 1000, ClusterId: 1, MemberId: 2}, WatchId: 5, Events: evs}
		max := 50 + rnd.Intn(proto.Size(resp)+50)
		if c%3 == 0 {
			max = proto.Size(resp) // exactly at the limit: etcd splits
		}
		want := reference(resp, max)
		parts := Fragments(resp, max)
		var got []int
		for _, pt := range parts {
			got = append(got, len(pt.Events))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("case %d (%d events, %d bytes, limit %d): parts of %v events, etcd's rule gives %v", c, len(evs), proto.Size(resp), max, got, want)
		}
	}
}

// Many watchers, created concurrently at past, current and future
// revisions while one writer notifies, some reading slowly: each gets
// exactly the events of its range from its start revision, in order.
// writeRandom writes revs revisions of one to three puts or deletes of
// keys from a goroutine, sleeping now and then, and then a last revision
// that puts every key, so that readers know they are done. Wait on the
// group it returns.
func writeRandom(f *fakeHistory, h *Hub, keys []string, revs int) *sync.WaitGroup {
	var writer sync.WaitGroup
	writer.Add(1)
	go func() {
		defer writer.Done()
		rnd := rand.New(rand.NewSource(1))
		for i := 0; i < revs; i++ {
			var ops []op
			for j := 0; j < 1+rnd.Intn(3); j++ {
				k := keys[rnd.Intn(len(keys))]
				dup := false
				for _, o := range ops {
					dup = dup || o.key == k
				}
				if !dup {
					ops = append(ops, op{key: k, del: rnd.Intn(4) == 0})
				}
			}
			put(f, h, ops...)
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		var last []op
		for _, k := range keys {
			last = append(last, p(k))
		}
		put(f, h, last...)
	}()
	return &writer
}

// matchHistory checks that got holds exactly the events History has on
// [key, end) from revision start.
func matchHistory(f *fakeHistory, start int64, key, end []byte, got []*mvccpb.Event) error {
	var want []*mvccpb.Event
	_ = f.Events(start, key, end, func(ev *mvccpb.Event) bool {
		want = append(want, ev)
		return true
	})
	if len(got) != len(want) {
		return fmt.Errorf("from %d: %d events, history has %d", start, len(got), len(want))
	}
	for i := range got {
		if got[i].Kv.ModRevision != want[i].Kv.ModRevision || !bytes.Equal(got[i].Kv.Key, want[i].Kv.Key) || got[i].Type != want[i].Type {
			return fmt.Errorf("event %d: got %s want %s", i, desc(got[i:i+1]), desc(want[i:i+1]))
		}
	}
	return nil
}

func TestConcurrentNoGapNoDup(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.BufferSize = 8
	opts.MaxRevsPerBatch = 7
	h := NewHub(f, 0, opts)
	defer h.Close()
	keys := []string{"a", "b", "c", "d", "e"}
	const revs = 1500
	writer := writeRandom(f, h, keys, revs)
	const final = revs + 1

	var readers sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 40; g++ {
		readers.Add(1)
		go func(g int) {
			defer readers.Done()
			rnd := rand.New(rand.NewSource(int64(g)))
			time.Sleep(time.Duration(rnd.Intn(20)) * time.Millisecond)
			req := &pb.WatchCreateRequest{Key: []byte(keys[g%len(keys)])}
			if g%2 == 0 {
				req.RangeEnd = []byte("d")
				req.Key = []byte("b")
			}
			switch g % 3 {
			case 0:
				req.StartRevision = 1 + rnd.Int63n(h.Rev()+1)
			case 1:
				req.StartRevision = min(h.Rev()+1+rnd.Int63n(50), final)
			}
			w, err := h.Watch(req)
			if err != nil {
				errs <- err
				return
			}
			start := req.StartRevision
			if start == 0 {
				// The created revision is not returned atomically; the first
				// event tells where live delivery began, History says what
				// must follow.
				start = -1
			}
			var got []*mvccpb.Event
			// A stall, not slowness, fails the test: on a loaded machine
			// the race-built writer and 40 watchers can take far longer
			// than usual, but each waits at most stall for the next
			// response.
			const stall = 10 * time.Second
			timer := time.NewTimer(stall)
			defer timer.Stop()
			for {
				select {
				case r, ok := <-w.C():
					if !ok {
						errs <- fmt.Errorf("watcher %d closed", g)
						return
					}
					got = append(got, r.Events...)
					timer.Reset(stall)
					if g%4 == 0 {
						time.Sleep(100 * time.Microsecond) // slow reader
					}
				case <-timer.C:
					errs <- fmt.Errorf("watcher %d: no response for %v, with %d events", g, stall, len(got))
					return
				}
				if len(got) > 0 && got[len(got)-1].Kv.ModRevision == final {
					break
				}
			}
			if start == -1 {
				start = got[0].Kv.ModRevision
			}
			if err := matchHistory(f, start, req.Key, req.RangeEnd, got); err != nil {
				errs <- fmt.Errorf("watcher %d: %w", g, err)
				return
			}
			w.Cancel()
		}(g)
	}
	readers.Wait()
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Revisions the hub is only told about with Advance (written while no one
// watched, or skipped by a snapshot install) reach a watcher that expects
// them from History, once and in order; watchers waiting for later
// revisions are not disturbed.
func TestAdvanceCatchesUpFromHistory(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	early := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a")})
	later := mustWatch(t, h, &pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 10})
	f.write(p("a"))
	f.write(p("b"))
	f.write(d("a"))
	h.Advance(3)
	if h.Rev() != 3 {
		t.Fatalf("hub revision %d after Advance(3)", h.Rev())
	}
	evs := events(t, early, 2)
	if evs[0].Kv.ModRevision != 1 || evs[0].Type != mvccpb.Event_PUT || evs[1].Kv.ModRevision != 3 || evs[1].Type != mvccpb.Event_DELETE {
		t.Fatalf("caught-up events: %s", desc(evs))
	}
	// Live again: the next revision comes through Notify, once.
	rev, live := f.write(p("a"))
	h.Notify(rev, live)
	if evs := events(t, early, 1); evs[0].Kv.ModRevision != 4 {
		t.Fatalf("live event after catch-up: %s", desc(evs))
	}
	noResponse(t, early)
	noResponse(t, later)
}
