package server

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// saveBackup writes a backup of s to a file, as etcdctl snapshot save does.
func saveBackup(t *testing.T, s *Server) string {
	t.Helper()
	r, _, err := s.Backup(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitKey waits until s serves key from its own state.
func waitKey(t *testing.T, s *Server, key string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := getKey(s, ctx(t), []byte(key), false)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member %d has no %s: %v (status %+v)", s.ID(), key, err, s.MemberStatus())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRestoredStateReachesNewMembers restores a backup into a new
// cluster, then adds a member and restarts one. The restored key space
// must be the state of a raft snapshot: a member added later catches up by
// that snapshot (entries from index 1 would rebuild only what was written
// after the restore), and a member restarted before any snapshot of its
// own reloads it (the memory engine has nothing else to start from).
func TestRestoredStateReachesNewMembers(t *testing.T) {
	src := newTestCluster(t, 1)
	for i := range 20 {
		if err := putKey(src.members[0], ctx(t), []byte(fmt.Sprintf("k%d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	backup := saveBackup(t, src.members[0])
	srcRev := src.members[0].Header().Revision
	src.stop(0)

	c := startTestCluster(&testCluster{t: t, restoreFrom: backup}, 3)
	leader, _ := c.leaderAndFollowers()
	if err := putKey(leader, ctx(t), []byte("after"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if rev := leader.Header().Revision; rev != srcRev+1 {
		t.Fatalf("first write after the restore at revision %d, want %d", rev, srcRev+1)
	}

	newURL := freeURL(t)
	if err := leader.AddMember(ctx(t), 4, newURL); err != nil {
		t.Fatal(err)
	}
	s4 := c.startJoining(4, newURL)
	waitKey(t, s4, "after")
	for i := range 20 {
		if _, err := getKey(s4, ctx(t), []byte(fmt.Sprintf("k%d", i)), false); err != nil {
			t.Fatalf("member added after the restore lacks restored key k%d: %v", i, err)
		}
	}
	// A range's header is the revision of the state it read (Header may
	// still be the one before the install for a moment).
	resp, err := s4.Range(ctx(t), &pb.RangeRequest{Key: []byte("after"), Serializable: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Revision != srcRev+1 || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != srcRev+1 {
		t.Fatalf("member added after the restore: %v, want header and key at revision %d", resp, srcRev+1)
	}

	// Restarted with the same flags, --restore-from included: the flag
	// is ignored, and the member comes back with the restored keys.
	c.stop(1)
	c.start(1)
	waitKey(t, c.members[1], "after")
	for i := range 20 {
		if _, err := getKey(c.members[1], ctx(t), []byte(fmt.Sprintf("k%d", i)), false); err != nil {
			t.Fatalf("member restarted after the restore lacks restored key k%d: %v", i, err)
		}
	}
}

// TestRestoreLeavesNoHalfMember checks that a restore that fails leaves
// nothing a later start would take for a member: a bad file is refused
// before anything is written, and a restore cut short is done again by the
// next start with --restore-from and refused by one without it.
func TestRestoreLeavesNoHalfMember(t *testing.T) {
	src := newTestCluster(t, 1)
	if err := putKey(src.members[0], ctx(t), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	backup := saveBackup(t, src.members[0])
	src.stop(0)
	urls := []string{freeURL(t)}
	dir := filepath.Join(t.TempDir(), "m1")

	cfg := memConfig(t, 1, urls, dir)
	cfg.RestoreFrom = backup + ".typo"
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "restore:") {
		t.Fatalf("restore from a missing file: %v, want a restore: error", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("a restore from a missing file left the data dir behind (stat: %v)", err)
	}

	// What a crash in the middle of a restore leaves: the marker and
	// some of the member's files.
	if err := os.MkdirAll(filepath.Join(dir, "member", "wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{restoreMarker, metaFile} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.RestoreFrom = ""
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "did not finish") {
		t.Fatalf("start on an interrupted restore without --restore-from: %v, want a refusal", err)
	}
	// A bad file named now leaves the half-restored member as it is.
	cfg.RestoreFrom = backup + ".typo"
	if _, err := Open(cfg); err == nil {
		t.Fatal("restore over an interrupted one from a missing file succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, restoreMarker)); err != nil {
		t.Fatalf("a restore from a missing file removed the marker of an interrupted one: %v", err)
	}
	cfg.RestoreFrom = backup
	s, err := Open(cfg)
	if err != nil {
		t.Fatalf("restore again over an interrupted one: %v", err)
	}
	waitKey(t, s, "k")
	if _, err := os.Stat(filepath.Join(dir, restoreMarker)); !os.IsNotExist(err) {
		t.Fatalf("the restore marker is still there after the restore (stat: %v)", err)
	}
	// A restored cluster is not the cluster a fresh start on the same
	// URLs makes: the backup's hash is part of its id.
	if got, fresh := s.MemberStatus().ClusterID, fmt.Sprintf("%x", clusterIDFromURLs(urls, "")); got == fresh {
		t.Fatalf("restored cluster id %s is the one of a new cluster on the same URLs", got)
	}
	if err := putKey(s, ctx(t), []byte("k2"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	other := saveBackup(t, s)
	s.Stop()

	// Restarted with the flags it was started with: the member it holds.
	s, err = Open(cfg)
	if err != nil {
		t.Fatalf("restart of a restored member with its --restore-from: %v", err)
	}
	waitKey(t, s, "k2")
	s.Stop()
	// Any other --restore-from on a data dir that holds a member is a
	// data dir not emptied before a restore.
	cfg.RestoreFrom = other
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "another backup") {
		t.Fatalf("restore from another backup onto a restored member: %v, want a refusal", err)
	}
	srcCfg := memConfig(t, 1, src.urls, src.dirs[0])
	srcCfg.RestoreFrom = backup
	if _, err := Open(srcCfg); err == nil || !strings.Contains(err.Error(), "not restored") {
		t.Fatalf("restore onto a member of a cluster never restored: %v, want a refusal", err)
	}
}
