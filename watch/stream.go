package watch

import (
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// controlRoom is how many responses a stream's caller may queue beyond
// BufferSize (created, canceled, refusals): the hub's own responses never
// take it, so a full queue of events does not hold up a create.
const controlRoom = 16

// Stream is one etcd watch stream's worth of watchers sharing one queue:
// every response of its watchers, and the caller's created and canceled
// responses, in the order they were made. A single reader takes them
// (Take) and sends them on. It replaces a channel and a forwarding
// goroutine per watcher: a watcher costs its state alone, and a stream
// whose client does not read holds at most BufferSize of the hub's
// responses and controlRoom of the caller's (plus the catch-up bound),
// however many watchers it has.
//
// Watchers of a stream are created and canceled through it, by one
// goroutine (the stream's request loop); their ids are the caller's.
type Stream struct {
	hub   *Hub
	ready chan struct{} // capacity 1: something was queued, or the stream closed
	room  chan struct{} // capacity 1: the reader took what was queued

	// guarded by hub.mu
	watchers map[*Watcher]struct{} // not done
	// batchBytes is the size of the last catch-up response queued (see
	// Watcher.backlogTooBig).
	batchBytes int

	// mu guards the queue, so that the reader does not contend for the
	// hub's lock; taken after hub.mu.
	mu     sync.Mutex
	q      []queued
	closed bool
	// behind: a watcher found the queue full. Take wakes the sync loop
	// then, rather than leave the watcher to the next SyncInterval.
	behind bool
}

// queued is one response in a stream's queue. w is the watcher whose
// events or notification it carries, nil for the caller's responses.
type queued struct {
	Out
	w *Watcher
}

// Out is a response taken from a Stream. Its header holds the revision
// only (the reader fills in the rest); its events are shared with other
// watchers and must not be modified.
type Out struct {
	Resp *pb.WatchResponse
	// Fragment is set for the responses of a watcher created with
	// fragment: the reader splits them with Fragments.
	Fragment bool
}

// NewStream returns an empty stream. On a closed hub it is closed.
func (h *Hub) NewStream() *Stream {
	s := &Stream{
		hub:      h,
		ready:    make(chan struct{}, 1),
		room:     make(chan struct{}, 1),
		watchers: make(map[*Watcher]struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.closed = true
	} else {
		h.streams[s] = struct{}{}
	}
	return s
}

// queued returns the length of the queue.
func (s *Stream) queued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q)
}

// offer queues a response of w if the queue holds fewer than limit;
// otherwise it notes that a watcher is behind.
func (s *Stream) offer(w *Watcher, resp *pb.WatchResponse, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) >= limit {
		s.behind = true
		return false
	}
	s.pushLocked(w, resp)
	return true
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push queues one of the caller's responses. h.mu held, to order it with
// the hub's.
func (s *Stream) push(resp *pb.WatchResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushLocked(nil, resp)
}

// pushLocked queues a response of w (nil: the caller's); a closed
// stream drops it. s.mu held.
func (s *Stream) pushLocked(w *Watcher, resp *pb.WatchResponse) {
	if s.closed {
		return
	}
	s.q = append(s.q, queued{Out: Out{Resp: resp, Fragment: w != nil && w.fragment}, w: w})
	signal(s.ready)
}

// ended forgets a watcher that is done. h.mu held.
func (s *Stream) ended(w *Watcher) { delete(s.watchers, w) }

// shut marks the stream closed and drops its queue.
func (s *Stream) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	clear(s.q)
	s.q = nil
	signal(s.ready)
	signal(s.room)
}

// control runs fn under the hub's lock once the queue has room for one
// of the caller's responses. It fails with ErrClosed once the stream is
// closed, or when done is closed first.
func (s *Stream) control(done <-chan struct{}, fn func() error) error {
	h := s.hub
	for {
		h.mu.Lock()
		s.mu.Lock()
		closed, n := s.closed, len(s.q)
		s.mu.Unlock()
		if closed {
			h.mu.Unlock()
			return ErrClosed
		}
		// The reader only shortens the queue, and the hub adds nothing
		// while h.mu is held: the room seen is there for fn.
		if n < h.opts.BufferSize+controlRoom {
			err := fn()
			h.mu.Unlock()
			return err
		}
		h.mu.Unlock()
		select {
		case <-s.room:
		case <-done:
			return ErrClosed
		}
	}
}

// Watch creates a watcher on the stream with watch id id, as Hub.Watch
// does (req.WatchId is ignored), and queues its created response (header
// revision = the hub's revision, which a watcher from revision 0 gets
// only events above) ahead of any of its events. It waits while the
// queue is full, until done is closed.
func (s *Stream) Watch(id int64, req *pb.WatchCreateRequest, done <-chan struct{}) (*Watcher, error) {
	h := s.hub
	w, err := h.newWatcher(req)
	if err != nil {
		return nil, err
	}
	w.id = id
	w.s = s
	err = s.control(done, func() error {
		// control found the stream open, so the hub is too: Close shuts
		// every stream under the same lock.
		h.register(w)
		s.watchers[w] = struct{}{}
		s.push(&pb.WatchResponse{
			Header:  &pb.ResponseHeader{Revision: w.createdRev},
			WatchId: id,
			Created: true,
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Queue queues one of the caller's responses, such as a refused create.
// It waits while the queue is full, until done is closed.
func (s *Stream) Queue(resp *pb.WatchResponse, done <-chan struct{}) error {
	return s.control(done, func() error {
		s.push(resp)
		return nil
	})
}

// Cancel stops w, a watcher of this stream, and queues resp, its
// canceled response, after what w has queued already: nothing of w
// follows it. What is queued is kept, as etcd sends what its stream
// buffer holds: a stream-wide progress response already queued may
// speak for those events. It waits while the queue is full, until done
// is closed.
func (s *Stream) Cancel(w *Watcher, resp *pb.WatchResponse, done <-chan struct{}) error {
	h := s.hub
	return s.control(done, func() error {
		h.finish(w)
		s.push(resp)
		return nil
	})
}

// Ready is signalled when responses were queued or the stream closed:
// the reader waits on it between calls to Take.
func (s *Stream) Ready() <-chan struct{} { return s.ready }

// Take appends every queued response to dst, in order, and returns it.
// It fails with ErrClosed once the stream or the hub is closed.
func (s *Stream) Take(dst []Out) ([]Out, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return dst, ErrClosed
	}
	for _, it := range s.q {
		dst = append(dst, it.Out)
	}
	took := len(s.q) > 0
	clear(s.q)
	s.q = s.q[:0]
	wake := took && s.behind
	if wake {
		s.behind = false
	}
	s.mu.Unlock()
	if wake {
		s.hub.wake()
	}
	if took {
		signal(s.room)
	}
	return dst, nil
}

// ProgressTick ends a period of progress notifications for every watcher
// of the stream (see Watcher.ProgressTick).
func (s *Stream) ProgressTick() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range s.watchers {
		h.tick(w)
	}
}

// RequestProgress is etcd's progress request for a whole stream: if every
// watcher of the stream is synced, and none waits for a start revision
// still ahead, it queues one progress response with watch id
// InvalidWatchID at the hub's revision. Every event up to that revision
// of every watcher is queued before it, since Notify queues a revision's
// events to all synced watchers at once. Like etcd it reports false and
// queues nothing otherwise, or when the stream has no watcher or no room.
func (s *Stream) RequestProgress() bool {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(s.watchers) == 0 {
		return false
	}
	for w := range s.watchers {
		if w.state != stateSynced || h.rev < w.startRev {
			return false
		}
	}
	return s.offer(nil, &pb.WatchResponse{Header: &pb.ResponseHeader{Revision: h.rev}, WatchId: InvalidWatchID}, h.opts.BufferSize)
}

// Close cancels every watcher of the stream and drops what is queued.
// It is idempotent.
func (s *Stream) Close() {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range s.watchers {
		h.finish(w)
	}
	delete(h.streams, s)
	s.shut()
}
