package server

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metcd/metcd/consensus"
	"github.com/metcd/metcd/internal/fsutil"
	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/transport"
	"github.com/metcd/metcd/watch"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
	"go.etcd.io/etcd/pkg/v3/idutil"
	"go.etcd.io/etcd/pkg/v3/wait"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Server is one running member.
type Server struct {
	cfg       Config
	lg        *zap.Logger
	id        uint64
	clusterID uint64
	// restoring is set while Open starts a new member from a backup;
	// backup is that file, open from its check until it is loaded.
	restoring bool
	backup    *backupFile

	store  *kvstore.Store
	mv     *mvcc.Store
	lessor *lease.Lessor
	hub    *watch.Hub
	alarms alarmSet
	// compactc feeds the physical compactor; compactedWait tells who
	// waits (Compact with physical) that it finished.
	compactc      chan int64
	compactedWait wait.WaitTime
	disk          *consensus.Disk
	node          *consensus.Node
	tr            *transport.Transport

	w           wait.Wait // request id -> result, triggered by apply
	reqIDs      *idutil.Generator
	appliedWait wait.WaitTime // applied index notifications

	// memMu guards the membership cache; the apply goroutine writes it.
	memMu   sync.RWMutex
	members map[uint64]kvstore.Member
	removed map[uint64]bool
	// learner mirrors members[id].IsLearner for the gRPC server's check
	// of every request (IsLearner), without memMu; written with members.
	learner atomic.Bool

	// Owned by the apply goroutine.
	confState *raftpb.ConfState
	// lastIndex and lastTerm are those of the newest entry seen by apply.
	lastIndex, lastTerm uint64
	// snapc carries snapshot messages from raft to the apply goroutine.
	snapc chan *raftpb.Message
	// snapshotting is set while a snapshot is being written.
	snapshotting atomic.Bool
	snapshotWG   sync.WaitGroup
	// logSinceState counts the bytes of the entries applied since the
	// newest state file (engines that are not durable; see maybeSnapshot).
	// Owned by the apply goroutine.
	logSinceState uint64
	// stateSize is the size of the newest state file written or installed,
	// 0 before one.
	stateSize atomic.Int64
	// stateFailedAt is the applied index of a state file that could not be
	// written (0: none pending), set by the snapshot goroutine, so that the
	// apply goroutine writes one again a snapshot count later instead of
	// waiting for another state's worth of log (logSinceState was reset
	// when the view was taken).
	stateFailedAt atomic.Uint64

	// inUse caches the engine's size in use for quota checks, measured at
	// sizeAt (unix nanoseconds).
	inUse, sizeAt atomic.Int64
	// peerClient forwards requests to the leader's peer port.
	peerClient *http.Client

	// metrics are the counters behind Collector (metrics.go).
	metrics serverMetrics

	// Linearizable read batching; see read.go.
	readMu    sync.Mutex
	readNext  *readBatch
	readwaitc chan struct{}

	// nodeReady is closed once node is set: the transport listens (and
	// peers may call Process) before the raft node exists.
	nodeReady chan struct{}

	wg       sync.WaitGroup
	stopc    chan struct{}
	stopOnce sync.Once
	donec    chan struct{} // closed when the server has stopped by itself
	doneOnce sync.Once
	errMu    sync.Mutex
	err      error
}

// Open bootstraps or restarts the member described by cfg and starts it.
func Open(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	s := &Server{
		cfg:           cfg,
		lg:            lg,
		id:            cfg.ID,
		w:             wait.New(),
		reqIDs:        idutil.NewGenerator(uint16(cfg.ID), time.Now()),
		appliedWait:   wait.NewTimeList(),
		members:       map[uint64]kvstore.Member{},
		removed:       map[uint64]bool{},
		readNext:      newReadBatch(),
		readwaitc:     make(chan struct{}, 1),
		snapc:         make(chan *raftpb.Message, 1),
		compactc:      make(chan int64, 1),
		peerClient:    &http.Client{Timeout: cfg.RequestTimeout},
		compactedWait: wait.NewTimeList(),
		stopc:         make(chan struct{}),
		donec:         make(chan struct{}),
		nodeReady:     make(chan struct{}),
		metrics:       newServerMetrics(),
	}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()

	selfURL := cfg.InitialCluster[cfg.ID-1]
	if err := s.clearInterruptedRestore(); err != nil {
		return nil, err
	}
	meta, err := s.checkDataDir()
	if err != nil {
		return nil, err
	}
	s.restoring = meta == nil && cfg.RestoreFrom != ""
	switch {
	case s.restoring:
		// Check the whole file before anything is written.
		if err := s.openRestoreFile(); err != nil {
			return nil, err
		}
	case cfg.RestoreFrom != "":
		if err := s.checkRestoredFrom(meta); err != nil {
			return nil, err
		}
	}
	fresh := meta == nil
	var joinInfo *transport.ClusterInfo
	if fresh {
		// Fail on a taken peer port before anything is written. A member
		// that exists may listen elsewhere (a member update moved it): it
		// is checked once its records are read.
		if err := checkPortFree(selfURL, cfg.PeerListenAddr); err != nil {
			return nil, err
		}
		meta = &memberMeta{MemberID: cfg.ID, Engine: cfg.Engine.Name}
		if cfg.Join {
			if joinInfo, err = s.fetchJoinInfo(selfURL); err != nil {
				return nil, err
			}
			meta.ClusterID = joinInfo.ClusterID
		} else {
			if s.restoring {
				meta.Backup = s.backup.hash
			}
			meta.ClusterID = clusterIDFromURLs(cfg.InitialCluster, meta.Backup)
		}
		if err := fileutil.TouchDirAll(lg, cfg.DataDir); err != nil {
			return nil, fmt.Errorf("create data dir %s: %w", cfg.DataDir, err)
		}
		if s.restoring {
			if err := markRestore(cfg.DataDir); err != nil {
				return nil, err
			}
		}
		if err := writeMeta(cfg.DataDir, meta); err != nil {
			return nil, err
		}
	}
	s.clusterID = meta.ClusterID

	walMeta := []byte(fmt.Sprintf("metcd member %x cluster %x", cfg.ID, s.clusterID))
	disk, boot, err := consensus.OpenDisk(lg, filepath.Join(cfg.DataDir, "member"), walMeta)
	if err != nil {
		return nil, err
	}
	s.disk = disk
	if err := s.openStore(boot); err != nil {
		return nil, err
	}
	if s.restoring {
		if !boot.Fresh {
			// The marker went before the WAL, so this cannot be.
			return nil, fmt.Errorf("restore: data dir %s already holds a raft log", cfg.DataDir)
		}
		if boot, err = s.sealRestore(boot); err != nil {
			return nil, err
		}
	}
	if err := s.loadMembers(); err != nil {
		return nil, err
	}
	if u := s.updatedPeerURL(boot); u != "" && u != selfURL {
		// A member update moved it; the others send to the new URL.
		// (--cluster stays the list the cluster was created with.)
		lg.Info("listening for peers on the peer URL a member update gave this member, not on its --cluster entry",
			zap.String("peer-url", u), zap.String("cluster-entry", selfURL))
		selfURL = u
	}
	if !fresh {
		if err := checkPortFree(selfURL, cfg.PeerListenAddr); err != nil {
			return nil, err
		}
	}
	if err := s.openState(); err != nil {
		return nil, err
	}
	s.confState = &raftpb.ConfState{}
	if boot.Snapshot != nil {
		md := boot.Snapshot.GetMetadata()
		s.confState = md.GetConfState()
		s.lastIndex, s.lastTerm = md.GetIndex(), md.GetTerm()
	}

	s.tr, err = transport.New(transport.Config{
		Logger:      lg,
		ID:          cfg.ID,
		ClusterID:   s.clusterID,
		PeerURL:     selfURL,
		ListenAddr:  cfg.PeerListenAddr,
		Raft:        s,
		Snapshotter: disk.Snapshotter(),
		Info:        s.clusterInfo,
		Handlers:    s.peerHandlers(),
	})
	if err != nil {
		return nil, err
	}

	var peers []raft.Peer
	switch {
	case !boot.Fresh:
		s.memMu.RLock()
		for id, m := range s.members {
			if id != s.id {
				s.tr.AddPeer(id, m.PeerURL)
			}
		}
		s.memMu.RUnlock()
	case cfg.Join:
		for _, m := range joinInfo.Members {
			if m.ID != s.id {
				s.tr.AddPeer(m.ID, m.PeerURL)
			}
		}
	default:
		for i, u := range cfg.InitialCluster {
			id := uint64(i + 1)
			// Every member writes these bootstrap entries itself: they
			// must be identical, so only what all of them know goes in.
			ctx, err := json.Marshal(kvstore.Member{ID: id, PeerURL: u})
			if err != nil {
				return nil, err
			}
			peers = append(peers, raft.Peer{ID: id, Context: ctx})
			if id != s.id {
				s.tr.AddPeer(id, u)
			}
		}
	}

	s.node, err = consensus.NewNode(consensus.Config{
		ID:             cfg.ID,
		Logger:         lg,
		TickInterval:   cfg.HeartbeatInterval,
		HeartbeatTicks: 1,
		ElectionTicks:  int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
		Peers:          peers,
		Join:           cfg.Join,
		Applied:        boot.SnapshotIndex(),
		Transport:      s.tr,
		Snapshots:      s.sendSnapshot,
	}, disk, boot)
	if err != nil {
		return nil, err
	}
	close(s.nodeReady)
	lg.Info("member starting",
		zap.Uint64("id", s.id), zap.String("cluster-id", fmt.Sprintf("%x", s.clusterID)),
		zap.String("peer-url", selfURL), zap.String("engine", cfg.Engine.Name),
		zap.Bool("fresh", boot.Fresh), zap.Uint64("snapshot-index", boot.SnapshotIndex()),
		zap.Uint64("applied-index", s.store.Applied()), zap.Int("wal-entries", len(boot.Entries)))

	s.goAttach(func() {
		if err := s.node.Run(); err != nil {
			s.fail(fmt.Errorf("raft: %w", err))
		}
	})
	s.goAttach(s.applyLoop)
	s.goAttach(s.readLoop)
	s.goAttach(s.watchTransport)
	s.goAttach(s.compactLoop)
	s.goAttach(s.leaseLoop)
	s.goAttach(s.publish)
	s.startPurge()
	ok = true
	return s, nil
}

// checkDataDir refuses a data dir that belongs to another member, cluster
// or engine, or to a member that was removed. It changes nothing on disk.
func (s *Server) checkDataDir() (*memberMeta, error) {
	dir := s.cfg.DataDir
	meta, err := readMeta(dir)
	if err != nil {
		return nil, err
	}
	if meta == nil {
		if fileutil.Exist(filepath.Join(dir, "member")) {
			return nil, fmt.Errorf("data dir %s holds raft files but no %s: refusing to use it", dir, metaFile)
		}
		return nil, nil
	}
	if meta.MemberID != s.cfg.ID {
		return nil, fmt.Errorf("data dir %s belongs to member %d, but this member was started with --id %d", dir, meta.MemberID, s.cfg.ID)
	}
	if meta.Engine != s.cfg.Engine.Name {
		return nil, fmt.Errorf("data dir %s was created with --engine %s, not %s: start with --engine %s, or move to %s by adding a new member that uses it (see README, \"Changing engines\")",
			dir, meta.Engine, s.cfg.Engine.Name, meta.Engine, s.cfg.Engine.Name)
	}
	if !s.cfg.Join {
		if cid := clusterIDFromURLs(s.cfg.InitialCluster, meta.Backup); cid != meta.ClusterID {
			return nil, fmt.Errorf("data dir %s belongs to cluster %x, but --cluster describes cluster %x: start with the --cluster list the member was created with", dir, meta.ClusterID, cid)
		}
	}
	if wasRemoved(dir) {
		return nil, fmt.Errorf("member %d was removed from its cluster: its data dir %s cannot be used again; to bring it back, add it under a new id with an empty data dir and --join", meta.MemberID, dir)
	}
	return meta, nil
}

func checkPortFree(peerURL, listenAddr string) error {
	u, err := url.Parse(peerURL)
	if err != nil {
		return err
	}
	if listenAddr == "" {
		listenAddr = u.Host
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return fmt.Errorf("cannot listen for peers on %s: %w", peerURL, err)
	}
	return ln.Close()
}

// updatedPeerURL is this member's peer URL as of the last committed entry
// it holds: the engine's record, or a later member update in the WAL (a
// memory engine, or a durable one behind its log, has not applied it yet).
// Empty if it holds no record of itself.
func (s *Server) updatedPeerURL(boot *consensus.Bootstrap) string {
	s.memMu.RLock()
	u := s.members[s.id].PeerURL
	s.memMu.RUnlock()
	for _, e := range boot.Entries {
		if e.GetIndex() > boot.HardState.GetCommit() {
			break
		}
		if e.GetType() != raftpb.EntryConfChange {
			continue
		}
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &cc); err != nil || cc.GetType() != raftpb.ConfChangeUpdateNode || cc.GetNodeId() != s.id {
			continue
		}
		var m kvstore.Member
		if err := json.Unmarshal(cc.GetContext(), &m); err == nil && m.PeerURL != "" {
			u = m.PeerURL
		}
	}
	return u
}

func (s *Server) fetchJoinInfo(selfURL string) (*transport.ClusterInfo, error) {
	var others []string
	for _, u := range s.cfg.InitialCluster {
		if u != selfURL {
			others = append(others, u)
		}
	}
	if len(others) == 0 {
		return nil, errors.New("--join needs the peer URLs of existing members in --cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := transport.FetchCluster(ctx, others, func(info *transport.ClusterInfo) error {
		for _, m := range info.Members {
			if m.ID == s.cfg.ID {
				if m.PeerURL != selfURL {
					return fmt.Errorf("the cluster knows member %d at %s, not %s", m.ID, m.PeerURL, selfURL)
				}
				return nil
			}
		}
		return fmt.Errorf("member %d is not in the cluster yet; add it first, e.g. curl -XPOST http://<client address of a member>/%d -d %s", s.cfg.ID, s.cfg.ID, selfURL)
	})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return info, nil
}

// openStore opens the engine and brings it to the newest snapshot when it
// is behind (always, for a memory engine).
func (s *Server) openStore(boot *consensus.Bootstrap) error {
	removeStaleEngineDirs(s.cfg.DataDir)
	eng, err := s.openEngine(currentEngineDir(s.cfg.DataDir))
	if err != nil {
		return err
	}
	if s.restoring {
		err := loadBackupStream(s.backup.f, s.backup.n, eng)
		s.closeRestoreFile()
		if err != nil {
			eng.Close()
			return err
		}
	}
	st, err := kvstore.Open(eng)
	if err != nil {
		eng.Close()
		return err
	}
	if eng.Durable() {
		// A put reads its key's current record and the revision counters;
		// on disk engines that is an LSM or B+tree lookup each, which the
		// profile showed as a fifth of a member's CPU under many writers.
		// The memory engine answers as fast as a cache would. The cache
		// keeps a current record without its value (mvcc.TrimHot), so
		// the same memory covers about four times the keys. While all
		// the keys fit, it holds them all (mvcc.LoadHot), as etcd's
		// in-memory index does: a put that creates its key then learns
		// that it is new without an engine lookup.
		st.SetReadCache(kvstore.ReadCache{
			Keep: mvcc.HotKey, Trim: mvcc.TrimHot, Load: mvcc.LoadHot, Entries: s.cfg.ReadCacheKeys,
			Filled: func(entries int, all bool, took time.Duration, err error) {
				if err != nil {
					s.lg.Warn("read cache not filled; puts read absent keys from the engine", zap.Error(err))
					return
				}
				s.lg.Info("read cache filled", zap.Int("entries", entries), zap.Bool("all-keys", all), zap.Duration("took", took))
			},
		})
	}
	s.store = st
	si := boot.SnapshotIndex()
	if si == 0 || (eng.Durable() && st.Applied() >= si) {
		return nil
	}
	return s.restoreFromStateFile(si)
}

func (s *Server) openEngine(dir string) (storage.Engine, error) {
	eng, err := s.cfg.Engine.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s engine in %s: %w", s.cfg.Engine.Name, dir, err)
	}
	return eng, nil
}

// restoreFromStateFile replaces the store's content with the state stream
// saved for snapshot index i. The new engine gets a directory of its own;
// the current one is switched over only after the stream checked out.
func (s *Server) restoreFromStateFile(i uint64) error {
	f, err := s.disk.OpenState(i)
	if err != nil {
		return err
	}
	defer f.Close()
	// A new directory each time: the current engine may itself live in
	// one named for an earlier install.
	dir := filepath.Join(s.cfg.DataDir, fmt.Sprintf("%s-%016x-%x", engineDir, i, time.Now().UnixNano()))
	fresh, err := s.openEngine(dir)
	if err != nil {
		return err
	}
	oldDir := currentEngineDir(s.cfg.DataDir)
	applied, old, err := s.store.Restore(f, fresh)
	if err != nil {
		fresh.Close()
		os.RemoveAll(dir)
		return fmt.Errorf("install snapshot %d: %w", i, err)
	}
	if err := old.Close(); err != nil {
		// fresh is in use now and must stay; the old engine's files go
		// below all the same.
		s.lg.Warn("closing the engine a snapshot replaced failed", zap.Uint64("snapshot-index", i), zap.Error(err))
	}
	if applied != i {
		// A state file of another snapshot under this one's name: using it
		// would skip the entries in between.
		return fmt.Errorf("install snapshot %d: %w: stream holds state at index %d, not %d", i, kvstore.ErrCorruptSnapshot, applied, i)
	}
	// The state file is now the newest one: its size paces the next (see
	// maybeSnapshot). Unset, a restarted member would rewrite its whole
	// state at its first snapshot count, however little it had written.
	if st, err := f.Stat(); err == nil {
		s.stateSize.Store(st.Size())
	}
	if fresh.Durable() {
		if err := setCurrentEngineDir(s.cfg.DataDir, dir); err != nil {
			return err
		}
		if oldDir != dir {
			os.RemoveAll(oldDir)
		}
	}
	s.lg.Info("installed snapshot state", zap.Uint64("snapshot-index", i), zap.Uint64("applied-index", applied))
	return nil
}

const engineCurrentFile = "engine.current"

// currentEngineDir is the engine directory in use: engine/ at first, and a
// new one after each snapshot installed on a durable engine.
func currentEngineDir(dataDir string) string {
	b, err := os.ReadFile(filepath.Join(dataDir, engineCurrentFile))
	if err != nil {
		return filepath.Join(dataDir, engineDir)
	}
	return filepath.Join(dataDir, strings.TrimSpace(string(b)))
}

// removeStaleEngineDirs deletes engine directories left by snapshot installs
// that a crash interrupted, or that were replaced.
func removeStaleEngineDirs(dataDir string) {
	cur := filepath.Base(currentEngineDir(dataDir))
	dirs, _ := filepath.Glob(filepath.Join(dataDir, engineDir+"-*"))
	for _, d := range dirs {
		if filepath.Base(d) != cur {
			os.RemoveAll(d)
		}
	}
}

func setCurrentEngineDir(dataDir, dir string) error {
	tmp := filepath.Join(dataDir, engineCurrentFile+".tmp")
	if err := os.WriteFile(tmp, []byte(filepath.Base(dir)+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, engineCurrentFile)); err != nil {
		return err
	}
	return fsutil.SyncDir(dataDir)
}

func (s *Server) loadMembers() error {
	members, removed, err := s.store.Members()
	if err != nil {
		return err
	}
	s.memMu.Lock()
	defer s.memMu.Unlock()
	s.members = map[uint64]kvstore.Member{}
	s.removed = map[uint64]bool{}
	for _, m := range members {
		s.members[m.ID] = m
	}
	for _, id := range removed {
		s.removed[id] = true
	}
	s.learner.Store(s.members[s.id].IsLearner)
	return nil
}

func (s *Server) clusterInfo() transport.ClusterInfo {
	info := transport.ClusterInfo{ClusterID: s.clusterID}
	for _, m := range s.Members() {
		info.Members = append(info.Members, transport.Member{ID: m.ID, PeerURL: m.PeerURL})
	}
	return info
}

func (s *Server) goAttach(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// fail stops the member on its own, recording why.
func (s *Server) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.doneOnce.Do(func() { close(s.donec) })
}

// Done is closed when the member stops by itself: removed from the
// cluster, or unable to persist. Err says why.
func (s *Server) Done() <-chan struct{} { return s.donec }

// Err is the reason the member stopped by itself.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Stop shuts the member down and releases its files and ports.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopc)
		if s.node != nil {
			s.node.Stop()
		}
		s.wg.Wait()
		s.snapshotWG.Wait()
		s.close()
	})
}

func (s *Server) close() {
	s.closeRestoreFile()
	if s.hub != nil {
		s.hub.Close()
	}
	if s.tr != nil {
		s.tr.Stop()
	}
	if s.disk != nil {
		s.disk.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

func (s *Server) watchTransport() {
	select {
	case err := <-s.tr.Errors():
		s.lg.Warn("transport reported a critical error", zap.Error(err))
		if strings.Contains(err.Error(), "removed") {
			if merr := markRemoved(s.cfg.DataDir); merr != nil {
				s.lg.Error("cannot record removal", zap.Error(merr))
			}
			s.fail(ErrRemoved)
			return
		}
		s.fail(fmt.Errorf("transport: %w", err))
	case <-s.stopc:
	}
}

func (s *Server) startPurge() {
	dir := s.disk.SnapDir()
	for _, p := range []struct {
		dir, suffix string
		max         uint
	}{
		{dir, "snap", s.cfg.MaxSnapshots},
		// State streams are large (the whole key space); only the newest
		// is read at start-up, the one before it is kept for safety.
		{dir, "snap.db", 2},
		{s.disk.WALDir(), "wal", s.cfg.MaxWALs},
	} {
		errc := fileutil.PurgeFile(s.lg, p.dir, p.suffix, p.max, 30*time.Second, s.stopc)
		s.goAttach(func() {
			select {
			case err := <-errc:
				s.lg.Warn("purging old files failed", zap.String("dir", p.dir), zap.Error(err))
			case <-s.stopc:
			}
		})
	}
}

// rafthttp.Raft, for the transport.

// Process steps a message from a peer. A snapshot's state stream, which the
// transport has saved to disk by now, is checked before raft sees the
// message: a damaged stream is refused (the leader will send another) and
// this member keeps its state.
func (s *Server) Process(ctx context.Context, m *raftpb.Message) error {
	if !s.started() {
		return peerRefusal{err: errNotStarted, code: http.StatusServiceUnavailable, msg: "raft not started yet"}
	}
	if s.IsIDRemoved(m.GetFrom()) {
		return peerRefusal{
			err:  fmt.Errorf("%w: message from removed member %x", ErrRemoved, m.GetFrom()),
			code: http.StatusForbidden,
			msg:  "cannot process message from removed member",
		}
	}
	if m.GetType() == raftpb.MsgSnap {
		if err := s.verifyStateFile(m.GetSnapshot().GetMetadata().GetIndex()); err != nil {
			s.lg.Error("refusing snapshot from leader", zap.Uint64("from", m.GetFrom()), zap.Error(err))
			return err
		}
	}
	return s.node.Process(ctx, m)
}

// peerRefusal is an error from Process that rafthttp's handlers write as
// the response: with a WriteTo method the handler answers code and msg,
// where any other error makes the pipeline handler drop the connection with
// a panic that the HTTP server recovers and logs. A message from a removed
// member gets etcd's 403, which the sender's transport reports as its own
// removal, so the removed member stops.
type peerRefusal struct {
	err  error
	code int
	msg  string
}

func (e peerRefusal) Error() string { return e.err.Error() }

func (e peerRefusal) Unwrap() error { return e.err }

// WriteTo answers the peer; rafthttp calls it.
func (e peerRefusal) WriteTo(w http.ResponseWriter) { http.Error(w, e.msg, e.code) }

func (s *Server) verifyStateFile(i uint64) error {
	f, err := s.disk.OpenState(i)
	if err != nil {
		return err
	}
	applied, err := kvstore.VerifySnapshot(bufio.NewReaderSize(f, 1<<20))
	f.Close()
	if err == nil && applied != i {
		err = fmt.Errorf("%w: stream holds state at index %d, message says %d", kvstore.ErrCorruptSnapshot, applied, i)
	}
	if err != nil {
		os.Remove(s.disk.StateFile(i))
		return fmt.Errorf("snapshot %d: %w", i, err)
	}
	return nil
}

// IsIDRemoved reports whether id was removed from the cluster.
func (s *Server) IsIDRemoved(id uint64) bool {
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	return s.removed[id]
}

// ReportUnreachable passes transport failures to raft.
func (s *Server) ReportUnreachable(id uint64) {
	if s.started() {
		s.node.ReportUnreachable(id)
	}
}

// ReportSnapshot passes the outcome of a snapshot send to raft.
func (s *Server) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	if s.started() {
		s.node.ReportSnapshot(id, status)
	}
}

var errNotStarted = errors.New("server: raft not started yet")

// started reports whether the raft node exists; messages that arrive
// before are refused, and the peer sends them again.
func (s *Server) started() bool {
	select {
	case <-s.nodeReady:
		return true
	default:
		return false
	}
}

// Member is a member as the API shows it.
type Member struct {
	ID         uint64   `json:"id"`
	PeerURL    string   `json:"peer_url"`
	IsLeader   bool     `json:"is_leader"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"client_urls,omitempty"`
	IsLearner  bool     `json:"is_learner,omitempty"`
}

// Members lists the current members, ordered by id.
func (s *Server) Members() []Member {
	var lead uint64
	if s.started() {
		lead = s.node.Leader()
	}
	s.memMu.RLock()
	defer s.memMu.RUnlock()
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, Member{ID: m.ID, PeerURL: m.PeerURL, IsLeader: m.ID == lead, Name: m.Name, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner})
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Status is this member's view of itself and the cluster.
type Status struct {
	MemberID      uint64 `json:"member_id"`
	ClusterID     string `json:"cluster_id"`
	Role          string `json:"role"`
	LeaderID      uint64 `json:"leader_id"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	Engine        string `json:"engine"`
	DataSizeBytes int64  `json:"data_size_bytes"`
	Keys          int64  `json:"keys"`
	Revision      int64  `json:"revision"`
	// Alarms are the types of the alarms raised in the cluster (NOSPACE,
	// CORRUPT), each once, in the order they were raised.
	Alarms []string `json:"alarms,omitempty"`
}

// MemberStatus reports the member's state (the curl API's /admin/status).
func (s *Server) MemberStatus() Status {
	rs := s.node.Status()
	st := Status{
		MemberID:      s.id,
		ClusterID:     strconv.FormatUint(s.clusterID, 16),
		Role:          roleName(rs.RaftState),
		LeaderID:      rs.Lead,
		Term:          rs.GetTerm(),
		CommitIndex:   rs.GetCommit(),
		AppliedIndex:  s.store.Applied(),
		SnapshotIndex: s.node.SnapshotIndex(),
		Engine:        s.cfg.Engine.Name,
	}
	st.Keys, _ = s.keyCount()
	st.Revision = s.mv.CommittedRev()
	if es, err := s.store.Stats(); err == nil {
		st.DataSizeBytes = es.DiskBytes
	}
	for _, a := range s.alarmList() {
		if name := a.Alarm.String(); !slices.Contains(st.Alarms, name) {
			st.Alarms = append(st.Alarms, name)
		}
	}
	return st
}

func roleName(st raft.StateType) string {
	switch st {
	case raft.StateLeader:
		return "leader"
	case raft.StateFollower:
		return "follower"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	}
	return strings.ToLower(st.String())
}

// ID is this member's id.
func (s *Server) ID() uint64 { return s.id }

// ClusterID is the cluster's id.
func (s *Server) ClusterID() uint64 { return s.clusterID }

// Leader is the current leader id, 0 if none.
func (s *Server) Leader() uint64 { return s.node.Leader() }

// PeerAddr is the address the peer listener is bound to.
func (s *Server) PeerAddr() string { return s.tr.Addr().String() }
