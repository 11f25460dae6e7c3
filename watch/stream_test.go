package watch

import (
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func streamWatch(t *testing.T, s *Stream, id int64, req *pb.WatchCreateRequest) *Watcher {
	t.Helper()
	w, err := s.Watch(id, req, nil)
	if err != nil {
		t.Fatalf("stream watch %d: %v", id, err)
	}
	return w
}

// take waits for the stream's next responses and returns them.
func take(t *testing.T, s *Stream) []Out {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		out, err := s.Take(nil)
		if err != nil {
			t.Fatalf("take: %v", err)
		}
		if len(out) > 0 {
			return out
		}
		select {
		case <-s.Ready():
		case <-deadline:
			t.Fatal("stream: no response")
		}
	}
}

// takeAll takes until n responses arrived.
func takeAll(t *testing.T, s *Stream, n int) []Out {
	t.Helper()
	var out []Out
	for len(out) < n {
		out = append(out, take(t, s)...)
	}
	if len(out) != n {
		t.Fatalf("%d responses, want %d: %v", len(out), n, out)
	}
	return out
}

func TestStreamOrder(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	put(f, h, p("a"))
	s := h.NewStream()
	a := streamWatch(t, s, 0, &pb.WatchCreateRequest{Key: []byte("a")})
	b := streamWatch(t, s, 7, &pb.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c"), StartRevision: 1, Fragment: true})
	if a.ID() != 0 || b.ID() != 7 {
		t.Fatalf("ids %d %d, want the caller's", a.ID(), b.ID())
	}
	put(f, h, p("b"))
	put(f, h, p("a"))
	var out []Out
	got := map[int64][]int64{}
	for len(got[0]) < 1 || len(got[7]) < 3 {
		more := take(t, s)
		out = append(out, more...)
		for _, o := range more {
			for _, ev := range o.Resp.Events {
				got[o.Resp.WatchId] = append(got[o.Resp.WatchId], ev.Kv.ModRevision)
			}
		}
	}
	// Created responses first, each at the hub's revision when made.
	for i, id := range []int64{0, 7} {
		r := out[i].Resp
		if !r.Created || r.WatchId != id || r.Header.Revision != 1 || len(r.Events) != 0 {
			t.Fatalf("response %d: %v, want the created response of %d", i, r, id)
		}
	}
	// Then a's live events, and b's catch-up and live ones, each
	// watcher's in order; only b's are marked for fragmenting.
	for _, o := range out[2:] {
		if o.Fragment != (o.Resp.WatchId == 7) {
			t.Fatalf("fragment %v for watcher %d", o.Fragment, o.Resp.WatchId)
		}
	}
	if fmt.Sprint(got) != "map[0:[3] 7:[1 2 3]]" {
		t.Fatalf("events by watcher %v", got)
	}
}

// A stream whose reader does not read holds at most BufferSize of the
// hub's responses, however many watchers it has; read on, each watcher
// gets every revision once, in order.
func TestStreamSlowReaderIsBounded(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.BufferSize = 8
	h := NewHub(f, 0, opts)
	defer h.Close()
	s := h.NewStream()
	const watchers, revs = 50, 300
	for i := range watchers {
		// Created responses wait for room too: read each.
		streamWatch(t, s, int64(i), &pb.WatchCreateRequest{Key: []byte("k")})
		if r := take(t, s)[0].Resp; !r.Created || r.WatchId != int64(i) {
			t.Fatalf("created response %v", r)
		}
	}
	for range revs {
		put(f, h, p("k"))
	}
	time.Sleep(50 * time.Millisecond) // ten sync ticks
	if n := s.queued(); n > opts.BufferSize {
		t.Fatalf("%d responses queued for a stream not read, want at most %d", n, opts.BufferSize)
	}
	next := make([]int64, watchers)
	for i := range next {
		next[i] = 1
	}
	for done := 0; done < watchers; {
		for _, o := range take(t, s) {
			id := o.Resp.WatchId
			for _, ev := range o.Resp.Events {
				if ev.Kv.ModRevision != next[id] {
					t.Fatalf("watcher %d: event at %d, want %d", id, ev.Kv.ModRevision, next[id])
				}
				next[id]++
				if next[id] == revs+1 {
					done++
				}
			}
		}
		if n := s.queued(); n > opts.BufferSize {
			t.Fatalf("%d responses queued, want at most %d", n, opts.BufferSize)
		}
	}
	// All synced again: the next revision is live for each.
	put(f, h, p("k"))
	if out := takeAll(t, s, watchers); out[0].Resp.Events[0].Kv.ModRevision != revs+1 {
		t.Fatalf("live event %v", out[0].Resp)
	}
}

// Cancel queues the canceled response after the watcher's queued events,
// which are kept (a progress response queued after them may speak for
// them), and nothing of the watcher follows it.
func TestStreamCancel(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	s := h.NewStream()
	a := streamWatch(t, s, 1, &pb.WatchCreateRequest{Key: []byte("k")})
	streamWatch(t, s, 2, &pb.WatchCreateRequest{Key: []byte("k")})
	put(f, h, p("k"))
	if !s.RequestProgress() {
		t.Fatal("progress refused")
	}
	put(f, h, p("k"))
	if err := s.Cancel(a, &pb.WatchResponse{WatchId: 1, Canceled: true}, nil); err != nil {
		t.Fatal(err)
	}
	put(f, h, p("k"))
	trace := map[int64][]string{}
	for _, o := range takeAll(t, s, 9) {
		r := o.Resp
		var what string
		switch {
		case r.Created:
			what = "created"
		case r.Canceled:
			what = "canceled"
		case r.WatchId == InvalidWatchID:
			what = fmt.Sprint("progress@", r.Header.Revision)
		default:
			what = fmt.Sprint("event@", r.Events[0].Kv.ModRevision)
		}
		trace[r.WatchId] = append(trace[r.WatchId], what)
		if r.WatchId == InvalidWatchID && len(trace[1]) != 2 {
			t.Fatalf("progress response after %v of watcher 1, want its event at 1 ahead", trace[1])
		}
	}
	want := "map[-1:[progress@1] 1:[created event@1 event@2 canceled] 2:[created event@1 event@2 event@3]]"
	if fmt.Sprint(trace) != want {
		t.Fatalf("responses by watcher\n%v\nwant\n%v", trace, want)
	}
	// A second cancel of a stopped watcher only queues its response.
	if err := s.Cancel(a, &pb.WatchResponse{WatchId: 1, Canceled: true}, nil); err != nil {
		t.Fatal(err)
	}
	if out := take(t, s); len(out) != 1 || !out[0].Resp.Canceled {
		t.Fatalf("second cancel: %v", out)
	}
}

// The caller's responses wait while the queue is full, and give up when
// done is closed; Take makes room.
func TestStreamControlWaitsForRoom(t *testing.T) {
	h := NewHub(newFakeHistory(), 0, Options{BufferSize: 2})
	defer h.Close()
	s := h.NewStream()
	limit := 2 + controlRoom
	for i := range limit {
		if err := s.Queue(&pb.WatchResponse{WatchId: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	queued := make(chan error, 1)
	go func() { queued <- s.Queue(&pb.WatchResponse{WatchId: int64(limit)}, nil) }()
	select {
	case err := <-queued:
		t.Fatalf("queued past the limit: %v", err)
	case <-time.After(30 * time.Millisecond):
	}
	takeAll(t, s, limit)
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	if out := take(t, s); out[0].Resp.WatchId != int64(limit) {
		t.Fatalf("after room: %v", out[0].Resp)
	}

	for i := range limit {
		if err := s.Queue(&pb.WatchResponse{WatchId: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() { queued <- s.Queue(&pb.WatchResponse{}, done) }()
	close(done)
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Fatalf("queue after done: %v", err)
	}
	// Closing the stream also releases a waiting call.
	go func() {
		_, err := s.Watch(99, &pb.WatchCreateRequest{Key: []byte("k")}, nil)
		queued <- err
	}()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Fatalf("watch on a closed stream: %v", err)
	}
	if _, err := s.Take(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("take on a closed stream: %v", err)
	}
}

// A stream's watcher that falls behind a compaction gets the compaction
// cancel; its id stays the caller's until the caller cancels it.
func TestStreamCompacted(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	defer h.Close()
	for range 5 {
		put(f, h, p("k"))
	}
	f.compact(4)
	s := h.NewStream()
	w := streamWatch(t, s, 3, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2})
	out := takeAll(t, s, 2)
	if r := out[1].Resp; !r.Canceled || r.CompactRevision != 4 || r.WatchId != 3 {
		t.Fatalf("compaction cancel %v", r)
	}
	if err := s.Cancel(w, &pb.WatchResponse{WatchId: 3, Canceled: true}, nil); err != nil {
		t.Fatal(err)
	}
	if r := take(t, s)[0].Resp; !r.Canceled || r.CompactRevision != 0 {
		t.Fatalf("cancel after the compaction cancel %v", r)
	}
}

// RequestProgress queues one marker after every event up to its revision,
// and none while a watcher catches up or waits for a start revision
// still ahead.
func TestStreamRequestProgress(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, Options{SyncInterval: time.Hour})
	defer h.Close()
	s := h.NewStream()
	if s.RequestProgress() {
		t.Fatal("progress on a stream without watchers")
	}
	put(f, h, p("k"))
	streamWatch(t, s, 0, &pb.WatchCreateRequest{Key: []byte("k")})
	put(f, h, p("k"))
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release()
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	streamWatch(t, s, 1, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	if s.RequestProgress() {
		t.Fatal("progress with a watcher catching up")
	}
	release()
	out := takeAll(t, s, 4) // two created, 0's event, 1's catch-up
	if r := out[3].Resp; r.WatchId != 1 || len(r.Events) != 2 {
		t.Fatalf("catch-up %v", r)
	}
	put(f, h, p("k"))
	if !s.RequestProgress() {
		t.Fatal("progress refused with every watcher synced")
	}
	out = takeAll(t, s, 3)
	if r := out[2].Resp; r.WatchId != InvalidWatchID || r.Header.Revision != 3 || len(r.Events) != 0 {
		t.Fatalf("marker %v after %v %v", r, out[0].Resp, out[1].Resp)
	}
	streamWatch(t, s, 2, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 10})
	if s.RequestProgress() {
		t.Fatal("progress before a future start revision")
	}
}

func TestStreamHubClose(t *testing.T) {
	f := newFakeHistory()
	h := NewHub(f, 0, fastOpts())
	s := h.NewStream()
	w := streamWatch(t, s, 0, &pb.WatchCreateRequest{Key: []byte("k")})
	h.Close()
	if _, err := s.Take(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("take after the hub closed: %v", err)
	}
	put(f, h, p("k")) // no panic queueing to a closed stream
	if err := s.Cancel(w, &pb.WatchResponse{}, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("cancel after the hub closed: %v", err)
	}
	s.Close()
	if _, err := h.NewStream().Take(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("stream of a closed hub: %v", err)
	}
}

// Many watchers over a few streams, created at random revisions while a
// writer runs, with readers of different speeds: every watcher gets
// exactly History's events from its start.
func TestStreamConcurrentNoGapNoDup(t *testing.T) {
	f := newFakeHistory()
	opts := fastOpts()
	opts.BufferSize = 8
	opts.MaxRevsPerBatch = 7
	h := NewHub(f, 0, opts)
	defer h.Close()
	keys := []string{"a", "b", "c", "d", "e"}
	const revs, streams, perStream = 1500, 4, 10
	writer := writeRandom(f, h, keys, revs)
	const final = revs + 1

	errs := make(chan error, streams*perStream+streams)
	var readers sync.WaitGroup
	for si := range streams {
		readers.Add(1)
		go func(si int) {
			defer readers.Done()
			s := h.NewStream()
			defer s.Close()
			rnd := rand.New(rand.NewSource(int64(si)))
			reqs := make([]*pb.WatchCreateRequest, perStream)
			for i := range reqs {
				req := &pb.WatchCreateRequest{Key: []byte(keys[i%len(keys)])}
				if i%2 == 0 {
					req.Key, req.RangeEnd = []byte("b"), []byte("d")
				}
				switch i % 3 {
				case 0:
					req.StartRevision = 1 + rnd.Int63n(h.Rev()+1)
				case 1:
					req.StartRevision = min(h.Rev()+1+rnd.Int63n(50), final)
				}
				reqs[i] = req
				if _, err := s.Watch(int64(i), req, nil); err != nil {
					errs <- err
					return
				}
				time.Sleep(time.Duration(rnd.Intn(3)) * time.Millisecond)
			}
			start := make([]int64, perStream)
			got := make([][]*mvccpb.Event, perStream)
			finished := 0
			const stall = 10 * time.Second
			last := time.Now()
			for finished < perStream {
				out, err := s.Take(nil)
				if err != nil {
					errs <- err
					return
				}
				if len(out) == 0 {
					select {
					case <-s.Ready():
					case <-time.After(stall):
					}
					if time.Since(last) >= stall {
						errs <- fmt.Errorf("stream %d: no response for %v", si, stall)
						return
					}
					continue
				}
				last = time.Now()
				for _, o := range out {
					r, i := o.Resp, o.Resp.WatchId
					if r.Created {
						start[i] = reqs[i].StartRevision
						if start[i] == 0 {
							start[i] = r.Header.Revision + 1
						}
						continue
					}
					if len(got[i]) > 0 && got[i][len(got[i])-1].Kv.ModRevision == final {
						errs <- fmt.Errorf("stream %d watcher %d: events after the last revision", si, i)
						return
					}
					got[i] = append(got[i], r.Events...)
					if len(got[i]) > 0 && got[i][len(got[i])-1].Kv.ModRevision == final {
						finished++
					}
				}
				if si%2 == 0 {
					time.Sleep(200 * time.Microsecond) // slow reader
				}
			}
			for i := range got {
				if err := matchHistory(f, start[i], reqs[i].Key, reqs[i].RangeEnd, got[i]); err != nil {
					errs <- fmt.Errorf("stream %d watcher %d: %w", si, i, err)
				}
			}
		}(si)
	}
	readers.Wait()
	writer.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
