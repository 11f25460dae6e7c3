package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// ErrStopped is returned by calls on a Node that has stopped.
var ErrStopped = errors.New("consensus: node stopped")

// Transport delivers raft messages to peers. Send must not block for long:
// it runs on the Node goroutine.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// SnapshotSender streams the state for a MsgSnap to its destination. It is
// called on the Node goroutine and must hand the work to another goroutine.
type SnapshotSender func(m *raftpb.Message)

// Config configures a Node.
type Config struct {
	ID     uint64
	Logger *zap.Logger
	// TickInterval is the length of one raft tick; HeartbeatTicks and
	// ElectionTicks count in ticks.
	TickInterval   time.Duration
	HeartbeatTicks int
	ElectionTicks  int
	// Peers bootstraps a brand-new cluster; empty to join one or restart.
	Peers []raft.Peer
	// Join starts a member with an empty log that waits for the leader.
	Join bool
	// Applied is the highest index the state machine is known to hold; the
	// snapshot index is always safe.
	Applied uint64

	Transport Transport
	Snapshots SnapshotSender
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("consensus: member id must not be 0")
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 1
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("consensus: election ticks (%d) must exceed heartbeat ticks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.Transport == nil {
		return errors.New("consensus: no transport")
	}
	return nil
}

func (c *Config) validateFor(boot *Bootstrap) error {
	if boot.Fresh && !c.Join && len(c.Peers) == 0 {
		return errors.New("consensus: a new cluster needs its initial peers (or Join to join one)")
	}
	return nil
}

// Apply is one batch of work for the state machine, in log order: first
// the snapshot to install, if any, then the committed entries.
type Apply struct {
	Snapshot *raftpb.Snapshot
	Entries  []*raftpb.Entry
	// persisted is closed once the Ready this batch came from is on disk,
	// or could not be written (then err is set first).
	persisted chan struct{}
	err       error
	// stable is set when every entry was already durable before the
	// Ready (and there is no snapshot): nothing to wait for.
	stable bool
}

// WaitPersisted blocks until the batch's Ready is durable in the local WAL
// and returns an error if it could not be made so. Entries may be applied
// before that (they are committed on a quorum), but the state machine must
// not record an applied index ahead of the local log, nor install a
// snapshot that the WAL does not know of yet.
func (a *Apply) WaitPersisted() error {
	if a.stable {
		return nil
	}
	<-a.persisted
	return a.err
}

// Node runs the raft state machine of one member.
type Node struct {
	cfg     Config
	lg      *zap.Logger
	disk    *Disk
	storage *raft.MemoryStorage
	node    raft.Node

	applyc chan *Apply
	readc  chan raft.ReadState

	// lead, term and role are written by the Node goroutine only.
	lead atomic.Uint64
	role atomic.Int32
	term atomic.Uint64
	// leaderChanges counts the leaders this member has seen, as etcd's
	// etcd_server_leader_changes_seen_total: a change to no leader is not
	// one.
	leaderChanges atomic.Uint64

	// handed is the last index handed to the apply side, written by the
	// Node goroutine only. The apply side may apply an entry before raft
	// counts it as applied: it need not wait for the Ready's fsync (see
	// handleReady), and raft.Node takes Advance on its own goroutine.
	handed atomic.Uint64

	leaderMu      sync.Mutex
	leaderChanged chan struct{} // closed and replaced on every leader change

	stopc chan struct{}
	donec chan struct{}
	err   error // set before donec is closed
	stop  sync.Once
}

// NewNode starts raft over what Bootstrap found on disk. Run must be called
// to drive it.
func NewNode(cfg Config, disk *Disk, boot *Bootstrap) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := cfg.validateFor(boot); err != nil {
		return nil, err
	}
	ms, err := boot.NewMemoryStorage()
	if err != nil {
		return nil, err
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   ms,
		Applied:                   cfg.Applied,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  16 << 20,
		MaxUncommittedEntriesSize: 1 << 30,
		MaxInflightMsgs:           512,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    newRaftLogger(cfg.Logger),
	}
	n := &Node{
		cfg:           cfg,
		lg:            cfg.Logger,
		disk:          disk,
		storage:       ms,
		applyc:        make(chan *Apply, 64),
		readc:         make(chan raft.ReadState, 64),
		leaderChanged: make(chan struct{}),
		stopc:         make(chan struct{}),
		donec:         make(chan struct{}),
	}
	// A Ready carries the HardState only when it changes: a member that
	// restarts into a term that goes on would report term 0 until the
	// next commit without the one it persisted.
	hs, _, err := ms.InitialState()
	if err != nil {
		return nil, fmt.Errorf("consensus: reading the persisted hard state: %w", err)
	}
	n.term.Store(hs.GetTerm())
	if boot.Fresh && !cfg.Join {
		n.node = raft.StartNode(rc, cfg.Peers)
	} else {
		n.node = raft.RestartNode(rc)
	}
	return n, nil
}

// Run is the Node goroutine. It returns when the node stops, with the
// error that stopped it, if any.
func (n *Node) Run() error {
	defer close(n.donec)
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			n.node.Tick()
		case rd := <-n.node.Ready():
			if err := n.handleReady(&rd); err != nil {
				n.err = err
				n.lg.Error("raft loop stopped: cannot persist", zap.Error(err))
				n.node.Stop()
				return err
			}
		case <-n.stopc:
			n.node.Stop()
			return nil
		}
	}
}

func (n *Node) handleReady(rd *raft.Ready) (err error) {
	if rd.SoftState != nil {
		n.role.Store(int32(rd.RaftState))
		if old := n.lead.Swap(rd.Lead); old != rd.Lead {
			n.lg.Info("leader changed", zap.Uint64("from", old), zap.Uint64("to", rd.Lead))
			if rd.Lead != raft.None {
				n.leaderChanges.Add(1)
			}
			n.leaderMu.Lock()
			close(n.leaderChanged)
			n.leaderChanged = make(chan struct{})
			n.leaderMu.Unlock()
		}
	}
	if t := rd.HardState.GetTerm(); t > 0 {
		n.term.Store(t)
	}
	for _, rs := range rd.ReadStates {
		select {
		case n.readc <- rs:
		default:
			n.lg.Warn("read state dropped: reader not keeping up", zap.Uint64("index", rs.Index))
		}
	}

	ap := &Apply{Snapshot: rd.Snapshot, Entries: rd.CommittedEntries, persisted: make(chan struct{})}
	if k := len(ap.Entries); k > 0 && raft.IsEmptySnap(ap.Snapshot) {
		// The raft log in memory holds exactly what earlier Readies wrote.
		// Committed entries it already holds need not wait for this
		// Ready's fsync: on a busy leader that is every batch, and the
		// wait would put one more fsync into every write's latency.
		if durable, err := n.storage.LastIndex(); err == nil && ap.Entries[k-1].GetIndex() <= durable {
			ap.stable = true
		}
	}
	if len(ap.Entries) > 0 || !raft.IsEmptySnap(ap.Snapshot) {
		last := ap.Snapshot.GetMetadata().GetIndex()
		if k := len(ap.Entries); k > 0 {
			last = ap.Entries[k-1].GetIndex()
		}
		n.handed.Store(last)
		select {
		case n.applyc <- ap:
		case <-n.stopc:
			return nil
		}
	}
	defer func() {
		// Release the apply side whatever happens; it must not wait forever
		// on a batch that will never be durable.
		if err != nil {
			ap.err = err
			close(ap.persisted)
		}
	}()

	isLeader := raft.StateType(n.role.Load()) == raft.StateLeader
	if isLeader {
		// The leader may replicate while it writes its own log (§10.2.1).
		n.send(rd.Messages)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.disk.SaveSnap(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := n.disk.Save(rd.HardState, rd.Entries); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The hard state that commits the snapshot's index must be on disk
		// before the state machine installs it (and so gets ahead of what
		// the WAL would otherwise replay), and before older WAL files go.
		if err := n.disk.Sync(); err != nil {
			return err
		}
		if err := n.storage.ApplySnapshot(rd.Snapshot); err != nil {
			return fmt.Errorf("consensus: apply snapshot to raft log: %w", err)
		}
		if err := n.disk.Release(rd.Snapshot); err != nil {
			return err
		}
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return fmt.Errorf("consensus: append to raft log: %w", err)
	}
	close(ap.persisted)
	if !isLeader {
		// Votes and acknowledgements promise what is now on disk.
		n.send(rd.Messages)
	}
	n.node.Advance()
	return nil
}

func (n *Node) send(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() == raftpb.MsgSnap && n.cfg.Snapshots != nil {
			n.cfg.Snapshots(m)
			continue
		}
		out = append(out, m)
	}
	n.cfg.Transport.Send(out)
}

// Stop stops the node and waits for its goroutine to finish.
func (n *Node) Stop() {
	n.stop.Do(func() { close(n.stopc) })
	<-n.donec
}

// Done is closed when the node goroutine has returned.
func (n *Node) Done() <-chan struct{} { return n.donec }

// Err is the error that stopped the node, valid after Done is closed.
func (n *Node) Err() error {
	<-n.donec
	return n.err
}

// Applies delivers batches of committed work in log order.
func (n *Node) Applies() <-chan *Apply { return n.applyc }

// ReadStates delivers the answers to ReadIndex requests.
func (n *Node) ReadStates() <-chan raft.ReadState { return n.readc }

// Propose proposes data to be appended to the log. Like raft.Node.Propose
// it returns raft.ErrProposalDropped when there is no leader to take it.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	return n.node.Propose(ctx, data)
}

// ProposeConfChange proposes a membership change. It first waits until
// raft counts as applied every entry already handed to the apply side: the
// leader's raft refuses a conf change while an earlier one may be unapplied,
// turning it into an empty entry whose proposer then waits in vain, and the
// apply side can apply an entry (and answer its proposer) before raft is
// advanced past it. So conf changes proposed one after another on the
// leader are all taken; one reaching the leader from a follower may still
// be refused, as in etcd.
func (n *Node) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	// Status asks raft's own goroutine, so it sees every Advance taken.
	if want := n.handed.Load(); n.node.Status().Applied < want {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for n.node.Status().Applied < want {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-n.donec:
				return raft.ErrStopped
			case <-tick.C:
			}
		}
	}
	return n.node.ProposeConfChange(ctx, cc)
}

// ApplyConfChange applies a committed membership change to raft.
func (n *Node) ApplyConfChange(cc *raftpb.ConfChange) *raftpb.ConfState {
	return n.node.ApplyConfChange(cc)
}

// ReadIndex asks for the commit index that a linearizable read must wait
// for; the answer comes on ReadStates with the same rctx.
func (n *Node) ReadIndex(ctx context.Context, rctx []byte) error {
	return n.node.ReadIndex(ctx, rctx)
}

// TransferLeadership asks the leader to hand over to transferee.
func (n *Node) TransferLeadership(ctx context.Context, lead, transferee uint64) {
	n.node.TransferLeadership(ctx, lead, transferee)
}

// Process steps a message received from a peer.
func (n *Node) Process(ctx context.Context, m *raftpb.Message) error {
	return n.node.Step(ctx, m)
}

// ReportUnreachable tells raft a peer could not be reached.
func (n *Node) ReportUnreachable(id uint64) { n.node.ReportUnreachable(id) }

// ReportSnapshot tells raft how sending a snapshot ended.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	n.node.ReportSnapshot(id, status)
}

// Leader is the current leader's id, 0 when none is known.
func (n *Node) Leader() uint64 { return n.lead.Load() }

// LeaderChanges is how many times this member has seen a new leader.
func (n *Node) LeaderChanges() uint64 { return n.leaderChanges.Load() }

// Term is the raft term as of the last Ready.
func (n *Node) Term() uint64 { return n.term.Load() }

// Role is this member's raft role.
func (n *Node) Role() raft.StateType { return raft.StateType(n.role.Load()) }

// LeaderChanged returns a channel closed at the next leader change.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderChanged
}

// Status is raft's view of this member.
func (n *Node) Status() raft.Status { return n.node.Status() }

// Snapshot records a snapshot of the state machine at index i (whose state
// is already durable, in the engine or in a state file) and compacts the
// raft log, keeping keep entries before i for slow followers.
func (n *Node) Snapshot(i uint64, cs *raftpb.ConfState, data []byte, keep uint64) error {
	return n.snapshot(i, cs, data, keep, true)
}

// CompactLog records a snapshot at index i in raft's in-memory log only and
// compacts that log, keeping keep entries before i: the WAL and the
// snapshots on disk are left as they are, so a restart still starts from
// the newest snapshot on disk and replays the WAL after it. For a state
// that is not durable at i; a follower that needs a compacted entry gets a
// snapshot streamed from the live state.
func (n *Node) CompactLog(i uint64, cs *raftpb.ConfState, data []byte, keep uint64) error {
	return n.snapshot(i, cs, data, keep, false)
}

func (n *Node) snapshot(i uint64, cs *raftpb.ConfState, data []byte, keep uint64, onDisk bool) error {
	// raft's MemoryStorage panics on a snapshot past its log.
	if last, err := n.storage.LastIndex(); err != nil || i > last {
		return fmt.Errorf("consensus: snapshot at %d is past the raft log's last index %d (%v)", i, last, err)
	}
	s, err := n.storage.CreateSnapshot(i, cs, data)
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("consensus: create snapshot at %d: %w", i, err)
	}
	if onDisk {
		if err := n.disk.SaveSnap(s); err != nil {
			return err
		}
		if err := n.disk.Release(s); err != nil {
			return err
		}
	}
	if i > keep {
		if err := n.storage.Compact(i - keep); err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("consensus: compact raft log to %d: %w", i-keep, err)
		}
	}
	return nil
}

// SnapshotIndex is the index of the newest snapshot in the raft log.
func (n *Node) SnapshotIndex() uint64 {
	s, err := n.storage.Snapshot()
	if err != nil {
		return 0
	}
	return s.GetMetadata().GetIndex()
}

// LastSnapshot returns the newest snapshot in the raft log.
func (n *Node) LastSnapshot() (*raftpb.Snapshot, error) { return n.storage.Snapshot() }
