package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/metcd/metcd/consensus"
	"github.com/metcd/metcd/internal/fsutil"
	"github.com/metcd/metcd/kvstore"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// restoreMarker is the file that marks a data dir whose restore from a
// backup (--restore-from) has not finished. Until it is gone the data dir
// holds part of a member, which must not start as if it were whole.
const restoreMarker = "restore.incomplete"

// clearInterruptedRestore empties a data dir whose restore did not finish
// (a crash, a full disk), so that --restore-from starts it again; without
// the flag it refuses the data dir.
func (s *Server) clearInterruptedRestore() error {
	dir := s.cfg.DataDir
	if _, err := os.Stat(filepath.Join(dir, restoreMarker)); err != nil {
		return nil
	}
	if s.cfg.RestoreFrom == "" {
		return fmt.Errorf("data dir %s holds a restore from a backup that did not finish: start again with --restore-from, or empty the data dir", dir)
	}
	// Keep the half-restored member (and its marker) if the file named
	// now is no good either.
	if err := s.openRestoreFile(); err != nil {
		return err
	}
	s.lg.Warn("an earlier restore into this data dir did not finish; starting it again", zap.String("data-dir", dir))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("restore: clear %s: %w", dir, err)
	}
	// The marker goes last: a crash in between leaves it, and the next
	// start clears the rest.
	for _, e := range ents {
		if e.Name() != restoreMarker {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("restore: clear %s: %w", dir, err)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, restoreMarker)); err != nil {
		return fmt.Errorf("restore: clear %s: %w", dir, err)
	}
	return fsutil.SyncDir(dir)
}

// backupFile is a backup checked whole (openBackup), kept open from the
// check to the load so that it is read through once more, not twice.
type backupFile struct {
	f    *os.File
	n    int64  // length of the state stream
	hash string // the SHA-256 in hex (backupHash)
}

// openRestoreFile checks --restore-from's file and keeps it open for the
// restore; a second call keeps the first one's.
func (s *Server) openRestoreFile() error {
	if s.backup != nil {
		return nil
	}
	f, n, err := openBackup(s.cfg.RestoreFrom)
	if err != nil {
		return err
	}
	h, err := backupHash(f)
	if err != nil {
		f.Close()
		return err
	}
	s.backup = &backupFile{f: f, n: n, hash: h}
	return nil
}

// closeRestoreFile closes the file openRestoreFile kept, if any.
func (s *Server) closeRestoreFile() {
	if s.backup != nil {
		s.backup.f.Close()
		s.backup = nil
	}
}

// backupHash reads a backup's SHA-256, its last 32 bytes, as hex.
func backupHash(f *os.File) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	sum := make([]byte, sha256.Size)
	if _, err := f.ReadAt(sum, fi.Size()-sha256.Size); err != nil {
		return "", fmt.Errorf("restore: read %s: %w", f.Name(), err)
	}
	return hex.EncodeToString(sum), nil
}

// checkRestoredFrom accepts --restore-from on a data dir that already holds
// a member only when that member was restored from this very backup: a
// restart with the flags it was first started with. Anything else is a
// mistake that would otherwise go unnoticed (a data dir not emptied
// before a restore), so it is refused.
func (s *Server) checkRestoredFrom(meta *memberMeta) error {
	dir, file := s.cfg.DataDir, s.cfg.RestoreFrom
	if meta.Backup == "" {
		return fmt.Errorf("restore: data dir %s already holds member %d of a cluster that was not restored from a backup: a restore needs an empty data dir", dir, meta.MemberID)
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("restore: data dir %s already holds a restored member; to restart it, drop --restore-from: %w", dir, err)
	}
	defer f.Close()
	h, err := backupHash(f)
	if err != nil {
		return err
	}
	if h != meta.Backup {
		return fmt.Errorf("restore: data dir %s already holds a member restored from another backup: a restore needs an empty data dir", dir)
	}
	s.lg.Info("data dir already restored from this backup; starting the member it holds", zap.String("data-dir", dir), zap.String("file", file))
	return nil
}

// markRestore creates the restore marker in a new data dir before anything
// else is written there.
func markRestore(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, restoreMarker), nil, 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return fsutil.SyncDir(dir)
}

// sealRestore makes the key space just loaded from a backup the state of a
// raft snapshot, as etcdutl's restore does: the members of --cluster are
// recorded in the engine with applied index n (the member count), a
// snapshot at index n, term 1, with every member a voter, goes on disk,
// and the WAL starts after it. The raft log then holds no entry at or
// below n, so a member added later is sent the state rather than entries
// replayed onto an empty engine, and a member whose engine is not durable
// reloads the state from the snapshot's state file on every restart. Every
// founding member writes the same state, so they agree from the start.
//
// It returns what the member would find on disk had it started from this
// snapshot, and removes the restore marker once all of it is durable.
func (s *Server) sealRestore(boot *consensus.Bootstrap) (*consensus.Bootstrap, error) {
	n := uint64(len(s.cfg.InitialCluster))
	cs := &raftpb.ConfState{}
	txn := s.store.NewTxn()
	for i, u := range s.cfg.InitialCluster {
		id := uint64(i + 1)
		if err := txn.PutMember(kvstore.Member{ID: id, PeerURL: u}); err != nil {
			txn.Abort()
			return nil, fmt.Errorf("restore: %w", err)
		}
		cs.Voters = append(cs.Voters, id)
	}
	if err := txn.Commit(n, true); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if !s.store.Engine().Durable() {
		view, err := s.store.View()
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		err = s.saveStateFile(view)
		view.Close()
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	term := uint64(1)
	sn := &raftpb.Snapshot{Data: snapshotData, Metadata: &raftpb.SnapshotMetadata{ConfState: cs, Index: &n, Term: &term}}
	if err := s.disk.SaveSnap(sn); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	commit := n
	hs := &raftpb.HardState{Term: &term, Commit: &commit}
	if err := s.disk.Save(hs, nil); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := s.disk.Sync(); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := os.Remove(filepath.Join(s.cfg.DataDir, restoreMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if err := fsutil.SyncDir(s.cfg.DataDir); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	s.lg.Info("key space restored from backup", zap.String("file", s.cfg.RestoreFrom), zap.Uint64("snapshot-index", n))
	return &consensus.Bootstrap{Metadata: boot.Metadata, Snapshot: sn, HardState: hs}, nil
}
