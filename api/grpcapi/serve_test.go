package grpcapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func httpGet(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

// HTTP/1.1, cleartext HTTP/2 and gRPC on one port, at the same time.
func TestServeSharedPort(t *testing.T) {
	e := newTestEnv(t, Options{})
	base := "http://" + e.addr
	h1 := &http.Client{Transport: &http.Transport{}}
	h2 := h2cClient()

	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 10 {
				if got := httpGet(t, h1, base+"/one"); got != "HTTP/1.1 /one" {
					t.Errorf("HTTP/1.1: %q", got)
				}
				if got := httpGet(t, h2, base+"/two"); got != "HTTP/2.0 /two" {
					t.Errorf("h2c: %q", got)
				}
				if _, err := e.cli.Put(context.Background(), "k", string(rune('a'+i))); err != nil {
					t.Errorf("gRPC: %v", err)
				}
			}
		})
	}
	wg.Wait()

	// Many requests on one h2c connection (the filtered acknowledgement
	// must not disturb later frames).
	for i := range 50 {
		if got := httpGet(t, h2, base+"/again"); got != "HTTP/2.0 /again" {
			t.Fatalf("h2c request %d: %q", i, got)
		}
	}

	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hr, err)
	}
}

func TestServeCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	e := newTestEnv(t, Options{})
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "HTTP/1.1 /key"},
		{[]string{"--http1.1"}, "HTTP/1.1 /key"},
		{[]string{"--http2-prior-knowledge"}, "HTTP/2.0 /key"},
	} {
		args := append([]string{"-sS", "--max-time", "10"}, c.args...)
		out, err := exec.Command(curl, append(args, "http://"+e.addr+"/key")...).CombinedOutput()
		if err != nil || string(out) != c.want {
			t.Errorf("curl %v: %q %v, want %q", c.args, out, err, c.want)
		}
	}
}

func TestMuxClose(t *testing.T) {
	b := newTestBackend(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(ln, testHTTPHandler, NewServer(b, Options{}))
	served := make(chan error, 1)
	go func() { served <- m.Serve() }()

	// A connection still being matched (it sent nothing) does not hold
	// Close up, and neither does an idle h2c connection.
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	h2 := h2cClient()
	httpGet(t, h2, "http://"+ln.Addr().String()+"/")

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
		t.Fatalf("idle connection not closed: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener still open")
	}
}

func TestMuxShutdown(t *testing.T) {
	e := newTestEnv(t, Options{})
	ws := e.rawWatch()
	create(t, ws, &pb.WatchCreateRequest{Key: []byte("k")})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	// The open watch keeps the graceful stop waiting until ctx ends.
	if err := e.mux.Shutdown(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := ws.Recv(); err == nil {
		t.Fatal("watch still open after Shutdown")
	}
}

// TestStreamWorkersAllBusy: with every stream worker held by a long-lived
// watch stream, requests still get served (each on a goroutine of its
// own), and the watch streams keep working.
func TestStreamWorkersAllBusy(t *testing.T) {
	e := newTestEnv(t, Options{StreamWorkers: 2})
	var streams []pb.Watch_WatchClient
	for i := 0; i < 4; i++ {
		ws := e.rawWatch()
		if err := ws.Send(createReq(&pb.WatchCreateRequest{Key: []byte("busy/"), RangeEnd: []byte("busy0")})); err != nil {
			t.Fatal(err)
		}
		if r, err := ws.Recv(); err != nil || !r.Created {
			t.Fatalf("watch stream %d: %v, %v", i, r, err)
		}
		streams = append(streams, ws)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := e.cli.Put(ctx, fmt.Sprintf("busy/%02d", i), "v"); err != nil {
				errs <- fmt.Errorf("put %d: %w", i, err)
			}
			if _, err := e.cli.Get(ctx, "busy/", clientv3.WithPrefix(), clientv3.WithSerializable()); err != nil {
				errs <- fmt.Errorf("get %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, ws := range streams {
		seen := 0
		for seen < n {
			r, err := ws.Recv()
			if err != nil {
				t.Fatalf("watch stream %d after %d of %d events: %v", i, seen, n, err)
			}
			seen += len(r.Events)
		}
	}
}

// TestMuxBoundsWhatItMatches sends frames that never lead to a request.
// cmux keeps what the gRPC matcher reads, so the matcher must give such a
// connection up: at once on a DATA frame (the HTTP/2 server then ends it
// as a protocol error), and after maxMatchBytes of PINGs (the HTTP/2
// server then answers them). Before, it read on, and buffered, for as
// long as the client sent.
func TestMuxBoundsWhatItMatches(t *testing.T) {
	e := newTestEnv(t, Options{})
	dial := func() (net.Conn, *http2.Framer) {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
			t.Fatal(err)
		}
		fr := http2.NewFramer(c, c)
		if err := fr.WriteSettings(); err != nil {
			t.Fatal(err)
		}
		return c, fr
	}

	t.Run("Data", func(t *testing.T) {
		c, fr := dial()
		go func() {
			chunk := make([]byte, 16<<10)
			for range 512 { // 8 MiB
				if fr.WriteData(1, false, chunk) != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("a connection sending DATA before any request was kept open")
		}
	})

	t.Run("Ping", func(t *testing.T) {
		c, fr := dial()
		go func() {
			for i := range 2 * maxMatchBytes / 17 { // a PING frame is 17 bytes
				var data [8]byte
				data[0] = byte(i)
				if fr.WritePing(false, data) != nil {
					return
				}
			}
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rd := http2.NewFramer(io.Discard, c)
		for {
			f, err := rd.ReadFrame()
			if err != nil {
				t.Fatalf("no PING answered after %d bytes of PINGs: %v", 2*maxMatchBytes, err)
			}
			if p, ok := f.(*http2.PingFrame); ok && p.IsAck() {
				return
			}
		}
	})
}
