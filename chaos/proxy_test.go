package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upstream is a stand-in for a member's peer listener: POST /raft echoes
// the body, GET /raft/probing answers "ok", GET /raft/stream sends a line
// every time something is written to its channel.
func upstream(t *testing.T) (addr string, stream chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stream = make(chan string, 16)
	mux := http.NewServeMux()
	mux.HandleFunc("/raft", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "from %s: %s", r.Header.Get("X-Server-From"), b)
	})
	mux.HandleFunc("/raft/probing", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/raft/stream", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case s := <-stream:
				io.WriteString(w, s+"\n")
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), stream
}

// proxied sets up a network where member 1 (slot 0) sits behind a proxy to
// an upstream, and member 2 is in slot 1.
func proxied(t *testing.T) (*Network, string, chan string) {
	t.Helper()
	addr, stream := upstream(t)
	n := NewNetwork(1)
	t.Cleanup(n.Close)
	n.SetMember(1, 0)
	n.SetMember(2, 1)
	p, err := n.NewProxy(0, addr)
	if err != nil {
		t.Fatal(err)
	}
	return n, p.Addr(), stream
}

func newHTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil}}
}

// post sends POST /raft as member from ("" for no header).
func post(cl *http.Client, addr, from, body string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/raft", strings.NewReader(body))
	if from != "" {
		req.Header.Set("X-Server-From", from)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestProxyForwards(t *testing.T) {
	_, addr, _ := proxied(t)
	cl := newHTTPClient(5 * time.Second)
	for i := range 3 { // keep-alive: several requests on one connection
		got, err := post(cl, addr, "2", fmt.Sprintf("m%d", i))
		if want := fmt.Sprintf("from 2: m%d", i); err != nil || got != want {
			t.Fatalf("POST through the proxy: %q %v, want %q", got, err, want)
		}
	}
	// A chunked body (as rafthttp's snapshots) goes through unchanged.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/raft", io.MultiReader(strings.NewReader("big"), strings.NewReader("-snap")))
	req.Header.Set("X-Server-From", "2")
	req.ContentLength = -1
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "from 2: big-snap" {
		t.Fatalf("chunked POST: %q", b)
	}
}

func TestProxyRefuse(t *testing.T) {
	n, addr, stream := proxied(t)
	cl := newHTTPClient(5 * time.Second)

	// An open stream from member 2 breaks when the link is cut.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/raft/stream", nil)
	req.Header.Set("X-Server-From", "2")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	stream <- "hello"
	if line, err := br.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("stream: %q %v", line, err)
	}
	n.Partition(LinkRule{Mode: LinkRefuse}, []int{0}, []int{1})
	if _, err := br.ReadString('\n'); err == nil {
		t.Fatal("the stream survived the partition")
	}

	// New requests from member 2 are refused; unattributed ones (probes)
	// and those of members in no group go through.
	if got, err := post(cl, addr, "2", "x"); err == nil {
		t.Fatalf("POST from member 2 across the partition answered %q", got)
	}
	if got, err := post(cl, addr, "", "y"); err != nil || got != "from : y" {
		t.Fatalf("unattributed POST: %q %v", got, err)
	}
	n.SetMember(3, 2)
	if got, err := post(cl, addr, "3", "z"); err != nil || got != "from 3: z" {
		t.Fatalf("POST from member 3: %q %v", got, err)
	}

	n.Heal()
	if got, err := post(cl, addr, "2", "x"); err != nil || got != "from 2: x" {
		t.Fatalf("POST after the heal: %q %v", got, err)
	}
}

// A connection whose first request is unattributed (a probe) is judged by
// the first request that names its sender.
func TestProxyKeepAliveAttribution(t *testing.T) {
	n, addr, _ := proxied(t)
	n.Partition(LinkRule{Mode: LinkRefuse}, []int{0}, []int{1})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET /raft/probing HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "ok" {
		t.Fatalf("probe answered %q", b)
	}
	io.WriteString(conn, "POST /raft HTTP/1.1\r\nHost: x\r\nX-Server-From: 2\r\nContent-Length: 1\r\n\r\nm")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(br, nil); err == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST from member 2 on a probe's connection crossed the partition: %q", b)
	}
}

func TestProxyBlackhole(t *testing.T) {
	n, addr, stream := proxied(t)
	cl := newHTTPClient(0)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/raft/stream", nil)
	req.Header.Set("X-Server-From", "2")
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		br := bufio.NewReader(resp.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	stream <- "before"
	if got := <-lines; got != "before\n" {
		t.Fatalf("stream: %q", got)
	}

	n.Partition(LinkRule{Mode: LinkBlackhole}, []int{0}, []int{1})
	stream <- "held"
	select {
	case got := <-lines:
		t.Fatalf("%q crossed the blackhole", got)
	case <-time.After(300 * time.Millisecond):
	}
	// A request from member 2 hangs.
	short := newHTTPClient(300 * time.Millisecond)
	if got, err := post(short, addr, "2", "x"); err == nil {
		t.Fatalf("POST across the blackhole answered %q", got)
	}

	// On heal, the held bytes arrive, in order.
	n.Heal()
	stream <- "after"
	for _, want := range []string{"held\n", "after\n"} {
		select {
		case got := <-lines:
			if got != want {
				t.Fatalf("after the heal: %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q not delivered after the heal", want)
		}
	}
}

func TestProxyDelayAndDrop(t *testing.T) {
	n, addr, _ := proxied(t)
	cl := newHTTPClient(10 * time.Second)
	const d = 150 * time.Millisecond
	n.SetLink(0, 1, LinkRule{Delay: d})
	start := time.Now()
	if got, err := post(cl, addr, "2", "x"); err != nil || got != "from 2: x" {
		t.Fatalf("delayed POST: %q %v", got, err)
	}
	// The request and the answer are each held for d at least.
	if el := time.Since(start); el < 2*d {
		t.Fatalf("round trip %v through a link delayed by %v each way", el, d)
	}

	// A link that drops everything resets every new connection.
	n.SetLink(0, 1, LinkRule{DropRate: 1})
	if got, err := post(newHTTPClient(5*time.Second), addr, "2", "x"); err == nil {
		t.Fatalf("POST through a link with drop rate 1 answered %q", got)
	}
	if n.Reset.Load() == 0 {
		t.Fatal("no reset counted")
	}
	n.Heal()
	if got, err := post(newHTTPClient(5*time.Second), addr, "2", "x"); err != nil || got != "from 2: x" {
		t.Fatalf("POST after the heal: %q %v", got, err)
	}
}
