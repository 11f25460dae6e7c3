package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"

	"fmt"
	"io"
	"os"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	etcderrors "go.etcd.io/etcd/server/v3/etcdserver/errors"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage"
)

// Alarm lists, raises or clears alarms. Raising and clearing go through
// raft, so every member agrees on them.
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	switch r.Action {
	case pb.AlarmRequest_GET:
		if err := s.LinearizableRead(ctx); err != nil {
			return nil, err
		}
		var out []*pb.AlarmMember
		for _, a := range s.alarmList() {
			if r.Alarm == pb.AlarmType_NONE || a.Alarm == r.Alarm {
				out = append(out, a)
			}
		}
		return &pb.AlarmResponse{Header: s.Header(), Alarms: out}, nil
	case pb.AlarmRequest_ACTIVATE, pb.AlarmRequest_DEACTIVATE:
		resp, err := s.proposeInternal(ctx, &pb.InternalRaftRequest{Alarm: r})
		if err != nil {
			return nil, err
		}
		out := resp.(*pb.AlarmResponse)
		s.fill(out.Header)
		return out, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown alarm action %d", r.Action)
}

// Status is Maintenance.Status: this member's raft and storage state.
func (s *Server) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	size := max(s.engineSize(), 1) // etcdctl divides by it
	resp := &pb.StatusResponse{
		Header:           s.Header(),
		Version:          Version,
		DbSize:           size,
		DbSizeInUse:      max(min(s.engineInUse(), size), 1),
		Leader:           s.node.Leader(),
		RaftIndex:        s.node.Status().GetCommit(),
		RaftTerm:         s.node.Term(),
		RaftAppliedIndex: s.store.Applied(),
		IsLearner:        s.IsLearner(),
		StorageVersion:   StorageVersion,
		DowngradeInfo:    &pb.DowngradeInfo{},
		DbSizeQuota:      s.quota(), // as etcd: the configured value, negative when off
	}
	// etcd's errors, in its order and words: no leader, then each alarm
	// as its protobuf text.
	if resp.Leader == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrNoLeader.Error())
	}
	for _, a := range s.alarmList() {
		resp.Errors = append(resp.Errors, a.String())
	}
	return resp, nil
}

// Defragment compacts the engine's files where the engine can (pebble and
// leveldb compact their whole key range); for the others it does nothing.
func (s *Server) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	start := time.Now()
	err := s.store.Read(func(eng storage.Engine) error {
		if c, ok := eng.(storage.Compacter); ok {
			return c.Compact()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("defragment: %w", err)
	}
	s.lg.Info("defragmented engine", zap.Duration("took", time.Since(start)))
	return &pb.DefragmentResponse{Header: s.Header()}, nil
}

// HashKV is etcd's HashKV: a hash of the key space's history up to a
// revision (0: the current one), equal on every member at that revision.
func (s *Server) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	var resp *pb.HashKVResponse
	err := s.store.Read(func(eng storage.Engine) error {
		snap, err := eng.NewSnapshot()
		if err != nil {
			return err
		}
		defer snap.Close()
		h, rev, compact, err := s.mv.HashKV(snap, r.Revision)
		if err != nil {
			return err
		}
		// etcd's header carries the current revision, not the hashed one.
		cur, err := mvcc.CurrentRev(snap)
		if err != nil {
			return err
		}
		resp = &pb.HashKVResponse{Header: s.fill(&pb.ResponseHeader{Revision: cur}), Hash: h, HashRevision: rev, CompactRevision: compact}
		return nil
	})
	return resp, err
}

// Hash is the HashKV of the current revision: metcd has no single backend
// file to hash, and a hash of the engine's bytes would differ between
// members whose physical compactions ran at different times.
func (s *Server) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	kv, err := s.HashKV(ctx, &pb.HashKVRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: kv.Header, Hash: kv.Hash}, nil
}

// MoveLeader hands leadership to another voting member. Like etcd it must
// be sent to the leader.
func (s *Server) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if !s.isLeader() {
		return nil, rpctypes.ErrGRPCNotLeader
	}
	s.memMu.RLock()
	m, ok := s.members[r.TargetID]
	s.memMu.RUnlock()
	if !ok || m.IsLearner {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	if r.TargetID == s.id {
		return &pb.MoveLeaderResponse{}, nil // as etcd: no header
	}
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s.node.TransferLeadership(ctx, s.id, r.TargetID)
	for s.node.Leader() != r.TargetID {
		changed := s.node.LeaderChanged()
		if s.node.Leader() == r.TargetID {
			break
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
			t.Stop()
		case <-t.C:
			return nil, etcderrors.ErrTimeoutLeaderTransfer
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-s.stopc:
			t.Stop()
			return nil, ErrStopped
		}
	}
	s.lg.Info("leadership moved", zap.Uint64("to", r.TargetID))
	return &pb.MoveLeaderResponse{}, nil // as etcd: no header
}

// HandOffLeadership moves leadership to the voter this member has been
// connected to longest, as etcd does when a leader stops gracefully, so
// that the others need not wait out an election timeout to notice it is
// gone. It does nothing on a follower or a member that is the only voter.
// It gives up after two election timeouts (raft abandons a transfer after
// one; the target may be stopping too) or when ctx ends.
func (s *Server) HandOffLeadership(ctx context.Context) {
	if !s.started() || !s.isLeader() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.ElectionTimeout)
	defer cancel()
	var target uint64
	var since time.Time
	s.memMu.RLock()
	for id, m := range s.members {
		if id == s.id || m.IsLearner {
			continue
		}
		if t := s.tr.ActiveSince(id); !t.IsZero() && (target == 0 || t.Before(since)) {
			target, since = id, t
		}
	}
	s.memMu.RUnlock()
	if target == 0 {
		return
	}
	start := time.Now()
	if _, err := s.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: target}); err != nil {
		s.lg.Warn("leadership not handed off before stopping", zap.Uint64("to", target), zap.Error(err))
		return
	}
	s.lg.Info("leadership handed off before stopping", zap.Uint64("to", target), zap.Duration("took", time.Since(start)))
}

// A backup file is laid out the way etcdctl's snapshot save expects of
// etcd's (its size is a multiple of 512 plus a SHA-256):
//
//	state stream (kvstore's snapshot format) | zero padding |
//	stream length (8 bytes, big endian) | SHA-256 of everything before
const backupTrailer = 8 + sha256.Size

func backupPadding(streamLen int64) int64 {
	return (512 - (streamLen+8)%512) % 512
}

// Backup streams a consistent backup of this member's state.
func (s *Server) Backup(ctx context.Context) (io.ReadCloser, int64, error) {
	view, err := s.store.View()
	if err != nil {
		return nil, 0, err
	}
	n, err := view.Size()
	if err != nil {
		view.Close()
		return nil, 0, err
	}
	pad := backupPadding(n)
	pr, pw := statePipe()
	go func() {
		defer view.Close()
		h := sha256.New()
		w := io.MultiWriter(pw, h)
		written, err := view.WriteTo(w)
		if err == nil && written != n {
			err = fmt.Errorf("backup: state stream changed size (%d, then %d bytes)", n, written)
		}
		if err == nil {
			tail := make([]byte, pad, pad+8)
			tail = binary.BigEndian.AppendUint64(tail, uint64(n))
			_, err = w.Write(tail)
		}
		if err == nil {
			_, err = pw.Write(h.Sum(nil))
		}
		pw.CloseWithError(err)
	}()
	return pr, n + pad + backupTrailer, nil
}

// loadBackupFile checks a backup file and loads its key space and leases
// into the empty engine eng.
func loadBackupFile(path string, eng storage.Engine) error {
	f, n, err := openBackup(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return loadBackupStream(f, n, eng)
}

// loadBackupStream loads the state stream of the backup f, checked by
// openBackup, n bytes long, into the empty engine eng.
func loadBackupStream(f *os.File, n int64, eng storage.Engine) error {
	if err := kvstore.LoadBackup(bufio.NewReaderSize(io.NewSectionReader(f, 0, n), 1<<20), eng); err != nil {
		return fmt.Errorf("restore: %s: %w", f.Name(), err)
	}
	return nil
}

// openBackup opens a backup file, checks its SHA-256 and trailer, and
// returns it positioned at the state stream, with the stream's length.
func openBackup(path string) (f *os.File, n int64, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("restore: %w", err)
	}
	size := fi.Size()
	if size < backupTrailer || (size-sha256.Size)%512 != 0 {
		return nil, 0, fmt.Errorf("restore: %s is not a metcd backup (size %d)%s", path, size, etcdSnapshotHint(f))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, size-sha256.Size)); err != nil {
		return nil, 0, fmt.Errorf("restore: read %s: %w", path, err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return nil, 0, fmt.Errorf("restore: read %s: %w", path, err)
	}
	if !bytes.Equal(h.Sum(nil), want) {
		if hint := etcdSnapshotHint(f); hint != "" {
			return nil, 0, fmt.Errorf("restore: %s is not a metcd backup%s", path, hint)
		}
		return nil, 0, fmt.Errorf("restore: %s: SHA-256 mismatch: the file is damaged", path)
	}
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], size-backupTrailer); err != nil {
		return nil, 0, fmt.Errorf("restore: read %s: %w", path, err)
	}
	n = int64(binary.BigEndian.Uint64(lenBuf[:]))
	if n < 0 || n > size-backupTrailer || backupPadding(n) != size-backupTrailer-n {
		// etcd's snapshot files end in the SHA-256 of what precedes them
		// too, so one gets this far.
		return nil, 0, fmt.Errorf("restore: %s: bad stream length %d%s", path, n, etcdSnapshotHint(f))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("restore: %w", err)
	}
	return f, n, nil
}

// etcdSnapshotHint says when f is an etcd snapshot (a bbolt file), which
// does not restore into metcd.
func etcdSnapshotHint(f *os.File) string {
	// A bbolt file starts with a page header (16 bytes) and then its meta
	// page, whose first field is the magic number, in the host's order.
	var b [20]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return ""
	}
	const boltMagic = 0xED0CDAED
	if binary.LittleEndian.Uint32(b[16:]) != boltMagic && binary.BigEndian.Uint32(b[16:]) != boltMagic {
		return ""
	}
	return ": it is an etcd snapshot (a bbolt file); copy etcd's keys into metcd with etcdctl make-mirror instead (see README)"
}
