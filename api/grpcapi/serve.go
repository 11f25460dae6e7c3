package grpcapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
)

// Mux serves gRPC and HTTP on one listener, as etcd does on an insecure
// client port, with one difference: etcd sends every HTTP/2 connection to
// gRPC, while Mux sends only those whose first request has content-type
// application/grpc, so that cleartext HTTP/2 (curl --http2-prior-knowledge)
// reaches the HTTP handler like HTTP/1.1 does.
//
// gRPC clients wait for the server's SETTINGS before sending a request, so
// the matcher answers a connection's SETTINGS itself (as cmux's
// HTTP2MatchHeaderFieldSendSettings does). An HTTP/2 connection that then
// goes to the HTTP server would acknowledge that extra SETTINGS, which Go's
// HTTP/2 server takes as a protocol error; Mux removes that one
// acknowledgement from what the HTTP server reads.
type Mux struct {
	root net.Listener
	cm   cmux.CMux
	gs   *grpc.Server
	hs   *http.Server

	mu     sync.Mutex
	closed bool
	// matching holds the connections accepted but not yet handed to a
	// server; true once the matcher sent them SETTINGS.
	matching map[net.Conn]bool
}

// NewMux prepares serving gs and handler on ln; Serve starts it.
func NewMux(ln net.Listener, handler http.Handler, gs *grpc.Server) *Mux {
	m := &Mux{gs: gs, matching: make(map[net.Conn]bool)}
	m.root = &trackingListener{Listener: ln, m: m}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	m.hs = &http.Server{
		Handler:           handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second, // against idle half-sent requests
	}
	return m
}

// Serve serves gRPC and HTTP on ln until ln fails (see Mux); use NewMux
// for a server that can be stopped.
func Serve(ln net.Listener, handler http.Handler, gs *grpc.Server) error {
	return NewMux(ln, handler, gs).Serve()
}

// Serve serves until Close or Shutdown (then it returns nil) or until the
// listener fails (then it closes everything and returns the error). Call
// it once.
func (m *Mux) Serve() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.cm = cmux.New(m.root)
	grpcL := &handoffListener{Listener: m.cm.MatchWithWriters(m.matchGRPC), m: m}
	httpL := &handoffListener{Listener: m.cm.Match(cmux.Any()), m: m, http: true}
	m.mu.Unlock()

	errc := make(chan error, 3)
	go func() { errc <- m.cm.Serve() }()
	go func() { errc <- m.gs.Serve(grpcL) }()
	go func() { errc <- m.hs.Serve(httpL) }()
	err := <-errc
	if m.isClosed() {
		return nil
	}
	m.Close()
	return err
}

func (m *Mux) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// markClosed stops the multiplexer and the listener and closes the
// connections still being matched. It reports whether it was the first
// call.
func (m *Mux) markClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.closed = true
	if m.cm != nil {
		m.cm.Close()
	}
	m.root.Close()
	for c := range m.matching {
		c.Close()
	}
	m.matching = nil
	return true
}

// Close stops at once: the listener, every connection, every RPC.
func (m *Mux) Close() error {
	if !m.markClosed() {
		return nil
	}
	m.gs.Stop()
	return ignoreClosed(m.hs.Close())
}

// ignoreClosed drops the error of closing the listener again (markClosed
// closed it first).
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits for RPCs and HTTP
// requests to finish, until ctx ends; then it stops at once and returns
// ctx's error. Watch streams only end with their clients, so a Shutdown
// with open watches waits for ctx.
func (m *Mux) Shutdown(ctx context.Context) error {
	if !m.markClosed() {
		return nil
	}
	stopped := make(chan struct{})
	go func() {
		m.gs.GracefulStop()
		close(stopped)
	}()
	herr := ignoreClosed(m.hs.Shutdown(ctx))
	select {
	case <-stopped:
	case <-ctx.Done():
		m.gs.Stop()
		<-stopped
		m.hs.Close()
		return ctx.Err()
	}
	return herr
}

// matchGRPC is a cmux.MatchWriter accepting HTTP/2 connections whose first
// request has content-type application/grpc (or application/grpc+proto,
// ...). It answers the client's SETTINGS so that a gRPC client sends its
// request, and records that it did.
//
// cmux keeps every byte a matcher reads, to replay it to the server that
// takes the connection, so the matcher reads at most maxMatchBytes and
// gives up at the first frame a client may not send before its first
// request: a connection that streams frames without ever sending headers
// would otherwise grow that buffer for as long as it stays open.
func (m *Mux) matchGRPC(w io.Writer, r io.Reader) bool {
	r = &io.LimitedReader{R: r, N: maxMatchBytes}
	if !hasHTTP2Preface(r) {
		return false
	}
	conn, _ := w.(net.Conn)
	fr := http2.NewFramer(w, r)
	matched, done := false, false
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == "content-type" {
			matched = strings.HasPrefix(f.Value, "application/grpc")
			done = true
		}
	})
	sentSettings := false
	for !done {
		f, err := fr.ReadFrame()
		if err != nil {
			return false
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() && !sentSettings {
				if err := fr.WriteSettings(); err != nil {
					return false
				}
				sentSettings = true
				m.sentSettings(conn)
			}
		case *http2.HeadersFrame:
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				return false
			}
			done = done || f.HeadersEnded()
		case *http2.ContinuationFrame:
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				return false
			}
			done = done || f.HeadersEnded()
		case *http2.PingFrame, *http2.WindowUpdateFrame, *http2.PriorityFrame:
		default:
			// DATA, RST_STREAM, PUSH_PROMISE, GOAWAY or unknown before any
			// request: not a gRPC client. The HTTP server answers it.
			return false
		}
	}
	return matched
}

// maxMatchBytes bounds what matchGRPC reads: a client's preface, SETTINGS,
// WINDOW_UPDATE and first HEADERS take a few KiB at most.
const maxMatchBytes = 1 << 20

func hasHTTP2Preface(r io.Reader) bool {
	var b [len(http2.ClientPreface)]byte
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if string(b[:n]) != http2.ClientPreface[:n] {
			return false
		}
		if err != nil {
			return n == len(b)
		}
	}
	return true
}

func (m *Mux) sentSettings(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.matching[c]; ok {
		m.matching[c] = true
	}
}

// trackingListener records the connections it accepts until a server
// takes them, so that Close can end those still being matched.
type trackingListener struct {
	net.Listener
	m *Mux
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.mu.Lock()
	defer l.m.mu.Unlock()
	if l.m.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.m.matching[c] = false
	return c, nil
}

// handoffListener is a cmux listener for one server. For the HTTP server it
// removes, on an HTTP/2 connection the matcher sent SETTINGS, the client's
// acknowledgement of them.
type handoffListener struct {
	net.Listener
	m    *Mux
	http bool
}

func (l *handoffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	raw := c
	if mc, ok := c.(*cmux.MuxConn); ok {
		raw = mc.Conn
	}
	l.m.mu.Lock()
	sent := l.m.matching[raw]
	delete(l.m.matching, raw)
	l.m.mu.Unlock()
	if l.http && sent {
		return &settingsAckFilter{Conn: c, r: bufio.NewReader(c), pass: len(http2.ClientPreface)}, nil
	}
	return c, nil
}

// settingsAckFilter passes an HTTP/2 client's byte stream through, minus
// its first SETTINGS acknowledgement (the one for the matcher's SETTINGS,
// which the client received before any from the HTTP server).
type settingsAckFilter struct {
	net.Conn
	r       *bufio.Reader
	pass    int    // bytes to pass before the next frame header
	pending []byte // a frame header read and not yet returned
	removed bool
}

const (
	frameHeaderLen = 9
	frameSettings  = 0x4
	flagAck        = 0x1
)

func (c *settingsAckFilter) Read(p []byte) (int, error) {
	for {
		switch {
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.removed:
			return c.r.Read(p)
		case c.pass > 0:
			n, err := c.r.Read(p[:min(len(p), c.pass)])
			c.pass -= n
			return n, err
		}
		var h [frameHeaderLen]byte
		if n, err := io.ReadFull(c.r, h[:]); err != nil {
			c.pending = h[:n]
			if len(c.pending) > 0 {
				continue // return what was read; the error comes again
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return 0, err
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		if h[3] == frameSettings && h[4]&flagAck != 0 && length == 0 {
			c.removed = true
			continue
		}
		c.pending = h[:]
		c.pass = length
	}
}
