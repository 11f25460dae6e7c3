package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
)

// Timing for the in-process clusters: a 10ms tick and a 10-tick election
// timeout give elections in a few hundred milliseconds even under -race.
const (
	testTick           = 10 * time.Millisecond
	testElectionTicks  = 10
	testHeartbeatTicks = 1

	// waitTimeout bounds every wait in these tests.
	waitTimeout = 15 * time.Second
)

// testLogger is silent unless METCD_TEST_RAFT_LOG is set.
func testLogger(t testing.TB) *zap.Logger {
	if os.Getenv("METCD_TEST_RAFT_LOG") != "" {
		return zaptest.NewLogger(t)
	}
	return zap.NewNop()
}

// ---------------------------------------------------------------------------
// In-process network

// network delivers raft messages between the nodes of one test cluster. Each
// destination has its own queue and delivery goroutine, so Send never blocks
// the sender's Ready loop. Traffic between pairs of nodes can be cut.
type network struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	nodes  map[uint64]*Node           // running node per id; absent when stopped
	queues map[uint64]*queue          // per destination, lives as long as the network
	cut    map[[2]uint64]bool         // [from, to] -> drop
	sent   map[raftpb.MessageType]int // delivered messages by type, for assertions
	// violations records acknowledgements sent before what they promise
	// was in the sender's log (see chanTransport.Send).
	violations []string
}

type queue struct {
	mu     sync.Mutex
	msgs   []*raftpb.Message
	notify chan struct{}
}

func newNetwork() *network {
	ctx, cancel := context.WithCancel(context.Background())
	return &network{
		ctx:    ctx,
		cancel: cancel,
		nodes:  map[uint64]*Node{},
		queues: map[uint64]*queue{},
		cut:    map[[2]uint64]bool{},
		sent:   map[raftpb.MessageType]int{},
	}
}

// register makes id reachable through n, starting its delivery goroutine the
// first time the id is seen.
func (nw *network) register(id uint64, n *Node) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.nodes[id] = n
	if _, ok := nw.queues[id]; ok {
		return
	}
	q := &queue{notify: make(chan struct{}, 1)}
	nw.queues[id] = q
	nw.wg.Add(1)
	go nw.deliverLoop(id, q)
}

// unregister makes id unreachable (messages to it are dropped).
func (nw *network) unregister(id uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	delete(nw.nodes, id)
}

// isolate cuts all traffic between id and every other node, both ways.
func (nw *network) isolate(id uint64, others ...uint64) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, o := range others {
		nw.cut[[2]uint64{id, o}] = true
		nw.cut[[2]uint64{o, id}] = true
	}
}

// heal restores all traffic.
func (nw *network) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.cut)
}

func (nw *network) delivered(t raftpb.MessageType) int {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.sent[t]
}

func (nw *network) close() {
	nw.cancel()
	nw.wg.Wait()
}

// transport returns the Transport of node from.
func (nw *network) transport(from uint64) Transport { return &chanTransport{nw: nw, from: from} }

type chanTransport struct {
	nw   *network
	from uint64
}

// Send copies each message through its wire encoding (so no memory is shared
// between nodes) and queues it for its destination. It never blocks.
func (tr *chanTransport) Send(msgs []*raftpb.Message) {
	tr.nw.mu.Lock()
	self := tr.nw.nodes[tr.from]
	tr.nw.mu.Unlock()
	for _, m := range msgs {
		if m.GetFrom() != tr.from {
			panic(fmt.Sprintf("node %d sent a message from %d", tr.from, m.GetFrom()))
		}
		// A follower acknowledges entries only once they are persisted; the
		// driver appends to the raft log right after the WAL write, so the
		// acknowledged index must already be in the sender's raft log.
		if self != nil && m.GetType() == raftpb.MsgAppResp && !m.GetReject() {
			if last, _ := self.storage.LastIndex(); last < m.GetIndex() {
				tr.nw.mu.Lock()
				tr.nw.violations = append(tr.nw.violations, fmt.Sprintf("member %d acknowledged index %d with only %d in its log", tr.from, m.GetIndex(), last))
				tr.nw.mu.Unlock()
			}
		}
		b, err := proto.Marshal(m)
		if err != nil {
			panic(err)
		}
		cp := &raftpb.Message{}
		if err := proto.Unmarshal(b, cp); err != nil {
			panic(err)
		}
		tr.nw.mu.Lock()
		q := tr.nw.queues[m.GetTo()]
		tr.nw.mu.Unlock()
		if q == nil {
			continue // unknown destination: dropped
		}
		q.mu.Lock()
		q.msgs = append(q.msgs, cp)
		q.mu.Unlock()
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
}

func (nw *network) deliverLoop(to uint64, q *queue) {
	defer nw.wg.Done()
	for {
		select {
		case <-nw.ctx.Done():
			return
		case <-q.notify:
		}
		q.mu.Lock()
		batch := q.msgs
		q.msgs = nil
		q.mu.Unlock()
		for _, m := range batch {
			nw.deliver(to, m)
		}
	}
}

// deliver steps m on its destination, unless the destination is down or the
// link is cut. A MsgSnap's outcome is reported back to its sender, as a real
// snapshot transport must.
func (nw *network) deliver(to uint64, m *raftpb.Message) {
	nw.mu.Lock()
	dst := nw.nodes[to]
	src := nw.nodes[m.GetFrom()]
	dropped := dst == nil || nw.cut[[2]uint64{m.GetFrom(), to}]
	if !dropped {
		nw.sent[m.GetType()]++
	}
	nw.mu.Unlock()

	var err error
	if !dropped {
		ctx, cancel := context.WithTimeout(nw.ctx, time.Second)
		err = dst.Process(ctx, m)
		cancel()
	}
	if m.GetType() == raftpb.MsgSnap && src != nil {
		status := raft.SnapshotFinish
		if dropped || err != nil {
			status = raft.SnapshotFailure
		}
		src.ReportSnapshot(to, status)
	}
}

// ---------------------------------------------------------------------------
// State machine

// appliedEntry is one normal entry as the state machine saw it.
type appliedEntry struct {
	Index uint64
	Data  string
}

// stateMachine is a tiny key-value store fed from Node.Applies: normal
// entries carry "key=value", conf changes go back to raft.
type stateMachine struct {
	mu        sync.Mutex
	kv        map[string]string
	keyIndex  map[string]uint64 // key -> index of the entry that last set it
	log       []appliedEntry    // normal entries with data, in apply order
	applied   uint64            // recorded only once the batch is persisted
	firstSeen uint64            // index of the first entry ever applied (0: none)
	confState *raftpb.ConfState
	snapshots int // snapshots installed from Applies
	// abandoned holds batches whose Ready never became durable because the
	// node stopped on an error.
	abandoned []*Apply
	err       error
	changed   chan struct{} // closed and replaced on every applied batch
}

type snapshotData struct {
	KV       map[string]string
	KeyIndex map[string]uint64
	Log      []appliedEntry
}

func newStateMachine() *stateMachine {
	return &stateMachine{
		kv:       map[string]string{},
		keyIndex: map[string]uint64{},
		changed:  make(chan struct{}),
	}
}

// restore replaces the state with a snapshot's.
func (sm *stateMachine) restore(s *raftpb.Snapshot) error {
	var d snapshotData
	if err := json.Unmarshal(s.GetData(), &d); err != nil {
		return fmt.Errorf("decode snapshot %d: %w", s.GetMetadata().GetIndex(), err)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	sm.kv = d.KV
	if sm.kv == nil {
		sm.kv = map[string]string{}
	}
	sm.keyIndex = d.KeyIndex
	if sm.keyIndex == nil {
		sm.keyIndex = map[string]uint64{}
	}
	sm.log = d.Log
	sm.applied = s.GetMetadata().GetIndex()
	sm.confState = proto.Clone(s.GetMetadata().GetConfState()).(*raftpb.ConfState)
	sm.notifyLocked()
	return nil
}

// snapshot returns the applied index, membership and encoded state, all
// consistent with each other.
func (sm *stateMachine) snapshot() (uint64, *raftpb.ConfState, []byte) {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	b, err := json.Marshal(snapshotData{KV: sm.kv, KeyIndex: sm.keyIndex, Log: sm.log})
	if err != nil {
		panic(err)
	}
	return sm.applied, proto.Clone(sm.confState).(*raftpb.ConfState), b
}

func (sm *stateMachine) notifyLocked() {
	close(sm.changed)
	sm.changed = make(chan struct{})
}

// run consumes n.Applies until n stops.
func (sm *stateMachine) run(n *Node) {
	for {
		select {
		case ap := <-n.Applies():
			if err := sm.apply(n, ap); err != nil {
				sm.mu.Lock()
				sm.err = err
				sm.notifyLocked()
				sm.mu.Unlock()
				return
			}
		case <-n.Done():
			return
		}
	}
}

func (sm *stateMachine) apply(n *Node, ap *Apply) error {
	if !raft.IsEmptySnap(ap.Snapshot) {
		if !sm.waitPersisted(n, ap) {
			return nil
		}
		if err := sm.restore(ap.Snapshot); err != nil {
			return err
		}
		sm.mu.Lock()
		sm.snapshots++
		sm.mu.Unlock()
	}
	type kvSet struct {
		index    uint64
		key, val string
	}
	var (
		sets []kvSet
		cs   *raftpb.ConfState
		last uint64
	)
	sm.mu.Lock()
	applied := sm.applied
	sm.mu.Unlock()
	for _, e := range ap.Entries {
		idx := e.GetIndex()
		if idx <= applied {
			return fmt.Errorf("entry %d delivered again after applied %d", idx, applied)
		}
		if last != 0 && idx != last+1 {
			return fmt.Errorf("entry %d delivered after %d: gap", idx, last)
		}
		if last == 0 && applied != 0 && idx != applied+1 {
			return fmt.Errorf("entry %d delivered after applied %d: gap", idx, applied)
		}
		last = idx
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) == 0 {
				continue
			}
			k, v, ok := strings.Cut(string(e.GetData()), "=")
			if !ok {
				return fmt.Errorf("entry %d: bad data %q", idx, e.GetData())
			}
			sets = append(sets, kvSet{idx, k, v})
		case raftpb.EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return fmt.Errorf("entry %d: decode conf change: %w", idx, err)
			}
			if c := n.ApplyConfChange(cc); c != nil {
				cs = c
			}
		default:
			return fmt.Errorf("entry %d: unexpected type %v", idx, e.GetType())
		}
	}
	// Never record an applied index ahead of the local log.
	if !sm.waitPersisted(n, ap) {
		return nil
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	for _, s := range sets {
		sm.kv[s.key] = s.val
		sm.keyIndex[s.key] = s.index
		sm.log = append(sm.log, appliedEntry{s.index, s.key + "=" + s.val})
	}
	if cs != nil {
		sm.confState = cs
	}
	if last != 0 {
		if sm.firstSeen == 0 {
			sm.firstSeen = ap.Entries[0].GetIndex()
		}
		sm.applied = last
	}
	sm.notifyLocked()
	return nil
}

// waitPersisted waits for the batch's Ready to be durable; a batch whose
// Ready failed to persist is recorded as abandoned.
func (sm *stateMachine) waitPersisted(_ *Node, ap *Apply) bool {
	if err := ap.WaitPersisted(); err != nil {
		sm.mu.Lock()
		sm.abandoned = append(sm.abandoned, ap)
		sm.mu.Unlock()
		return false
	}
	return true
}

type smView struct {
	kv        map[string]string
	keyIndex  map[string]uint64
	log       []appliedEntry
	applied   uint64
	firstSeen uint64
	voters    []uint64
	snapshots int
	err       error
}

func (sm *stateMachine) view() smView {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	v := smView{
		kv:        maps.Clone(sm.kv),
		keyIndex:  maps.Clone(sm.keyIndex),
		log:       slices.Clone(sm.log),
		applied:   sm.applied,
		firstSeen: sm.firstSeen,
		snapshots: sm.snapshots,
		err:       sm.err,
	}
	if sm.confState != nil {
		v.voters = slices.Sorted(slices.Values(sm.confState.GetVoters()))
	}
	return v
}

// ---------------------------------------------------------------------------
// Cluster

type member struct {
	id      uint64
	dir     string
	disk    *Disk
	boot    *Bootstrap
	node    *Node
	sm      *stateMachine
	runErr  chan error
	smDone  chan struct{}
	running bool
	// startTerm is Term() as NewNode returned, before any Ready.
	startTerm uint64
}

type cluster struct {
	t       *testing.T
	lg      *zap.Logger
	net     *network
	members map[uint64]*member
	root    string // holds the members' dirs
}

// memberDir makes a fresh dir for member id under the cluster's root.
func (c *cluster) memberDir(id uint64) string {
	c.t.Helper()
	dir, err := os.MkdirTemp(c.root, fmt.Sprintf("m%d-", id))
	if err != nil {
		c.t.Fatal(err)
	}
	return dir
}

// newCluster starts a brand-new cluster of members 1..size.
func newCluster(t *testing.T, size int) *cluster {
	t.Helper()
	// The root dir is taken before shutdown is registered: cleanups run
	// last first, so the nodes stop before their files are removed.
	c := &cluster{t: t, lg: testLogger(t), net: newNetwork(), members: map[uint64]*member{}, root: t.TempDir()}
	t.Cleanup(c.shutdown)
	var peers []raft.Peer
	for id := uint64(1); id <= uint64(size); id++ {
		peers = append(peers, raft.Peer{ID: id})
	}
	for id := uint64(1); id <= uint64(size); id++ {
		c.members[id] = &member{id: id, dir: c.memberDir(id)}
	}
	for id := uint64(1); id <= uint64(size); id++ {
		c.start(id, peers, false)
	}
	return c
}

// start opens member id's disk and starts its node and state machine.
func (c *cluster) start(id uint64, peers []raft.Peer, join bool) *member {
	c.t.Helper()
	m := c.members[id]
	if m == nil {
		m = &member{id: id, dir: c.memberDir(id)}
		c.members[id] = m
	}
	if m.running {
		c.t.Fatalf("member %d already running", id)
	}
	disk, boot, err := OpenDisk(c.lg.Named(fmt.Sprint(id)), m.dir, []byte(fmt.Sprintf("member-%d", id)))
	if err != nil {
		c.t.Fatalf("member %d: OpenDisk: %v", id, err)
	}
	sm := newStateMachine()
	if boot.Snapshot != nil {
		if err := sm.restore(boot.Snapshot); err != nil {
			c.t.Fatalf("member %d: %v", id, err)
		}
	}
	n, err := NewNode(Config{
		ID:             id,
		Logger:         c.lg.Named(fmt.Sprint(id)),
		TickInterval:   testTick,
		HeartbeatTicks: testHeartbeatTicks,
		ElectionTicks:  testElectionTicks,
		Peers:          peers,
		Join:           join,
		Applied:        boot.SnapshotIndex(),
		Transport:      c.net.transport(id),
	}, disk, boot)
	if err != nil {
		disk.Close()
		c.t.Fatalf("member %d: NewNode: %v", id, err)
	}
	m.disk, m.boot, m.node, m.sm = disk, boot, n, sm
	m.startTerm = n.Term()
	m.runErr = make(chan error, 1)
	m.smDone = make(chan struct{})
	m.running = true
	c.net.register(id, n)
	go func() { m.runErr <- n.Run() }()
	go func() { defer close(m.smDone); sm.run(n) }()
	return m
}

// restart starts a stopped member again from its disk.
func (c *cluster) restart(id uint64) *member {
	c.t.Helper()
	return c.start(id, nil, false)
}

// stop stops member id's node and state machine and closes its disk.
func (c *cluster) stop(id uint64) {
	c.t.Helper()
	m := c.members[id]
	if m == nil || !m.running {
		return
	}
	m.running = false
	c.net.unregister(id)
	m.node.Stop()
	if err := <-m.runErr; err != nil {
		c.t.Errorf("member %d: Run returned %v", id, err)
	}
	<-m.smDone
	if err := m.disk.Close(); err != nil {
		c.t.Errorf("member %d: close disk: %v", id, err)
	}
	if err := m.sm.view().err; err != nil {
		c.t.Errorf("member %d: state machine: %v", id, err)
	}
}

// reap cleans up after member id's node stopped by itself, and returns the
// error it stopped with.
func (c *cluster) reap(id uint64) error {
	c.t.Helper()
	m := c.members[id]
	var err error
	select {
	case err = <-m.runErr:
	case <-time.After(waitTimeout):
		c.t.Fatalf("member %d did not stop by itself", id)
	}
	m.running = false
	c.net.unregister(id)
	m.node.Stop()
	<-m.smDone
	_ = m.disk.Close() // may fail after a disk fault
	return err
}

// abandoned returns the batches member id's state machine got but whose
// Ready never became durable.
func (c *cluster) abandoned(id uint64) []*Apply {
	sm := c.members[id].sm
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return slices.Clone(sm.abandoned)
}

func (c *cluster) shutdown() {
	for _, id := range c.ids() {
		c.stop(id)
	}
	c.net.close()
	c.net.mu.Lock()
	v := c.net.violations
	c.net.mu.Unlock()
	if len(v) > 0 {
		c.t.Errorf("%d acknowledgements sent before persisting, first: %s", len(v), v[0])
	}
}

// ids returns the running members' ids, sorted.
func (c *cluster) ids() []uint64 {
	var ids []uint64
	for id, m := range c.members {
		if m.running {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func (c *cluster) node(id uint64) *Node { return c.members[id].node }

func (c *cluster) view(id uint64) smView { return c.members[id].sm.view() }

// eventually polls cond until it holds or waitTimeout passes.
func (c *cluster) eventually(what string, cond func() (bool, string)) {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last string
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		if time.Now().After(deadline) {
			c.t.Fatalf("timed out after %v waiting for %s: %s", waitTimeout, what, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// leaderStatus returns the raft status of the member of ids in the leader
// role, if one is: leadership may move while a test polls, and only a
// leader's status holds its followers' progress.
func (c *cluster) leaderStatus(ids ...uint64) (raft.Status, bool) {
	for _, id := range ids {
		if c.node(id).Role() == raft.StateLeader {
			return c.node(id).Status(), true
		}
	}
	return raft.Status{}, false
}

// waitLeader waits until every member in ids names the same leader, one of
// ids, which itself is in the leader role. It returns the leader's id.
func (c *cluster) waitLeader(ids ...uint64) uint64 {
	c.t.Helper()
	var lead uint64
	c.eventually(fmt.Sprintf("a leader among %v", ids), func() (bool, string) {
		lead = c.node(ids[0]).Leader()
		var views []string
		ok := lead != 0 && slices.Contains(ids, lead)
		for _, id := range ids {
			l := c.node(id).Leader()
			views = append(views, fmt.Sprintf("%d->%d", id, l))
			ok = ok && l == lead
		}
		if ok && c.node(lead).Role() != raft.StateLeader {
			ok = false
		}
		return ok, strings.Join(views, " ")
	})
	return lead
}

// propose proposes key=val through member via until via has applied it,
// proposing again if the proposal was lost (raft does not promise delivery).
// It returns the entry index.
func (c *cluster) propose(via uint64, key, val string) uint64 {
	c.t.Helper()
	data := []byte(key + "=" + val)
	deadline := time.Now().Add(waitTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.node(via).Propose(ctx, data)
		cancel()
		if err != nil {
			lastErr = err
			time.Sleep(10 * time.Millisecond)
			continue
		}
		retry := time.Now().Add(2 * time.Second)
		for time.Now().Before(retry) {
			v := c.view(via)
			if v.kv[key] == val {
				return v.keyIndex[key]
			}
			time.Sleep(5 * time.Millisecond)
		}
		lastErr = errors.New("proposal accepted but not applied")
	}
	c.t.Fatalf("propose %s=%s via %d: %v", key, val, via, lastErr)
	return 0
}

// waitConverged waits until the members in ids have applied the same index
// and hold the same data and apply log, and returns that view.
func (c *cluster) waitConverged(ids ...uint64) smView {
	c.t.Helper()
	var first smView
	c.eventually(fmt.Sprintf("members %v to converge", ids), func() (bool, string) {
		first = c.view(ids[0])
		if first.err != nil {
			c.t.Fatalf("member %d: %v", ids[0], first.err)
		}
		for _, id := range ids[1:] {
			v := c.view(id)
			if v.err != nil {
				c.t.Fatalf("member %d: %v", id, v.err)
			}
			if v.applied != first.applied {
				return false, fmt.Sprintf("member %d applied %d, member %d applied %d", ids[0], first.applied, id, v.applied)
			}
			if !reflect.DeepEqual(v.kv, first.kv) {
				return false, fmt.Sprintf("member %d kv %v != member %d kv %v", id, v.kv, ids[0], first.kv)
			}
			if !reflect.DeepEqual(v.log, first.log) {
				return false, fmt.Sprintf("member %d apply log %v != member %d apply log %v", id, v.log, ids[0], first.log)
			}
		}
		return true, ""
	})
	return first
}

// waitKey waits until every member in ids has key=val.
func (c *cluster) waitKey(key, val string, ids ...uint64) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("%s=%s on %v", key, val, ids), func() (bool, string) {
		for _, id := range ids {
			if got := c.view(id).kv[key]; got != val {
				return false, fmt.Sprintf("member %d has %s=%q", id, key, got)
			}
		}
		return true, ""
	})
}

// walFiles lists the WAL segment files under a member directory.
func walFiles(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
