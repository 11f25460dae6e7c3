package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// testEnv is a Backend served by NewServer through a Mux on a loopback
// port, with a clientv3 client connected to it.
type testEnv struct {
	t    *testing.T
	b    *testBackend
	addr string
	mux  *Mux
	cli  *clientv3.Client
}

// testHTTPHandler answers every request with its protocol, so that tests
// can tell HTTP/1.1 from HTTP/2 on the shared port.
var testHTTPHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
})

func newTestEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	b := newTestBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, testHTTPHandler, NewServer(b, opts))
	served := make(chan error, 1)
	go func() { served <- m.Serve() }()
	e := &testEnv{t: t, b: b, addr: ln.Addr().String(), mux: m}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	e.cli = e.client()
	return e
}

func (e *testEnv) client() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.addr},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (e *testEnv) put(key, val string) int64 {
	e.t.Helper()
	resp, err := e.cli.Put(ctxT(e.t), key, val)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Header.Revision
}

// rawWatch opens a Watch stream with the generated client, to see the
// responses exactly as the server sends them.
func (e *testEnv) rawWatch() pb.Watch_WatchClient {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	ws, err := pb.NewWatchClient(e.cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		e.t.Fatal(err)
	}
	return ws
}

func createReq(c *pb.WatchCreateRequest) *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}}
}

func cancelReq(id int64) *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}
}

func progressReq() *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}
}

func send(t *testing.T, ws pb.Watch_WatchClient, req *pb.WatchRequest) {
	t.Helper()
	if err := ws.Send(req); err != nil {
		t.Fatal(err)
	}
}

// recv returns the next response of ws, failing the test after a while.
func recv(t *testing.T, ws pb.Watch_WatchClient) *pb.WatchResponse {
	t.Helper()
	type result struct {
		resp *pb.WatchResponse
		err  error
	}
	c := make(chan result, 1)
	go func() {
		resp, err := ws.Recv()
		c <- result{resp, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.resp
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response")
		return nil
	}
}

// create sends a create request and returns its created response.
func create(t *testing.T, ws pb.Watch_WatchClient, c *pb.WatchCreateRequest) *pb.WatchResponse {
	t.Helper()
	send(t, ws, createReq(c))
	resp := recv(t, ws)
	if !resp.Created {
		t.Fatalf("want a created response, got %v", resp)
	}
	return resp
}

func checkHeader(t *testing.T, h *pb.ResponseHeader) {
	t.Helper()
	if h.GetClusterId() != testClusterID || h.GetMemberId() != testMemberID || h.GetRaftTerm() != testTerm {
		t.Errorf("header %v: want cluster %x member %x term %d", h, testClusterID, testMemberID, testTerm)
	}
}

func wantErr(t *testing.T, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("error %v (%T), want %v", got, got, want)
	}
}
