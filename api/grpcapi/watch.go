package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"

	"github.com/metcd/metcd/watch"
)

// outBuffer is the length of a stream's send queue (etcd's
// ctrlStreamBufLen). Forwarders and the request loop block on it while
// the client is slow; the hub never does (see package watch).
const outBuffer = 16

// watchServer is etcd's Watch service over the backend's watch hub.
type watchServer struct {
	pb.UnsafeWatchServer
	b                Backend
	fragmentBytes    int
	progressInterval time.Duration // Options.ProgressNotifyInterval
}

// watchStream is one Watch call. Goroutines:
//
//   - the handler's, the only one that sends on the gRPC stream: it sends
//     what arrives on out, in order;
//   - recvLoop, reading requests: creates, cancels, progress requests;
//   - one forwarder per watcher, relabelling what the hub puts on the
//     watcher's channel (the hub's watch ids are its own; the client sees
//     the stream's) and queueing it on out.
//
// A created response is queued before its watcher's forwarder starts, so
// it precedes the watcher's events; a canceled watcher's queued responses
// are dropped at send time, so none follows its canceled response.
type watchStream struct {
	b             Backend
	fragmentBytes int

	out  chan outItem
	done chan struct{} // closed when the handler returns
	wg   sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	watchers map[int64]*streamWatcher // by stream id; only recvLoop adds and removes
	nextID   int64                    // next automatic id (recvLoop only)
	round    *progressRound           // the stream-wide progress request in flight
}

// streamWatcher is one watcher of a stream.
type streamWatcher struct {
	id       int64 // as the client knows it
	w        *watch.Watcher
	fragment bool
	canceled atomic.Bool // by the client: drop what is still queued
	ended    bool        // guarded by watchStream.mu: its channel is drained
}

// outItem is a unit of the send queue: the parts of a fragmented response
// must go out back to back (clientv3 reassembles them assuming so).
type outItem struct {
	sw    *streamWatcher // nil for control responses, never dropped
	resps []*pb.WatchResponse
}

// progressRound is a stream-wide progress request: the hub put a marker at
// revision rev in each waiting watcher's channel; the forwarder that
// passes the last marker (or sees the last waiting watcher end) sends the
// single response with watch id -1. Forwarders that passed their marker
// wait for done, so that no event above rev is queued before that
// response: a client would otherwise move its resume revision backwards.
type progressRound struct {
	rev     int64
	waiting map[*streamWatcher]struct{}
	again   bool // another request arrived meanwhile: start a round after this one
	done    chan struct{}
}

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := &watchStream{
		b:             s.b,
		fragmentBytes: s.fragmentBytes,
		out:           make(chan outItem, outBuffer),
		done:          make(chan struct{}),
		watchers:      make(map[int64]*streamWatcher),
	}
	defer ws.close()

	// The stream's clock of progress notifications, as etcd's sendLoop
	// keeps it: the period plus up to a tenth more at random.
	progress := time.NewTicker(s.progressInterval + time.Duration(rand.Int64N(int64(s.progressInterval/10)+1)))
	defer progress.Stop()

	ctx := stream.Context()
	recvErr := make(chan error, 1)
	go func() {
		// On EOF the client only half-closed: keep sending, as etcd does.
		if err := ws.recvLoop(stream); err != nil {
			recvErr <- err
		}
	}()
	for {
		select {
		case it := <-ws.out:
			if it.sw != nil && it.sw.canceled.Load() {
				continue
			}
			for _, resp := range it.resps {
				if err := stream.Send(resp); err != nil {
					if ctx.Err() != nil {
						return watchStreamError(ctx)
					}
					return err
				}
			}
		case <-progress.C:
			// Each watcher's notification goes through its channel and
			// forwarder, after the events it already has.
			for _, sw := range ws.snapshot() {
				sw.w.ProgressTick()
			}
		case err := <-recvErr:
			if ctx.Err() != nil {
				return watchStreamError(ctx)
			}
			if errors.Is(err, context.Canceled) {
				return rpctypes.ErrGRPCWatchCanceled
			}
			return toGRPCError(err)
		case <-ctx.Done():
			return watchStreamError(ctx)
		}
	}
}

// watchStreamError is etcd's answer when a watch stream's context ends: a
// plain cancel is ErrGRPCWatchCanceled, a server reason (no leader) itself.
func watchStreamError(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return rpctypes.ErrGRPCWatchCanceled
	}
	return streamError(ctx)
}

// snapshot returns the stream's watchers at this moment.
func (ws *watchStream) snapshot() []*streamWatcher {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	all := make([]*streamWatcher, 0, len(ws.watchers))
	for _, sw := range ws.watchers {
		all = append(all, sw)
	}
	return all
}

// close cancels every watcher and waits for the forwarders. recvLoop may
// outlive it (it is blocked in Recv until the call ends) but adds nothing
// once closed is set.
func (ws *watchStream) close() {
	ws.mu.Lock()
	ws.closed = true
	ws.mu.Unlock()
	all := ws.snapshot() // no watcher is added once closed is set
	close(ws.done)
	for _, sw := range all {
		sw.w.Cancel()
	}
	ws.wg.Wait()
}

// enqueue queues it for sending; false once the stream is closing.
func (ws *watchStream) enqueue(it outItem) bool {
	select {
	case ws.out <- it:
		return true
	case <-ws.done:
		return false
	}
}

// header returns a response header from the backend's, at revision rev
// (rev < 0: the backend's revision). It is a copy: the backend may share
// its headers.
func (ws *watchStream) header(rev int64) *pb.ResponseHeader {
	h := ws.b.Header()
	if rev < 0 {
		rev = h.GetRevision()
	}
	return &pb.ResponseHeader{
		ClusterId: h.GetClusterId(),
		MemberId:  h.GetMemberId(),
		RaftTerm:  h.GetRaftTerm(),
		Revision:  rev,
	}
}

func (ws *watchStream) recvLoop(stream pb.Watch_WatchServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case req.GetCreateRequest() != nil:
			ws.create(req.GetCreateRequest())
		case req.GetCancelRequest() != nil:
			ws.cancel(req.GetCancelRequest().GetWatchId())
		case req.GetProgressRequest() != nil:
			ws.startRound()
		default:
			// Unknown requests are ignored, as etcd does, rather than
			// ending every watcher of the stream.
		}
		select {
		case <-ws.done:
			return nil
		default:
		}
	}
}

// create handles a WatchCreateRequest as etcd does. Requests etcd refuses
// get a created response with canceled set, watch id -1 and the reason.
func (ws *watchStream) create(creq *pb.WatchCreateRequest) {
	refuse := func(reason string) {
		ws.enqueue(outItem{resps: []*pb.WatchResponse{{
			Header:       ws.header(-1),
			WatchId:      watch.InvalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: reason,
		}}})
	}
	key := creq.GetKey()
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as etcd
	}
	end := creq.GetRangeEnd()
	if creq.GetStartRevision() < 0 {
		refuse(rpctypes.ErrCompacted.Error()) // sic: etcd's reason
		return
	}
	if len(end) > 0 && !(len(end) == 1 && end[0] == 0) && bytes.Compare(key, end) >= 0 {
		refuse(etcdmvcc.ErrEmptyWatcherRange.Error())
		return
	}

	ws.mu.Lock()
	id := creq.GetWatchId()
	if id == 0 { // clientv3.AutoWatchID: the lowest free id from nextID, as etcd
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if ws.watchers[id] != nil {
		ws.mu.Unlock()
		refuse(etcdmvcc.ErrWatcherDuplicateID.Error())
		return
	}
	ws.mu.Unlock()

	// The hub picks its own id (WatchId 0): responses are relabelled.
	w, err := ws.b.Watch(&pb.WatchCreateRequest{
		Key:            key,
		RangeEnd:       end,
		StartRevision:  creq.GetStartRevision(),
		ProgressNotify: creq.GetProgressNotify(),
		Filters:        creq.GetFilters(),
		PrevKv:         creq.GetPrevKv(),
		Fragment:       creq.GetFragment(),
	})
	if err != nil {
		refuse(err.Error())
		return
	}
	sw := &streamWatcher{id: id, w: w, fragment: creq.GetFragment()}
	// The created header is the hub's revision when the watcher was made,
	// so that a watcher from revision 0 gets only events above it, as in
	// etcd. The member's committed revision can be ahead of the hub's
	// (the hub hears of a batch after its commit), and a header read from
	// it could claim revisions whose events were still to come.
	created := &pb.WatchResponse{Header: ws.header(w.CreatedRev()), WatchId: id, Created: true}

	ws.mu.Lock()
	if ws.closed {
		ws.mu.Unlock()
		w.Cancel()
		return
	}
	ws.watchers[id] = sw
	ws.wg.Add(1) // under mu, so never after close's Wait began
	ws.mu.Unlock()
	if !ws.enqueue(outItem{resps: []*pb.WatchResponse{created}}) {
		ws.wg.Done() // closing: close cancels w
		return
	}
	go ws.forward(sw)
}

// cancel handles a WatchCancelRequest: unknown ids get no answer, as in
// etcd. A watcher the hub ended (compaction) keeps its id until then.
func (ws *watchStream) cancel(id int64) {
	ws.mu.Lock()
	sw := ws.watchers[id]
	if sw == nil {
		ws.mu.Unlock()
		return
	}
	delete(ws.watchers, id)
	sw.canceled.Store(true)
	ws.mu.Unlock()
	sw.w.Cancel()
	ws.enqueue(outItem{resps: []*pb.WatchResponse{{Header: ws.header(-1), WatchId: id, Canceled: true}}})
}

// forward relays one watcher's responses to the send queue until its
// channel closes (cancel, compaction, hub closed) or the stream ends.
func (ws *watchStream) forward(sw *streamWatcher) {
	defer ws.wg.Done()
	for {
		var resp *pb.WatchResponse
		var ok bool
		select {
		case resp, ok = <-sw.w.C():
		case <-ws.done:
			return
		}
		if !ok {
			ws.ended(sw)
			return
		}
		if resp.GetWatchId() == watch.InvalidWatchID {
			if !ws.marker(sw) {
				return
			}
			continue
		}
		if sw.canceled.Load() {
			continue
		}
		out := &pb.WatchResponse{
			Header:          ws.header(resp.GetHeader().GetRevision()),
			WatchId:         sw.id,
			Canceled:        resp.GetCanceled(),
			CompactRevision: resp.GetCompactRevision(),
			CancelReason:    resp.GetCancelReason(),
			Events:          resp.GetEvents(),
		}
		resps := []*pb.WatchResponse{out}
		if sw.fragment {
			resps = watch.Fragments(out, ws.fragmentBytes)
		}
		if !ws.enqueue(outItem{sw: sw, resps: resps}) {
			return
		}
	}
}

// startRound starts a stream-wide progress round (a WatchProgressRequest).
// As in etcd there is no answer when the stream has no watcher or when the
// hub refuses (a watcher is catching up); a request that arrives during a
// round starts another one when it ends, whose revision covers it.
func (ws *watchStream) startRound() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.closed {
		return
	}
	if ws.round != nil {
		ws.round.again = true
		return
	}
	waiting := make(map[*streamWatcher]struct{}, len(ws.watchers))
	members := make([]*watch.Watcher, 0, len(ws.watchers))
	for _, sw := range ws.watchers {
		if !sw.ended {
			waiting[sw] = struct{}{}
			members = append(members, sw.w)
		}
	}
	if len(members) == 0 {
		return
	}
	// Under mu, so that no forwarder sees a marker before the round exists.
	rev, ok := ws.b.RequestProgressAll(members)
	if !ok {
		return
	}
	ws.round = &progressRound{rev: rev, waiting: waiting, done: make(chan struct{})}
}

// marker handles sw's progress marker. It returns false if the stream is
// closing.
func (ws *watchStream) marker(sw *streamWatcher) bool {
	ws.mu.Lock()
	r := ws.round
	if r == nil {
		ws.mu.Unlock()
		return true
	}
	if _, ok := r.waiting[sw]; !ok {
		ws.mu.Unlock()
		return true
	}
	delete(r.waiting, sw)
	if len(r.waiting) == 0 {
		ws.round = nil
		ws.mu.Unlock()
		return ws.finishRound(r)
	}
	ws.mu.Unlock()
	select {
	case <-r.done:
		return true
	case <-ws.done:
		return false
	}
}

// ended takes a watcher whose channel closed out of the progress round:
// the hub sends it no marker.
func (ws *watchStream) ended(sw *streamWatcher) {
	ws.mu.Lock()
	sw.ended = true
	r := ws.round
	if r == nil {
		ws.mu.Unlock()
		return
	}
	if _, ok := r.waiting[sw]; !ok {
		ws.mu.Unlock()
		return
	}
	delete(r.waiting, sw)
	if len(r.waiting) > 0 {
		ws.mu.Unlock()
		return
	}
	ws.round = nil
	ws.mu.Unlock()
	ws.finishRound(r)
}

// finishRound sends the round's progress response and releases the
// forwarders waiting for it. Only the goroutine that detached r from
// ws.round calls it.
func (ws *watchStream) finishRound(r *progressRound) bool {
	ok := ws.enqueue(outItem{resps: []*pb.WatchResponse{{
		Header:  ws.header(r.rev),
		WatchId: watch.InvalidWatchID,
	}}})
	close(r.done)
	if ok && r.again {
		ws.startRound()
	}
	return ok
}
