package chaos

import (
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// LinkMode is what a link between two slots does with the bytes it carries.
type LinkMode int

const (
	// LinkOK forwards everything (after the link's delay, if any).
	LinkOK LinkMode = iota
	// LinkRefuse closes the link's connections at once and every new one as
	// soon as its sender is known: the peers see resets and reconnect in a
	// loop, as across a firewall that rejects.
	LinkRefuse
	// LinkBlackhole forwards nothing: connections stay open but their bytes
	// are held (and, through TCP flow control, the senders block) until the
	// link heals, as across a network that silently drops packets. Held bytes
	// are delivered, in order, when it does.
	LinkBlackhole
)

func (m LinkMode) String() string {
	switch m {
	case LinkOK:
		return "ok"
	case LinkRefuse:
		return "refuse"
	case LinkBlackhole:
		return "blackhole"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// LinkRule is the fault on the link between two slots, in both directions.
// The zero value is a healthy link.
type LinkRule struct {
	Mode LinkMode
	// Delay is added to every chunk of bytes, plus a uniformly random
	// extra of up to Jitter. Bytes stay in order; the link's throughput is
	// not limited.
	Delay, Jitter time.Duration
	// DropRate is the probability that a new connection is reset as soon as
	// its sender is known, and, every dropInterval, that each open
	// connection of the link is reset: an unreliable link that loses
	// messages (rafthttp drops what it cannot send and raft retries).
	DropRate float64
}

func (r LinkRule) healthy() bool { return r == LinkRule{} }

func (r LinkRule) String() string {
	s := r.Mode.String()
	if r.Delay > 0 || r.Jitter > 0 {
		s += fmt.Sprintf(" delay=%v+%v", r.Delay, r.Jitter)
	}
	if r.DropRate > 0 {
		s += fmt.Sprintf(" drop=%.2f", r.DropRate)
	}
	return s
}

// dropInterval is how often connections of a lossy link are considered for
// a reset.
const dropInterval = 200 * time.Millisecond

// Network is the set of peer proxies of one cluster and the faults on the
// links between its slots. A slot is a place for a member: a proxy address
// (the member's peer URL in --cluster) and a private address the member
// listens on; the member in a slot may change (removal and re-add), the
// slot does not.
//
// Peers cannot be told apart by address (they all dial from 127.0.0.1), so
// a proxied connection is attributed to its sender by the X-Server-From
// header (the sender's member id, in hex) that etcd's rafthttp puts on every
// stream, pipeline and snapshot request. A connection whose requests carry
// no such header (rafthttp's probes, the join handshake, lease requests
// forwarded to the leader) is forwarded without faults until one does.
type Network struct {
	mu      sync.Mutex
	rules   map[[2]int]LinkRule
	ids     map[uint64]int // member id -> slot
	conns   map[*pconn]struct{}
	changed chan struct{} // closed (and replaced) whenever rules change
	rng     *rand.Rand
	stopc   chan struct{}
	wg      sync.WaitGroup
	proxies []*Proxy

	// Counters, for reports.
	Accepted atomic.Int64 // connections accepted
	Reset    atomic.Int64 // connections closed by a fault
}

// NewNetwork returns a network with healthy links. seed drives the random
// choices of lossy and jittery links.
func NewNetwork(seed int64) *Network {
	n := &Network{
		rules:   map[[2]int]LinkRule{},
		ids:     map[uint64]int{},
		conns:   map[*pconn]struct{}{},
		changed: make(chan struct{}),
		rng:     rand.New(rand.NewSource(seed)),
		stopc:   make(chan struct{}),
	}
	n.wg.Add(1)
	go n.dropLoop()
	return n
}

func pairKey(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

// SetMember records that member id lives in slot (its traffic is attributed
// to that slot). Ids of removed members may stay mapped.
func (n *Network) SetMember(id uint64, slot int) {
	n.mu.Lock()
	n.ids[id] = slot
	n.mu.Unlock()
}

// SetLink sets the rule of the link between slots a and b (both
// directions). Connections of a refused link are reset at once.
func (n *Network) SetLink(a, b int, r LinkRule) {
	if a == b {
		return
	}
	n.mu.Lock()
	if r.healthy() {
		delete(n.rules, pairKey(a, b))
	} else {
		n.rules[pairKey(a, b)] = r
	}
	n.applyLocked()
}

// Partition cuts every link between different groups with rule r. Slots
// in no group keep their links.
func (n *Network) Partition(r LinkRule, groups ...[]int) {
	n.mu.Lock()
	for gi, g := range groups {
		for gj, h := range groups {
			if gi == gj {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					if a != b {
						n.rules[pairKey(a, b)] = r
					}
				}
			}
		}
	}
	n.applyLocked()
}

// Heal makes every link healthy again.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.rules)
	n.applyLocked()
}

// Rules returns the current faulty links.
func (n *Network) Rules() map[[2]int]LinkRule {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[[2]int]LinkRule, len(n.rules))
	for k, v := range n.rules {
		out[k] = v
	}
	return out
}

// applyLocked wakes up stalled connections and resets those of refused
// links. It unlocks n.mu.
func (n *Network) applyLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
	var reset []*pconn
	for c := range n.conns {
		if from := int(c.from.Load()); from >= 0 && n.rules[pairKey(c.slot, from)].Mode == LinkRefuse {
			reset = append(reset, c)
		}
	}
	n.mu.Unlock()
	for _, c := range reset {
		n.Reset.Add(1)
		c.close()
	}
}

// rule returns the rule between slots a and b, and the channel closed at
// the next change. b < 0 (unknown sender) is always healthy.
func (n *Network) rule(a, b int) (LinkRule, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if b < 0 || a == b {
		return LinkRule{}, n.changed
	}
	return n.rules[pairKey(a, b)], n.changed
}

// delayFor returns the delay of the next chunk on the link a-b.
func (n *Network) delayFor(a, b int) time.Duration {
	if b < 0 {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.rules[pairKey(a, b)]
	d := r.Delay
	if r.Jitter > 0 {
		d += time.Duration(n.rng.Int63n(int64(r.Jitter)))
	}
	return d
}

// admit decides whether a connection just attributed to sender from may go
// on (refused and unlucky lossy links reset it).
func (n *Network) admit(slot, from int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.rules[pairKey(slot, from)]
	switch {
	case r.Mode == LinkRefuse:
		return false
	case r.DropRate > 0 && n.rng.Float64() < r.DropRate:
		return false
	}
	return true
}

func (n *Network) slotOf(header string) int {
	if header == "" {
		return -1
	}
	id, err := strconv.ParseUint(header, 16, 64)
	if err != nil {
		return -1
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if s, ok := n.ids[id]; ok {
		return s
	}
	return -1
}

func (n *Network) dropLoop() {
	defer n.wg.Done()
	t := time.NewTicker(dropInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stopc:
			return
		case <-t.C:
		}
		var reset []*pconn
		n.mu.Lock()
		for c := range n.conns {
			from := int(c.from.Load())
			if from < 0 {
				continue
			}
			if r := n.rules[pairKey(c.slot, from)]; r.DropRate > 0 && n.rng.Float64() < r.DropRate {
				reset = append(reset, c)
			}
		}
		n.mu.Unlock()
		for _, c := range reset {
			n.Reset.Add(1)
			c.close()
		}
	}
}

// Close stops every proxy and closes every connection.
func (n *Network) Close() {
	n.mu.Lock()
	proxies := n.proxies
	n.proxies = nil
	n.mu.Unlock()
	for _, p := range proxies {
		p.Close()
	}
	select {
	case <-n.stopc:
	default:
		close(n.stopc)
	}
	n.wg.Wait()
}

// Proxy accepts the peer connections of one slot on its public address and
// forwards them to the member's private peer address.
type Proxy struct {
	n      *Network
	slot   int
	ln     net.Listener
	target string
	wg     sync.WaitGroup
}

// NewProxy listens on a free loopback port for slot and forwards to
// target (host:port).
func (n *Network) NewProxy(slot int, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{n: n, slot: slot, ln: ln, target: target}
	n.mu.Lock()
	n.proxies = append(n.proxies, p)
	n.mu.Unlock()
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops accepting and closes the proxy's connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.n.mu.Lock()
	var mine []*pconn
	for c := range p.n.conns {
		if c.proxy == p {
			mine = append(mine, c)
		}
	}
	p.n.mu.Unlock()
	for _, c := range mine {
		c.close()
	}
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		cc, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.n.Accepted.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.serve(cc)
		}()
	}
}

// pconn is one proxied connection.
type pconn struct {
	n        *Network
	proxy    *Proxy
	slot     int          // the slot it leads to
	from     atomic.Int64 // the sender's slot, -1 until known
	client   net.Conn
	upstream net.Conn
	once     sync.Once
	done     chan struct{}
}

func (c *pconn) close() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.upstream.Close()
		c.n.mu.Lock()
		delete(c.n.conns, c)
		c.n.mu.Unlock()
	})
}

func (p *Proxy) serve(cc net.Conn) {
	up, err := net.DialTimeout("tcp", p.target, time.Second)
	if err != nil {
		// The member is down: the peer sees the connection closed, much as
		// a refused connection.
		cc.Close()
		return
	}
	c := &pconn{n: p.n, proxy: p, slot: p.slot, client: cc, upstream: up, done: make(chan struct{})}
	c.from.Store(-1)
	p.n.mu.Lock()
	select {
	case <-p.n.stopc:
		p.n.mu.Unlock()
		cc.Close()
		up.Close()
		return
	default:
	}
	p.n.conns[c] = struct{}{}
	p.n.mu.Unlock()

	toUp := newLane(c, up)
	toClient := newLane(c, cc)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); toUp.writeLoop() }()
	go func() { defer wg.Done(); toClient.writeLoop() }()
	go func() { defer wg.Done(); c.readRequests(toUp) }()
	go func() { defer wg.Done(); toClient.readRaw(up) }()
	wg.Wait()
	c.close()
}

// recorder keeps a copy of the bytes read through it, so that a request
// parsed by net/http can be forwarded byte for byte.
type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

// readRequests parses the requests the client sends until one names its
// sender, forwarding each unchanged; from then on (a connection belongs to
// one peer process) it forwards raw bytes.
func (c *pconn) readRequests(l *lane) {
	rec := &recorder{r: c.client}
	br := bufio.NewReaderSize(rec, 32<<10)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			l.push(nil, err)
			return
		}
		if from := c.n.slotOf(req.Header.Get("X-Server-From")); from >= 0 {
			c.from.Store(int64(from))
			if !c.n.admit(c.slot, from) {
				c.n.Reset.Add(1)
				c.close()
				return
			}
			// Everything read so far (this request's head and whatever
			// bufio read ahead) goes as it is; the rest is copied raw.
			l.push(rec.buf, nil)
			rec.buf = nil
			l.readRaw(c.client)
			return
		}
		// Unattributed (probe, join handshake, forwarded lease request):
		// read the body to find where the request ends, then forward it.
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			l.push(nil, err)
			return
		}
		req.Body.Close()
		used := len(rec.buf) - br.Buffered()
		l.push(rec.buf[:used], nil)
		rec.buf = append([]byte(nil), rec.buf[used:]...)
	}
}

// chunk is a piece of a byte stream and when it may be delivered; err marks
// the end of the stream.
type chunk struct {
	data []byte
	at   time.Time
	err  error
}

// lane is one direction of a proxied connection: a reader pushes chunks
// stamped with their delivery time, a writer delivers them in order once the
// link lets it.
type lane struct {
	c   *pconn
	dst net.Conn
	ch  chan chunk
}

func newLane(c *pconn, dst net.Conn) *lane {
	return &lane{c: c, dst: dst, ch: make(chan chunk, 256)}
}

func (l *lane) push(data []byte, err error) bool {
	var d time.Duration
	if len(data) > 0 {
		d = l.c.n.delayFor(l.c.slot, int(l.c.from.Load()))
	}
	ck := chunk{data: data, at: time.Now().Add(d), err: err}
	select {
	case l.ch <- ck:
		return true
	case <-l.c.done:
		return false
	}
}

func (l *lane) readRaw(src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.push(append([]byte(nil), buf[:n]...), nil) {
			return
		}
		if err != nil {
			l.push(nil, err)
			return
		}
	}
}

func (l *lane) writeLoop() {
	for {
		var ck chunk
		select {
		case ck = <-l.ch:
		case <-l.c.done:
			return
		}
		if ck.err != nil {
			// End of stream: the connection is done in both directions
			// (HTTP peers do not half-close).
			l.c.close()
			return
		}
		if !l.gate() {
			return
		}
		if d := time.Until(ck.at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-l.c.done:
				t.Stop()
				return
			}
		}
		if _, err := l.dst.Write(ck.data); err != nil {
			l.c.close()
			return
		}
	}
}

// gate waits while the connection's link is a blackhole; it returns false
// if the connection is closed meanwhile (or its link refuses).
func (l *lane) gate() bool {
	for {
		r, changed := l.c.n.rule(l.c.slot, int(l.c.from.Load()))
		switch r.Mode {
		case LinkOK:
			return true
		case LinkRefuse:
			l.c.n.Reset.Add(1)
			l.c.close()
			return false
		}
		select {
		case <-changed:
		case <-l.c.done:
			return false
		}
	}
}
