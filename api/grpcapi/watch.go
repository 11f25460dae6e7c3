package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"

	"github.com/metcd/metcd/watch"
)

// closedChan is always ready: a select on it does not wait.
var closedChan = func() <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// watchServer is etcd's Watch service over the backend's watch hub.
type watchServer struct {
	pb.UnsafeWatchServer
	b                Backend
	fragmentBytes    int
	progressInterval time.Duration // Options.ProgressNotifyInterval
}

// watchStream is one Watch call over one watch.Stream of the hub, which
// queues the responses of all its watchers and the call's own (created,
// canceled, refused) in order. Two goroutines:
//
//   - the handler's, the only one that sends on the gRPC stream: it takes
//     what the hub's stream queued and sends it, and keeps the clock of
//     progress notifications;
//   - recvLoop, reading requests: creates, cancels, progress requests. It
//     alone touches watchers.
//
// The hub queues a watcher's created response before its events, and its
// canceled response after the last of them.
type watchStream struct {
	b             Backend
	fragmentBytes int
	hs            *watch.Stream
	done          chan struct{} // closed when the handler returns

	watchers map[int64]*watch.Watcher // by stream id (recvLoop only)
	nextID   int64                    // next automatic id (recvLoop only)
}

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := &watchStream{
		b:             s.b,
		fragmentBytes: s.fragmentBytes,
		hs:            s.b.WatchStream(),
		done:          make(chan struct{}),
		watchers:      make(map[int64]*watch.Watcher),
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
	// handle deals with one of the other things the handler waits for;
	// it returns the error that ends the call, if it is one of those.
	handle := func(block bool) (bool, error) {
		ready := closedChan
		if block {
			ready = ws.hs.Ready()
		}
		select {
		case <-ready:
		case <-progress.C:
			// Each watcher's notification is queued after the events it
			// already has.
			ws.hs.ProgressTick()
		case err := <-recvErr:
			if ctx.Err() != nil {
				return true, watchStreamError(ctx)
			}
			if errors.Is(err, context.Canceled) {
				return true, rpctypes.ErrGRPCWatchCanceled
			}
			return true, toGRPCError(err)
		case <-ctx.Done():
			return true, watchStreamError(ctx)
		}
		return false, nil
	}
	var batch []watch.Out
	for {
		var err error
		batch, err = ws.hs.Take(batch[:0])
		if err != nil {
			return rpctypes.ErrGRPCStopped // the hub closed: the member is stopping
		}
		for i, o := range batch {
			if err := ws.send(stream, o); err != nil {
				if ctx.Err() != nil {
					return watchStreamError(ctx)
				}
				return err
			}
			batch[i] = watch.Out{}
		}
		// Between batches, let the clock, the request loop's end and the
		// call's end in; wait for more when nothing was queued.
		if end, err := handle(len(batch) == 0); end {
			return err
		}
	}
}

// send fills in resp's header and sends it, in fragments if its watcher
// asked for them.
func (ws *watchStream) send(stream pb.Watch_WatchServer, o watch.Out) error {
	resp := o.Resp
	h := ws.b.Header()
	if resp.Header == nil {
		resp.Header = &pb.ResponseHeader{}
	}
	resp.Header.ClusterId = h.GetClusterId()
	resp.Header.MemberId = h.GetMemberId()
	resp.Header.RaftTerm = h.GetRaftTerm()
	if !o.Fragment {
		return stream.Send(resp)
	}
	for _, part := range watch.Fragments(resp, ws.fragmentBytes) {
		if err := stream.Send(part); err != nil {
			return err
		}
	}
	return nil
}

// watchStreamError is etcd's answer when a watch stream's context ends: a
// plain cancel is ErrGRPCWatchCanceled, a server reason (no leader) itself.
func watchStreamError(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return rpctypes.ErrGRPCWatchCanceled
	}
	return streamError(ctx)
}

// close ends every watcher of the stream. recvLoop may outlive it (it is
// blocked in Recv until the call ends); what it asks of the hub's stream
// after this fails.
func (ws *watchStream) close() {
	close(ws.done)
	ws.hs.Close()
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
			// As in etcd, no answer when the stream has no watcher or one
			// is catching up.
			ws.hs.RequestProgress()
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
		_ = ws.hs.Queue(&pb.WatchResponse{
			Header:       ws.header(-1),
			WatchId:      watch.InvalidWatchID,
			Created:      true,
			Canceled:     true,
			CancelReason: reason,
		}, ws.done) // fails only once the call is ending
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

	id := creq.GetWatchId()
	if id == 0 { // clientv3.AutoWatchID: the lowest free id from nextID, as etcd
		for ws.watchers[ws.nextID] != nil {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if ws.watchers[id] != nil {
		refuse(etcdmvcc.ErrWatcherDuplicateID.Error())
		return
	}

	// The created response, queued by the hub ahead of the watcher's
	// events, has the hub's revision when the watcher was made in its
	// header, so that a watcher from revision 0 gets only events above it,
	// as in etcd. The member's committed revision can be ahead of the
	// hub's (the hub hears of a batch after its commit), and a header read
	// from it could claim revisions whose events were still to come.
	w, err := ws.hs.Watch(id, &pb.WatchCreateRequest{
		Key:            key,
		RangeEnd:       end,
		StartRevision:  creq.GetStartRevision(),
		ProgressNotify: creq.GetProgressNotify(),
		Filters:        creq.GetFilters(),
		PrevKv:         creq.GetPrevKv(),
		Fragment:       creq.GetFragment(),
	}, ws.done)
	if errors.Is(err, watch.ErrClosed) {
		return // the call is ending
	}
	if err != nil {
		refuse(err.Error())
		return
	}
	ws.watchers[id] = w
}

// cancel handles a WatchCancelRequest: unknown ids get no answer, as in
// etcd. A watcher the hub ended (compaction) keeps its id until then.
func (ws *watchStream) cancel(id int64) {
	w := ws.watchers[id]
	if w == nil {
		return
	}
	delete(ws.watchers, id)
	_ = ws.hs.Cancel(w, &pb.WatchResponse{Header: ws.header(-1), WatchId: id, Canceled: true}, ws.done)
}
