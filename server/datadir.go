package server

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/metcd/metcd/internal/fsutil"
	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// The data dir layout:
//
//	member.json   identity: member id, cluster id, engine (written once)
//	removed       present once this member was removed from the cluster
//	wal/          raft WAL segments
//	snap/         raft snapshots and state streams (*.snap.db)
//	engine/       the storage engine's own files, for durable engines
const (
	metaFile    = "member.json"
	removedFile = "removed"
	engineDir   = "engine"
)

type memberMeta struct {
	MemberID  uint64 `json:"member_id"`
	ClusterID uint64 `json:"cluster_id,string"`
	Engine    string `json:"engine"`
	// Backup is set on the members of a cluster restored from a backup:
	// the backup's SHA-256 (its last 32 bytes), in hex. It goes into the
	// cluster id with the peer URLs, as etcd's cluster token does.
	Backup string `json:"backup,omitempty"`
}

// readMeta returns the identity recorded in dir, or nil for a data dir that
// was never used.
func readMeta(dir string) (*memberMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", metaFile, err)
	}
	var m memberMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("data dir %s: %s is damaged: %w", dir, metaFile, err)
	}
	return &m, nil
}

func writeMeta(dir string, m *memberMeta) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, metaFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", metaFile, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", metaFile, err)
	}
	if err := fileutil.Fsync(f); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", metaFile, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, metaFile)); err != nil {
		return fmt.Errorf("install %s: %w", metaFile, err)
	}
	return fsutil.SyncDir(dir)
}

// markRemoved records that this member left the cluster, so that it refuses
// to start on this data dir again.
func markRemoved(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, removedFile), []byte("removed from the cluster\n"), 0o600); err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

func wasRemoved(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, removedFile))
	return err == nil
}

// clusterIDFromURLs derives a cluster id from the initial peer URLs and,
// for a cluster restored from a backup, the backup's hash, so every
// founding member computes the same one. The hash keeps the members of a
// restored cluster apart from those of the old cluster, or of a new one,
// on the same URLs: their logs would otherwise look alike to raft (each
// starts at term 1), and one could append to the other's.
func clusterIDFromURLs(urls []string, backup string) uint64 {
	sorted := append([]string(nil), urls...)
	sort.Strings(sorted)
	seed := "metcd\x00" + strings.Join(sorted, "\x00")
	if backup != "" {
		seed += "\x00backup\x00" + backup
	}
	sum := sha256.Sum256([]byte(seed))
	return binary.BigEndian.Uint64(sum[:8])
}
