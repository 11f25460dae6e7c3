package grpcapi

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func nextEvents(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return wr
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response")
	}
	return clientv3.WatchResponse{}
}

func TestWatchClient(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx, cancel := context.WithCancel(ctxT(t))
	e.put("a/1", "old")
	all := e.cli.Watch(ctx, "a/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	dels := e.cli.Watch(ctx, "a/", clientv3.WithPrefix(), clientv3.WithFilterPut())
	from1 := e.cli.Watch(ctx, "a/1", clientv3.WithRev(1))

	// from1 catches up from history.
	wr := nextEvents(t, from1)
	if len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "old" || wr.Events[0].PrevKv != nil {
		t.Fatalf("catch-up: %+v", wr.Events)
	}
	e.put("a/1", "new")
	rev := e.put("a/2", "x")
	if _, err := e.cli.Delete(ctx, "a/1"); err != nil {
		t.Fatal(err)
	}

	var got []string
	for len(got) < 3 {
		wr := nextEvents(t, all)
		checkHeader(t, wr.Header)
		for _, ev := range wr.Events {
			prev := "-"
			if ev.PrevKv != nil {
				prev = string(ev.PrevKv.Value)
			}
			got = append(got, fmt.Sprintf("%s %s=%s prev %s", ev.Type, ev.Kv.Key, ev.Kv.Value, prev))
		}
	}
	want := []string{"PUT a/1=new prev old", "PUT a/2=x prev -", "DELETE a/1= prev new"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	wr = nextEvents(t, dels)
	if len(wr.Events) != 1 || wr.Events[0].Type != mvccpb.DELETE || wr.Events[0].Kv.ModRevision != rev+1 {
		t.Fatalf("filtered: %+v", wr.Events)
	}
	cancel()
	for range all {
	}
}

// Everything on one stream, as the server sends it.
func TestWatchStream(t *testing.T) {
	e := newTestEnv(t, Options{})
	rev := e.put("x", "0")
	ws := e.rawWatch()

	c := create(t, ws, &pb.WatchCreateRequest{Key: []byte("a")})
	if c.WatchId != 0 || c.Canceled || c.Header.Revision != rev {
		t.Fatalf("first created: %v", c)
	}
	checkHeader(t, c.Header)
	if c := create(t, ws, &pb.WatchCreateRequest{Key: []byte("b")}); c.WatchId != 1 {
		t.Fatalf("second created: %v", c)
	}
	if c := create(t, ws, &pb.WatchCreateRequest{Key: []byte("c"), WatchId: 7}); c.WatchId != 7 {
		t.Fatalf("explicit id: %v", c)
	}
	for _, r := range []struct {
		req    *pb.WatchCreateRequest
		reason string
	}{
		{&pb.WatchCreateRequest{Key: []byte("d"), WatchId: 7}, "mvcc: duplicate watch ID provided on the WatchStream"},
		{&pb.WatchCreateRequest{Key: []byte("d"), StartRevision: -1}, rpctypes.ErrCompacted.Error()},
		{&pb.WatchCreateRequest{Key: []byte("d"), RangeEnd: []byte("c")}, "mvcc: watcher range is empty"},
	} {
		c := create(t, ws, r.req)
		if !c.Canceled || c.WatchId != -1 || c.CancelReason != r.reason {
			t.Errorf("%v: got %v, want canceled with %q", r.req, c, r.reason)
		}
	}

	e.put("b", "1")
	e.put("c", "2")
	e.put("a", "3")
	// Watchers forward concurrently: their responses may come in any order.
	got := map[int64]string{}
	for range 3 {
		r := recv(t, ws)
		if len(r.Events) != 1 || r.Header.Revision != r.Events[0].Kv.ModRevision {
			t.Fatalf("want one event at the header's revision, got %v", r)
		}
		checkHeader(t, r.Header)
		got[r.WatchId] = string(r.Events[0].Kv.Key)
	}
	if fmt.Sprint(got) != "map[0:a 1:b 7:c]" {
		t.Fatalf("events by watch id: %v", got)
	}

	send(t, ws, cancelReq(7))
	if r := recv(t, ws); !r.Canceled || r.WatchId != 7 || r.Created {
		t.Fatalf("cancel: %v", r)
	}
	send(t, ws, cancelReq(99)) // unknown: no answer
	e.put("c", "ignored")
	e.put("a", "4")
	if r := recv(t, ws); r.WatchId != 0 || string(r.Events[0].Kv.Value) != "4" {
		t.Fatalf("after cancel: %v", r)
	}
	// The id is free again.
	if c := create(t, ws, &pb.WatchCreateRequest{Key: []byte("c"), WatchId: 7}); c.WatchId != 7 || c.Canceled {
		t.Fatalf("reused id: %v", c)
	}
}

func TestWatchProgressRequest(t *testing.T) {
	e := newTestEnv(t, Options{})
	ws := e.rawWatch()
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("a")})
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("c")})
	e.put("a", "1")
	rev := e.put("b1", "2")
	e.put("z", "3") // no watcher: only the progress revision shows it
	send(t, ws, progressReq())

	var ids []int64
	for {
		r := recv(t, ws)
		if r.WatchId == -1 {
			if len(r.Events) != 0 || r.Header.Revision != rev+1 {
				t.Fatalf("progress: %v", r)
			}
			checkHeader(t, r.Header)
			break
		}
		ids = append(ids, r.WatchId)
	}
	slices.Sort(ids)
	if fmt.Sprint(ids) != "[0 1]" {
		t.Fatalf("events before the progress response from %v", ids)
	}

	// clientv3's RequestProgress on its own stream.
	ctx := ctxT(t)
	wch := e.cli.Watch(ctx, "q")
	if err := e.cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	wr := nextEvents(t, wch)
	if !wr.IsProgressNotify() || wr.Header.Revision != rev+1 {
		t.Fatalf("clientv3 progress: %+v", wr)
	}
}

// Progress requests while a round is in flight, with watchers created and
// canceled in between: every round ends and the stream stays usable.
func TestWatchProgressRequestsConcurrent(t *testing.T) {
	e := newTestEnv(t, Options{})
	ws := e.rawWatch()
	for i := range 5 {
		create(t, ws, &pb.WatchCreateRequest{Key: []byte(fmt.Sprint("k", i))})
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.cli.Put(context.Background(), fmt.Sprint("k", i%5), "v"); err != nil {
				return
			}
		}
	}()
	for range 20 {
		send(t, ws, progressReq())
	}
	send(t, ws, cancelReq(3))
	canceled3 := false
	// A request finds a watcher catching up now and then and gets no
	// answer (as in etcd): ask again until three answers came.
	var progress int
	var last int64
	deadline := time.Now().Add(5 * time.Second)
	asked := time.Now()
	for progress < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d progress responses", progress)
		}
		if time.Since(asked) > 50*time.Millisecond {
			send(t, ws, progressReq())
			asked = time.Now()
		}
		r := recv(t, ws)
		if r.WatchId == -1 {
			progress++
			if r.Header.Revision < last {
				t.Fatalf("progress at %d after an event at %d", r.Header.Revision, last)
			}
		}
		if r.WatchId == 3 {
			if canceled3 {
				t.Fatalf("response of watcher 3 after its cancel: %v", r)
			}
			canceled3 = r.Canceled
		}
		for _, ev := range r.Events {
			last = max(last, ev.Kv.ModRevision)
		}
	}
	close(stop)
	<-done
}

func TestWatchFragment(t *testing.T) {
	// Fragments are cut at MaxRequestBytes plus gRPC's overhead, as etcd.
	e := newTestEnv(t, Options{MaxRequestBytes: 1})
	big := strings.Repeat("v", 100*1024)
	for i := range 12 {
		e.put(fmt.Sprint("f", i), big)
	}
	ws := e.rawWatch()
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("f"), RangeEnd: []byte("g"), StartRevision: 1, Fragment: true})
	var parts, events int
	for {
		r := recv(t, ws)
		parts++
		events += len(r.Events)
		if !r.Fragment {
			break
		}
	}
	if parts < 2 || events != 12 {
		t.Fatalf("%d parts, %d events", parts, events)
	}

	// clientv3 puts them together again.
	wr := nextEvents(t, e.cli.Watch(ctxT(t), "f", clientv3.WithPrefix(), clientv3.WithRev(1), clientv3.WithFragment()))
	if len(wr.Events) != 12 {
		t.Fatalf("clientv3 got %d events", len(wr.Events))
	}
}

func TestWatchCompacted(t *testing.T) {
	e := newTestEnv(t, Options{})
	for i := range 5 {
		e.put("k", fmt.Sprint(i))
	}
	if _, err := e.cli.Compact(ctxT(t), 4); err != nil {
		t.Fatal(err)
	}
	wr := nextEvents(t, e.cli.Watch(ctxT(t), "k", clientv3.WithRev(2)))
	if !wr.Canceled || wr.CompactRevision != 4 || wr.Err() != rpctypes.ErrCompacted {
		t.Fatalf("compacted watch: %+v (%v)", wr, wr.Err())
	}
	checkHeader(t, wr.Header)

	ws := e.rawWatch()
	c := create(t, ws, &pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})
	// etcd's compaction cancel has revision 0 in its header.
	if r := recv(t, ws); !r.Canceled || r.CompactRevision != 4 || r.WatchId != c.WatchId || r.Header.GetRevision() != 0 {
		t.Fatalf("raw compacted watch: %v", r)
	}
	// Its id stays taken until the client cancels it, as in etcd.
	send(t, ws, cancelReq(c.WatchId))
	if r := recv(t, ws); !r.Canceled || r.WatchId != c.WatchId || r.CompactRevision != 0 {
		t.Fatalf("cancel of a compacted watch: %v", r)
	}
}

// A stream whose client does not read holds up neither the hub nor other
// streams, and gets every event in order once it reads again.
func TestWatchSlowStream(t *testing.T) {
	e := newTestEnv(t, Options{})
	slow := e.rawWatch()
	create(t, slow, &pb.WatchCreateRequest{Key: []byte("k")})
	fast := e.cli.Watch(ctxT(t), "k")

	val := strings.Repeat("x", 32*1024)
	const n = 400 // ~13 MB: well past flow control windows and the hub's buffers
	for i := range n {
		e.put("k", fmt.Sprintf("%d:%s", i, val))
		wr := nextEvents(t, fast)
		if got := string(wr.Events[0].Kv.Value); !strings.HasPrefix(got, fmt.Sprint(i, ":")) {
			t.Fatalf("fast watcher got %.10s for put %d", got, i)
		}
	}
	for i := 0; i < n; {
		r := recv(t, slow)
		for _, ev := range r.Events {
			if got := string(ev.Kv.Value); !strings.HasPrefix(got, fmt.Sprint(i, ":")) {
				t.Fatalf("slow watcher got %.10s, want put %d", got, i)
			}
			i++
		}
	}
}

func TestWatchRequireLeader(t *testing.T) {
	e := newTestEnv(t, Options{LeaderCheckInterval: 20 * time.Millisecond})
	ctx := clientv3.WithRequireLeader(ctxT(t))

	e.b.leader.Store(false)
	_, err := e.cli.Put(ctx, "k", "v")
	wantErr(t, err, rpctypes.ErrNoLeader)
	ws, err := pb.NewWatchClient(e.cli.ActiveConnection()).Watch(metadata.AppendToOutgoingContext(ctxT(t),
		rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Recv(); rpctypes.Error(err) != rpctypes.ErrNoLeader {
		t.Fatalf("watch without a leader: %v", err)
	}

	e.b.leader.Store(true)
	wch := e.cli.Watch(ctx, "k")
	e.put("k", "v")
	nextEvents(t, wch)
	plain := e.cli.Watch(ctxT(t), "k") // without the metadata: stays
	e.b.leader.Store(false)
	start := time.Now()
	wr, ok := <-wch
	if ok && wr.Err() != rpctypes.ErrNoLeader {
		t.Fatalf("after the leader was lost: %+v %v", wr, wr.Err())
	}
	// Three checks 20 ms apart take at least 40 ms, less one interval
	// when the first was a tick already due but taken late.
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("stream ended after %v, before three checks", d)
	}
	e.put("k", "w")
	if wr := nextEvents(t, plain); string(wr.Events[0].Kv.Value) != "w" {
		t.Fatalf("plain watch: %+v", wr)
	}
}

// Many clientv3 watchers share one stream; canceling some leaves the rest.
func TestWatchManyWatchers(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := ctxT(t)
	const n = 50
	var chans []clientv3.WatchChan
	cancels := make([]context.CancelFunc, n)
	for i := range n {
		wctx, cancel := context.WithCancel(ctx)
		cancels[i] = cancel
		// The same metadata keeps them on one gRPC stream.
		chans = append(chans, e.cli.Watch(wctx, fmt.Sprint("m", i)))
	}
	for i := 0; i < n; i += 2 {
		cancels[i]()
	}
	for i := range n {
		e.put(fmt.Sprint("m", i), fmt.Sprint(i))
	}
	for i := 1; i < n; i += 2 {
		wr := nextEvents(t, chans[i])
		if string(wr.Events[0].Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("watcher %d: %+v", i, wr.Events)
		}
	}
	for i := 0; i < n; i += 2 {
		for wr := range chans[i] {
			if len(wr.Events) > 0 {
				t.Fatalf("canceled watcher %d got %+v", i, wr.Events)
			}
		}
	}
}

// TestProgressNotifyInterval: with Options.ProgressNotifyInterval, a
// stream's progress_notify watcher gets progress notifications (no
// events, its watch id, the member's revision) on the stream's clock, and
// its events come through unchanged; a watcher on the same stream without
// progress_notify gets only its events.
func TestProgressNotifyInterval(t *testing.T) {
	e := newTestEnv(t, Options{ProgressNotifyInterval: MinProgressNotifyInterval})
	rev := e.put("a", "1")
	ws := e.rawWatch()
	notified := create(t, ws, &pb.WatchCreateRequest{Key: []byte("p"), ProgressNotify: true}).WatchId
	plain := create(t, ws, &pb.WatchCreateRequest{Key: []byte("q"), StartRevision: rev + 1, WatchId: 7}).WatchId
	if notified == plain {
		t.Fatalf("watch ids %d and %d", notified, plain)
	}
	var progress int
	for progress < 3 {
		r := recv(t, ws)
		switch {
		case r.WatchId == notified && len(r.Events) == 0:
			if r.Header.GetRevision() != rev {
				t.Fatalf("progress notification at revision %d, want %d", r.Header.GetRevision(), rev)
			}
			checkHeader(t, r.Header)
			progress++
		default:
			t.Fatalf("unexpected response %v", r)
		}
	}
	// An event for the plain watcher comes alone; the notified watcher's
	// next notifications carry the new revision.
	rev = e.put("q", "2")
	for seenEvent, seenProgress := false, false; !seenEvent || !seenProgress; {
		r := recv(t, ws)
		switch {
		case r.WatchId == plain && len(r.Events) == 1 && r.Events[0].Kv.ModRevision == rev:
			seenEvent = true
		case r.WatchId == notified && len(r.Events) == 0 && r.Header.GetRevision() == rev:
			seenProgress = true
		case r.WatchId == notified && len(r.Events) == 0 && r.Header.GetRevision() == rev-1:
			// a notification sent before the put
		default:
			t.Fatalf("unexpected response %v", r)
		}
	}
}

// TestCreatedHeaderIsTheHubRevision: a watcher from revision 0 gets only
// events above its created response's header revision, as in etcd, even
// when the member has committed a write the hub has not yet been told of
// (the apply loop commits, then notifies). The header used to be the
// committed revision, which claimed a revision whose event came after.
func TestCreatedHeaderIsTheHubRevision(t *testing.T) {
	e := newTestEnv(t, Options{})
	before := e.put("k", "1")
	release := e.b.holdHubNotify()
	committed := e.put("k", "2") // committed; the hub has not heard of it
	ws := e.rawWatch()
	created := create(t, ws, &pb.WatchCreateRequest{Key: []byte("k")})
	release()
	if got := created.Header.GetRevision(); got != before {
		t.Errorf("created header revision %d, want the hub's %d (the committed one is %d)", got, before, committed)
	}
	r := recv(t, ws)
	if len(r.Events) != 1 || r.Events[0].Kv.ModRevision != committed {
		t.Fatalf("want the event at %d, got %v", committed, r)
	}
	if r.Events[0].Kv.ModRevision <= created.Header.GetRevision() {
		t.Errorf("event at %d, at or below the created header's revision %d", r.Events[0].Kv.ModRevision, created.Header.GetRevision())
	}
}

// Streams whose clients send thousands of creates without reading, while
// large values are written, and are then cut off: their goroutines end
// and no watcher is left on the hub.
func TestWatchStreamsNotReadThenCut(t *testing.T) {
	e := newTestEnv(t, Options{})
	e.put("k", "v")
	time.Sleep(100 * time.Millisecond)
	base := runtime.NumGoroutine()
	val := strings.Repeat("x", 64*1024)
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		ws, err := pb.NewWatchClient(e.cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for range 2000 {
				if ws.Send(createReq(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 1})) != nil {
					return
				}
			}
		}()
		for range 50 {
			e.put("k", val)
		}
		time.Sleep(300 * time.Millisecond)
		cancel()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+5 || e.b.hub.Watching() {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines %d, then %d; watchers left: %v\n%s", base, runtime.NumGoroutine(), e.b.hub.Watching(), buf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// When the hub closes (the member stops), an open Watch call ends with
// etcd's "server stopped", which clients retry elsewhere.
func TestWatchHubClosed(t *testing.T) {
	e := newTestEnv(t, Options{})
	ws := e.rawWatch()
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("k")})
	e.b.hub.Close()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := ws.Recv(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if s, _ := status.FromError(err); s.Code() != codes.Unavailable || s.Message() != "etcdserver: server stopped" {
			t.Fatalf("stream ended with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after the hub closed")
	}
}
