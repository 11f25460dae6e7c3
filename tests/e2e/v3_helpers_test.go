package e2e

// Helpers for the etcd v3 gRPC API tests (v3_*_test.go). They talk to the
// members through go.etcd.io/etcd/client/v3 on the same client port as the
// curl API: the clientv3 endpoint of a member is "127.0.0.1:<port>".

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// v3Timeout bounds every single gRPC call of the v3 tests.
const v3Timeout = 10 * time.Second

// V3Endpoint is member m's clientv3 endpoint.
func (m *Member) V3Endpoint() string {
	return fmt.Sprintf("127.0.0.1:%d", m.ClientPort)
}

// V3Endpoints returns the clientv3 endpoints of the given members (every
// member if none given).
func (c *Cluster) V3Endpoints(idx ...int) []string {
	if len(idx) == 0 {
		for i := range c.Members {
			idx = append(idx, i)
		}
	}
	eps := make([]string, 0, len(idx))
	for _, i := range idx {
		eps = append(eps, c.Members[i].V3Endpoint())
	}
	return eps
}

// newV3ClientCfg opens a clientv3 client with cfg (Logger and DialTimeout
// filled if unset) and closes it in t.Cleanup.
func newV3ClientCfg(t testing.TB, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// For returns a view of the cluster whose helpers (Eventually, MustPut,
// WaitLeader...) report to t: a subtest must not fail its parent's t.
// The members are shared; do not add members through a view.
func (c *Cluster) For(t testing.TB) *Cluster {
	cc := *c
	cc.t = t
	return &cc
}

// watchCtx is the context of a test's watch: clientv3's Watch blocks
// until its request is sent, so a dead member must not hang the test
// forever. It ends after two minutes or at the end of the test.
func watchCtx(t testing.TB) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx, cancel
}

// startWatch opens a watch and fails the test if clientv3's Watch, which
// blocks until the request is sent, does not return within v3Timeout
// (a dead member).
func startWatch(t testing.TB, w clientv3.Watcher, ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	t.Helper()
	done := make(chan clientv3.WatchChan, 1)
	go func() { done <- w.Watch(ctx, key, opts...) }()
	select {
	case wch := <-done:
		return wch
	case <-time.After(v3Timeout):
		t.Fatalf("Watch(%q) did not return within %v", key, v3Timeout)
		return nil
	}
}

// V3Client returns a clientv3 client on the given members (every member if
// none given), closed in t.Cleanup. The client is cancelled as soon as a
// member of the cluster exits without the test asking for it (see
// clusterAlive), so that calls to a crashed member fail at once instead
// of waiting for their deadline.
func (c *Cluster) V3Client(t testing.TB, idx ...int) *clientv3.Client {
	t.Helper()
	a := c.alive()
	a.reportTo(t)
	cli := newV3ClientCfg(t, clientv3.Config{Endpoints: c.V3Endpoints(idx...), Context: a.ctx})
	// cancelling the client's context does not end calls in flight;
	// closing the client does
	go func() {
		select {
		case <-a.ctx.Done():
			cli.Close()
		case <-cli.Ctx().Done():
		}
	}()
	return cli
}

// clusterAlive watches a cluster's member processes: its context is
// cancelled when one of them exits unexpectedly (a crash), or when the
// cluster's directory is gone (the test is over).
type clusterAlive struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	members  []*Member
	reason   string
	reported map[testing.TB]bool
}

var (
	aliveMu sync.Mutex
	alives  = map[string]*clusterAlive{} // by Cluster.Dir
)

// alive returns the cluster's watchdog, starting it on first use.
func (c *Cluster) alive() *clusterAlive {
	aliveMu.Lock()
	defer aliveMu.Unlock()
	if a, ok := alives[c.Dir]; ok {
		return a
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &clusterAlive{ctx: ctx, cancel: cancel, members: slices.Clone(c.Members), reported: map[testing.TB]bool{}}
	alives[c.Dir] = a
	go a.watch(c.Dir)
	return a
}

// add makes the watchdog watch a member added after it started.
func (a *clusterAlive) add(m *Member) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.members = append(a.members, m)
}

// reportTo makes t fail at its end if calls were cancelled by a crash.
func (a *clusterAlive) reportTo(t testing.TB) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reported[t] {
		return
	}
	a.reported[t] = true
	t.Cleanup(func() {
		a.mu.Lock()
		reason := a.reason
		a.mu.Unlock()
		if reason != "" {
			t.Errorf("gRPC clients of this cluster were cancelled: %s (its log is dumped below or in the parent test)", reason)
		}
	})
}

func (a *clusterAlive) watch(dir string) {
	defer a.cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		if _, err := os.Stat(dir); err != nil {
			return // the test is over
		}
		a.mu.Lock()
		ms := slices.Clone(a.members)
		a.mu.Unlock()
		for _, m := range ms {
			m.mu.Lock()
			started, done, expected, state := m.cmd != nil, m.done, m.expected, m.state
			m.mu.Unlock()
			if !started || expected {
				continue
			}
			select {
			case <-done:
				a.mu.Lock()
				a.reason = fmt.Sprintf("member %d exited unexpectedly: %v", m.ID, state)
				a.mu.Unlock()
				return
			default:
			}
		}
	}
}

// v3ctx is the context of a (sub)test's calls: bounded by one minute for
// all of them together, cancelled in t.Cleanup.
func v3ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ctxFor returns a context bounded by d and its cancel.
func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// WaitV3Ready waits until every running member (or the given ones)
// answers a gRPC Maintenance.Status and agrees with the others on the
// leader. It fails the test quickly with a clear message when the member
// does not speak gRPC at all.
func (c *Cluster) WaitV3Ready(t testing.TB, d time.Duration, idx ...int) {
	t.Helper()
	if len(idx) == 0 {
		idx = c.Running()
	}
	for _, i := range idx {
		cli := c.V3Client(t, i)
		ep := c.Members[i].V3Endpoint()
		c.Eventually(d, fmt.Sprintf("member %d (%s) answers gRPC Maintenance.Status with a leader", c.Members[i].ID, ep), func() error {
			ctx, cancel := ctxFor(2 * time.Second)
			defer cancel()
			s, err := cli.Status(ctx, ep)
			if err != nil {
				return err
			}
			if s.Leader == 0 {
				return fmt.Errorf("status %v: no leader", s)
			}
			return nil
		})
	}
}

// NewV3Cluster starts a cluster as NewCluster does and waits until every
// member serves the v3 gRPC API.
func NewV3Cluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := NewCluster(t, opts)
	c.WaitV3Ready(t, 15*time.Second)
	return c
}

// isV3Err reports whether err is the etcd error want (an rpctypes.Err*
// value): same gRPC code and description, whether err comes from clientv3
// (already converted) or from a raw pb client (a gRPC status).
func isV3Err(err, want error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, want) {
		return true
	}
	got, ok1 := rpctypes.Error(err).(rpctypes.EtcdError)
	w, ok2 := rpctypes.Error(want).(rpctypes.EtcdError)
	return ok1 && ok2 && got.Code() == w.Code() && got.Error() == w.Error()
}

// wantV3Err fails the test unless err is want.
func wantV3Err(t testing.TB, what string, err, want error) {
	t.Helper()
	if !isV3Err(err, want) {
		t.Errorf("%s: error = %v, want %v", what, err, want)
	}
}

// mustV3Put puts key=val through cli and fails the test on error.
func mustV3Put(t testing.TB, cli *clientv3.Client, key, val string, opts ...clientv3.OpOption) *clientv3.PutResponse {
	t.Helper()
	ctx, cancel := ctxFor(v3Timeout)
	defer cancel()
	r, err := cli.Put(ctx, key, val, opts...)
	if err != nil {
		t.Fatalf("v3 Put %q: %v", key, err)
	}
	return r
}

// mustV3Get reads key through cli and fails the test on error.
func mustV3Get(t testing.TB, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	ctx, cancel := ctxFor(v3Timeout)
	defer cancel()
	r, err := cli.Get(ctx, key, opts...)
	if err != nil {
		t.Fatalf("v3 Get %q: %v", key, err)
	}
	return r
}

// kvKeys returns the keys of kvs, in order.
func kvKeys(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}

// kvStrings describes kvs as key=value@mod (for messages and comparisons).
func kvStrings(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = fmt.Sprintf("%s=%s", kv.Key, kv.Value)
	}
	return out
}

// checkKeys fails the test unless kvs hold exactly the keys want, in order.
func checkKeys(t testing.TB, what string, kvs []*mvccpb.KeyValue, want ...string) {
	t.Helper()
	if got := kvKeys(kvs); !slices.Equal(got, want) {
		t.Errorf("%s: keys %q, want %q", what, got, want)
	}
}

// v3Event is a watch event in a comparable form.
type v3Event struct {
	Type  string // PUT or DELETE
	Key   string
	Value string
	Mod   int64
	Prev  string // prev_kv value, "" if none
}

func (e v3Event) String() string {
	s := fmt.Sprintf("%s %s=%q@%d", e.Type, e.Key, short(e.Value), e.Mod)
	if e.Prev != "" {
		s += fmt.Sprintf(" prev=%q", short(e.Prev))
	}
	return s
}

// short cuts long values for messages.
func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s...(%d bytes)", s[:20], len(s))
	}
	return s
}

// waitClosed drains ch until it is closed (true) or d elapses (false).
func waitClosed(ch clientv3.WatchChan, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return true
			}
		case <-timer.C:
			return false
		}
	}
}

func toV3Event(ev *clientv3.Event) v3Event {
	e := v3Event{Type: ev.Type.String(), Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Mod: ev.Kv.ModRevision}
	if ev.PrevKv != nil {
		e.Prev = string(ev.PrevKv.Value)
	}
	return e
}

// collectEvents reads from wch until it has n events or d elapses, and
// returns what it got. A canceled response or a response with an error
// fails the test.
func collectEvents(t testing.TB, wch clientv3.WatchChan, n int, d time.Duration) []v3Event {
	t.Helper()
	var out []v3Event
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(out) < n {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Errorf("watch channel closed after %d of %d events: %v", len(out), n, out)
				return out
			}
			if err := wr.Err(); err != nil {
				t.Errorf("watch response error after %d of %d events: %v", len(out), n, err)
				return out
			}
			for _, ev := range wr.Events {
				out = append(out, toV3Event(ev))
			}
		case <-timer.C:
			t.Errorf("only %d of %d watch events within %v: %v", len(out), n, d, out)
			return out
		}
	}
	return out
}

// noMoreEvents fails the test if wch delivers an event within d.
func noMoreEvents(t testing.TB, wch clientv3.WatchChan, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				return
			}
			if len(wr.Events) > 0 {
				var evs []v3Event
				for _, ev := range wr.Events {
					evs = append(evs, toV3Event(ev))
				}
				t.Errorf("unexpected watch events: %v", evs)
				return
			}
		case <-timer.C:
			return
		}
	}
}

// waitCreated waits for the created notification of a watch opened with
// clientv3.WithCreatedNotify, so that the test writes only once the watch
// is in place.
func waitCreated(t testing.TB, wch clientv3.WatchChan) {
	t.Helper()
	select {
	case wr, ok := <-wch:
		if !ok {
			t.Fatalf("watch channel closed before the created notification")
		}
		if err := wr.Err(); err != nil {
			t.Fatalf("watch creation: %v", err)
		}
		if !wr.Created {
			t.Fatalf("first watch response is not the created notification: %+v", wr)
		}
	case <-time.After(v3Timeout):
		t.Fatalf("no created notification within %v", v3Timeout)
	}
}

// checkHeader fails the test unless h is a complete header from member
// idx: its member id, the cluster id the member reports on /admin/status,
// a revision at least minRev and a raft term > 0.
func (c *Cluster) checkHeader(t testing.TB, what string, h *pb.ResponseHeader, idx int, minRev int64) {
	t.Helper()
	if h == nil {
		t.Errorf("%s: no response header", what)
		return
	}
	m := c.Members[idx]
	if h.MemberId != m.ID {
		t.Errorf("%s: header member_id = %d, want %d (the member that answered)", what, h.MemberId, m.ID)
	}
	if h.ClusterId == 0 {
		t.Errorf("%s: header cluster_id = 0", what)
	} else if s, err := c.Status(idx); err == nil && strconv.FormatUint(h.ClusterId, 16) != s.ClusterID {
		t.Errorf("%s: header cluster_id = %x, but /admin/status says %s", what, h.ClusterId, s.ClusterID)
	}
	if h.Revision < minRev {
		t.Errorf("%s: header revision = %d, want >= %d", what, h.Revision, minRev)
	}
	if h.RaftTerm == 0 {
		t.Errorf("%s: header raft_term = 0", what)
	}
}

// AddMemberV3 registers a new member through the gRPC Cluster API on
// member via (MemberAdd, or MemberAddAsLearner), checks that the id it
// got is the next one (the member's position in --cluster), and returns
// the new member's index without starting it: Start(idx) starts it with
// --join.
func (c *Cluster) AddMemberV3(t testing.TB, via int, learner bool) (int, *clientv3.MemberAddResponse) {
	t.Helper()
	m := c.newMember()
	m.Join = true
	c.alive().add(m)
	idx := len(c.Members) - 1
	cli := c.V3Client(t, via)
	ctx, cancel := ctxFor(v3Timeout)
	defer cancel()
	var (
		r   *clientv3.MemberAddResponse
		err error
	)
	// As etcd, a member refuses additions until every member has started
	// and it is connected to them (the quorum check); right after a start
	// or a restart that can take a moment: retry those refusals only.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if learner {
			r, err = cli.MemberAddAsLearner(ctx, []string{m.PeerURL})
		} else {
			r, err = cli.MemberAdd(ctx, []string{m.PeerURL})
		}
		if !(isV3Err(err, rpctypes.ErrUnhealthy) || isV3Err(err, rpctypes.ErrMemberNotEnoughStarted)) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("MemberAdd(%s, learner=%v) via member %d: %v", m.PeerURL, learner, c.Members[via].ID, err)
	}
	if r.Member == nil || r.Member.ID != m.ID {
		t.Fatalf("MemberAdd(%s) returned member %v, want id %d (the next free id)", m.PeerURL, r.Member, m.ID)
	}
	return idx, r
}

// expectExit tells the harness (and the watchdog) that member i's process
// is about to exit by itself, e.g. because the test removes it.
func (c *Cluster) expectExit(i int) {
	m := c.Members[i]
	m.mu.Lock()
	m.expected = true
	m.mu.Unlock()
}

// v3MemberList returns the member list as member idx answers it.
func (c *Cluster) v3MemberList(t testing.TB, idx int) *clientv3.MemberListResponse {
	t.Helper()
	cli := c.V3Client(t, idx)
	ctx, cancel := ctxFor(v3Timeout)
	defer cancel()
	r, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("MemberList via member %d: %v", c.Members[idx].ID, err)
	}
	return r
}

// describeMembers prints a member list compactly.
func describeMembers(ms []*pb.Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "{id=%d name=%q peers=%v clients=%v learner=%v} ", m.ID, m.Name, m.PeerURLs, m.ClientURLs, m.IsLearner)
	}
	return b.String()
}
