package e2e

// Damaged files in a stopped member's data dir: the WAL (a torn last
// record, a checksum mismatch or a damaged length in the middle), the raft
// snapshot files (member/snap/*.snap) and the state streams
// (member/snap/*.snap.db). A member either repairs what a crash can leave
// (a torn tail), starts correctly when the damaged file is not needed, or
// refuses to start with a message saying what is damaged; it never starts
// with less than it acknowledged. consensus/disk_test.go covers OpenDisk
// on its own; these run the real binary in a cluster.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"google.golang.org/protobuf/proto"
)

// walFrame is one record of a WAL file as laid out on disk: an 8-byte
// little-endian length (its top byte flags padding), the record, padding.
type walFrame struct {
	off, end int64
	recLen   int64
	rec      *walpb.Record
}

// walFramesOf walks the records of a WAL file up to its zeroed
// (preallocated) tail.
func walFramesOf(t *testing.T, b []byte) []walFrame {
	t.Helper()
	var frames []walFrame
	for off := int64(0); off+8 <= int64(len(b)); {
		l := binary.LittleEndian.Uint64(b[off:])
		if l == 0 {
			break
		}
		recLen := int64(l &^ (uint64(0xff) << 56))
		var pad int64
		if l&(1<<63) != 0 {
			pad = int64((l >> 56) & 0x7)
		}
		if off+8+recLen > int64(len(b)) {
			t.Fatalf("WAL frame at %d runs past the end of the file", off)
		}
		rec := &walpb.Record{}
		if err := proto.Unmarshal(b[off+8:off+8+recLen], rec); err != nil {
			t.Fatalf("WAL frame at %d: %v", off, err)
		}
		frames = append(frames, walFrame{off: off, end: off + 8 + recLen + pad, recLen: recLen, rec: rec})
		off += 8 + recLen + pad
	}
	return frames
}

// walFiles returns member i's WAL segment files, oldest first.
func walFiles(t *testing.T, c *Cluster, i int) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(c.Members[i].DataDir, "member", "wal", "*.wal"))
	if err != nil || len(files) == 0 {
		t.Fatalf("member %d: no WAL files (%v)", c.Members[i].ID, err)
	}
	sort.Strings(files)
	return files
}

// snapDir is member i's snapshot directory.
func snapDir(c *Cluster, i int) string {
	return filepath.Join(c.Members[i].DataDir, "member", "snap")
}

// snapFiles returns the raft snapshot files (*.snap) of member i, oldest
// first, and the index of each.
func snapFiles(t *testing.T, c *Cluster, i int) ([]string, []uint64) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(snapDir(c, i), "*.snap"))
	sort.Strings(files)
	idx := make([]uint64, len(files))
	for n, f := range files {
		// <term>-<index>.snap, both %016x
		_, ix, ok := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".snap"), "-")
		v, err := strconv.ParseUint(ix, 16, 64)
		if !ok || err != nil {
			t.Fatalf("snapshot file name %s", f)
		}
		idx[n] = v
	}
	return files, idx
}

// stateFile is the state stream saved with snapshot index si.
func stateFile(c *Cluster, i int, si uint64) string {
	return filepath.Join(snapDir(c, i), fmt.Sprintf("%016x.snap.db", si))
}

// flipByte inverts the byte at off of the file at path in place.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("reading %s at %d: %v", path, off, err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// readFile reads a whole file or fails the test.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFile replaces a file's content or fails the test.
func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startRefused starts member i and fails the test unless it exits non-zero
// by itself; it returns the log of that start.
func startRefused(t *testing.T, c *Cluster, i int, why string) string {
	t.Helper()
	c.Restart(i)
	waitExitFailed(t, c, i, 30*time.Second, why)
	log := lastStart(c.Log(i))
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "metcd: ") {
			t.Logf("member %d refused to start: %s", c.Members[i].ID, l)
		}
	}
	return log
}

// rejoin waits until restarted member i has caught up, holds every
// acknowledged write and the same HashKV as the others.
func rejoin(t *testing.T, c *Cluster, i int, acked map[string]string) {
	t.Helper()
	li := c.WaitLeader(30 * time.Second)
	c.WaitCaughtUp(i, li, 30*time.Second)
	c.Eventually(30*time.Second, fmt.Sprintf("member %d has every acknowledged write", c.Members[i].ID), func() error {
		return serializableHasAll(c, i, acked)
	})
	faultHashKVEqual(t, c, li, 0, 1, 2)
}

// TestCorruptWALTornTail kills a follower with SIGKILL while writes are
// running and cuts its last WAL file in the middle of its last record, as
// a write cut short leaves it. The member repairs the WAL at start (it
// says so and keeps the damaged file as .broken) and rejoins with every
// acknowledged write.
func TestCorruptWALTornTail(t *testing.T) {
	c := NewCluster(t, Options{Size: 3, Extra: faultElection})
	log := newAckLog()
	for k := range 20 {
		log.mustPut(t, c, k%3, fmt.Sprintf("torn/before/%02d", k), fmt.Sprintf("v%d", k))
	}
	li := c.WaitLeader(10 * time.Second)
	victim := others(3, li)[0]
	w := startWriters(c, log, "torn/during", 200, 0, 1, 2)
	c.Eventually(20*time.Second, "writers get going", func() error {
		if n := log.count(); n < 100 {
			return fmt.Errorf("%d writes acknowledged", n)
		}
		return nil
	})
	c.Kill(victim)
	for k := range 20 {
		log.mustPut(t, c, others(3, victim)[k%2], fmt.Sprintf("torn/after/%02d", k), fmt.Sprintf("a%d", k))
	}
	w.stop()

	files := walFiles(t, c, victim)
	last := files[len(files)-1]
	b := readFile(t, last)
	frames := walFramesOf(t, b)
	if len(frames) < 2 {
		t.Fatalf("%s holds %d records", last, len(frames))
	}
	// Power lost in the middle of writing one more record: its header and
	// the sector it starts in reached the disk, the following sectors did
	// not (sector writes are atomic, so a torn record always has a whole
	// zeroed sector, which is what etcd's WAL recognises as torn). Cutting
	// a record that was already complete would instead be losing fsynced
	// data the member had acknowledged to its leader, which no WAL survives.
	fr := frames[len(frames)-1]
	const tornLen = 2048
	start := fr.end
	boundary := (start+8)/512*512 + 512
	n := min(boundary-(start+8), fr.recLen)
	torn := binary.LittleEndian.AppendUint64(nil, tornLen)
	torn = append(torn, b[fr.off+8:fr.off+8+n]...)
	f, err := os.OpenFile(last, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(torn, start); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote a torn %d-byte record (its first %d bytes) after the end of %s at %d", tornLen, len(torn), filepath.Base(last), start)

	c.Restart(victim)
	acked, unknown, _ := log.snapshot(victim)
	rejoin(t, c, victim, acked)
	logHas(t, c, victim, "WAL ends in a torn record; repairing")
	if _, err := os.Stat(last + ".broken"); err != nil {
		t.Errorf("no copy of the torn WAL file kept: %v", err)
	}
	checkUnknown(t, c, victim, unknown)
	log.mustPut(t, c, victim, "torn/back", "yes")
	c.MustGet(li, "torn/back", "yes")
}

// TestCorruptWALChecksum damages an early record of a stopped follower's
// WAL: first one byte of an entry's data (a checksum mismatch), then one
// bit of a record's length field instead. Either way the member must
// refuse to start, say the WAL is damaged, and change nothing: cutting the
// WAL at the damage would silently drop every record after it. With the
// WAL mended it rejoins with everything.
func TestCorruptWALChecksum(t *testing.T) {
	c := NewCluster(t, Options{Size: 3, Extra: faultElection})
	log := newAckLog()
	value := func(k int) string { return fmt.Sprintf("crc-value-%02d-%s", k, strings.Repeat("x", 64)) }
	for k := range 30 {
		log.mustPut(t, c, k%3, fmt.Sprintf("crc/%02d", k), value(k))
	}
	li := c.WaitLeader(10 * time.Second)
	for i := range c.Members {
		c.WaitCaughtUp(i, li, 10*time.Second)
	}
	victim := others(3, li)[0]
	c.StopClean(victim)

	files := walFiles(t, c, victim)
	path := files[0]
	orig := readFile(t, path)
	at := bytes.Index(orig, []byte(value(5)))
	if at < 0 {
		t.Fatalf("the entry of crc/05 is not in %s", path)
	}
	var frame *walFrame
	for _, f := range walFramesOf(t, orig) {
		if int64(at) >= f.off && int64(at) < f.end {
			frame = &f
			break
		}
	}
	if frame == nil || frame.rec.GetType() != 2 {
		t.Fatalf("no entry record around offset %d", at)
	}
	wantUnchanged := func(label string, want []byte) {
		t.Helper()
		if got := readFile(t, path); !bytes.Equal(got, want) {
			t.Errorf("%s: the refused start changed the WAL file", label)
		}
		if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.broken")); len(m) != 0 {
			t.Errorf("%s: the refused start treated the WAL as torn: %v", label, m)
		}
	}

	// A byte of the entry's data: the record's CRC no longer matches.
	flipByte(t, path, int64(at)+20)
	damaged := readFile(t, path)
	for attempt := range 2 {
		log := startRefused(t, c, victim, "start with a checksum mismatch in the WAL")
		if !strings.Contains(log, "WAL") || !strings.Contains(log, "crc mismatch") {
			t.Errorf("attempt %d: the member does not say its WAL has a crc mismatch; log tail:\n%s", attempt, strings.Join(tailLines(log, 10), "\n"))
		}
		wantUnchanged("crc", damaged)
	}

	// One bit of the same record's length field instead: the record seems
	// to run past the end of the segment.
	writeFile(t, path, orig)
	l := binary.LittleEndian.Uint64(orig[frame.off:])
	lenDamaged := append([]byte(nil), orig...)
	binary.LittleEndian.PutUint64(lenDamaged[frame.off:], l|1<<40)
	writeFile(t, path, lenDamaged)
	log2 := startRefused(t, c, victim, "start with a damaged record length in the WAL")
	if !strings.Contains(log2, "WAL in") || !strings.Contains(log2, "damaged before its end") {
		t.Errorf("the member does not say its WAL is damaged; log tail:\n%s", strings.Join(tailLines(log2, 10), "\n"))
	}
	wantUnchanged("length", lenDamaged)

	// Meanwhile the others serve.
	for k := 30; k < 40; k++ {
		log.mustPut(t, c, others(3, victim)[k%2], fmt.Sprintf("crc/%02d", k), value(k))
	}
	writeFile(t, path, orig)
	c.Restart(victim)
	acked, _, _ := log.snapshot(victim)
	rejoin(t, c, victim, acked)
}

// TestCorruptSnapshotFiles damages a stopped member's raft snapshot files
// (member/snap/*.snap) and state streams (member/snap/*.snap.db):
//
//   - memory engine: the member rebuilds its state from the newest
//     snapshot's state stream, so a damaged one must stop it; a state
//     stream that is whole but from another snapshot must not be taken for
//     the newest one. Damaged .snap files are set aside (renamed .broken)
//     and, as the WAL still holds the whole log here, the member starts
//     from the WAL alone.
//   - durable engine (pebble), a member that caught up through a snapshot
//     from the leader: its engine is ahead of the state stream, which is
//     not read, so damage there does not matter; but its WAL starts at
//     that snapshot, so with every .snap damaged it must refuse to start.
func TestCorruptSnapshotFiles(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		c := NewCluster(t, Options{Size: 3, Extra: append([]string{"--engine", "memory", "--snapshot-count", "20"}, faultElection...)})
		log := newAckLog()
		for k := range 100 {
			log.mustPut(t, c, k%3, fmt.Sprintf("snapmem/%03d", k), snapValue(k))
		}
		li := c.WaitLeader(10 * time.Second)
		victim := others(3, li)[0]
		for i := range c.Members {
			c.WaitCaughtUp(i, li, 10*time.Second)
		}
		waitSnapshot(t, c, victim, 10*time.Second)
		c.StopClean(victim)
		snaps, idx := snapFiles(t, c, victim)
		if len(snaps) < 2 {
			t.Fatalf("member %d has %d snapshot files, want 2 or more", c.Members[victim].ID, len(snaps))
		}
		newest := idx[len(idx)-1]
		state := stateFile(c, victim, newest)
		orig := readFile(t, state)
		t.Logf("member %d: snapshots at %v; newest state stream %s (%d bytes)", c.Members[victim].ID, idx, filepath.Base(state), len(orig))

		// A damaged state stream: the member cannot rebuild its state.
		flipByte(t, state, int64(len(orig)/2))
		damaged := readFile(t, state)
		out := startRefused(t, c, victim, "memory member with a damaged state stream")
		if !strings.Contains(out, fmt.Sprintf("install snapshot %d", newest)) || !strings.Contains(out, "corrupt snapshot stream") {
			t.Errorf("the member does not say its state stream is damaged; log tail:\n%s", strings.Join(tailLines(out, 10), "\n"))
		}
		if got := readFile(t, state); !bytes.Equal(got, damaged) {
			t.Errorf("the refused start changed the damaged state stream")
		}

		// A whole stream, but of an older snapshot, under the newest name
		// (a mix-up of files): the member must refuse it, or start with
		// every acknowledged write, never with the older state.
		var older []byte
		for n := len(idx) - 2; n >= 0 && older == nil; n-- {
			older, _ = os.ReadFile(stateFile(c, victim, idx[n]))
		}
		if older == nil {
			t.Logf("no older state stream left to test a mixed-up one")
		} else {
			writeFile(t, state, older)
			c.Restart(victim)
			started := false
			Eventually(t, 30*time.Second, "the member refuses the mixed-up stream or catches up", func() error {
				if !c.Members[victim].Running() {
					return nil
				}
				s, err := c.Status(victim)
				if err != nil {
					return err
				}
				ls, err := c.Status(li)
				if err != nil {
					return err
				}
				if s.AppliedIndex < ls.CommitIndex {
					return fmt.Errorf("applied %d, leader's commit %d", s.AppliedIndex, ls.CommitIndex)
				}
				started = true
				return nil
			})
			if started {
				acked, _, _ := log.snapshot(victim)
				if err := serializableHasAll(c, victim, acked); err != nil {
					t.Errorf("member %d started from a state stream of an older snapshot saved under snapshot %d's name and lost writes silently: %v", c.Members[victim].ID, newest, err)
				}
				c.StopClean(victim)
			} else if code, _ := c.WaitExit(victim, time.Second); code == 0 {
				t.Errorf("member %d exited 0 on a mixed-up state stream", c.Members[victim].ID)
			} else {
				logHas(t, c, victim, fmt.Sprintf("snapshot %d", newest))
			}
		}
		writeFile(t, state, orig)

		// Every .snap damaged: they are set aside and the WAL, which here
		// still starts at index 1, is replayed whole.
		snaps, _ = snapFiles(t, c, victim)
		for _, s := range snaps {
			flipByte(t, s, int64(len(readFile(t, s))/2))
		}
		c.Restart(victim)
		acked, _, _ := log.snapshot(victim)
		rejoin(t, c, victim, acked)
		for _, s := range snaps {
			if _, err := os.Stat(s + ".broken"); err != nil {
				t.Errorf("damaged %s was not set aside: %v", filepath.Base(s), err)
			}
		}
	})

	t.Run("durable", func(t *testing.T) {
		c := NewCluster(t, Options{Size: 3, Extra: append([]string{"--snapshot-count", "20"}, faultElection...)})
		log := newAckLog()
		for k := range 10 {
			log.mustPut(t, c, k%3, fmt.Sprintf("snapdur/%03d", k), snapValue(k))
		}
		li := c.WaitLeader(10 * time.Second)
		victim := others(3, li)[0]
		rest := others(3, victim)
		c.Kill(victim)
		for k := 10; k < 110; k++ {
			log.mustPut(t, c, rest[k%2], fmt.Sprintf("snapdur/%03d", k), snapValue(k))
		}
		c.Restart(victim)
		c.Eventually(30*time.Second, "the lagging member installs a snapshot from the leader", func() error {
			if !strings.Contains(lastStart(c.Log(victim)), "installed snapshot state") {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		acked, _, _ := log.snapshot(victim)
		rejoin(t, c, victim, acked)
		c.StopClean(victim)

		snaps, idx := snapFiles(t, c, victim)
		states, _ := filepath.Glob(filepath.Join(snapDir(c, victim), "*.snap.db"))
		if len(states) == 0 || len(snaps) == 0 {
			t.Fatalf("member %d: snapshot files %v, state streams %v; want the leader's snapshot", c.Members[victim].ID, snaps, states)
		}
		t.Logf("member %d: snapshots at %v, state streams %v", c.Members[victim].ID, idx, states)

		// Damaged state streams are not needed: the engine is ahead.
		origStates := map[string][]byte{}
		for _, s := range states {
			b := readFile(t, s)
			origStates[s] = b
			flipByte(t, s, int64(len(b)/2))
		}
		c.Restart(victim)
		rejoin(t, c, victim, acked)
		if strings.Contains(lastStart(c.Log(victim)), "installed snapshot state") {
			t.Errorf("member %d read a state stream although its engine was ahead", c.Members[victim].ID)
		}
		c.StopClean(victim)
		for s, b := range origStates {
			writeFile(t, s, b)
		}

		// Every .snap damaged: the WAL starts at the leader's snapshot, so
		// without it the log has a gap. The member must refuse to start.
		snaps, _ = snapFiles(t, c, victim)
		origSnaps := map[string][]byte{}
		for _, s := range snaps {
			b := readFile(t, s)
			origSnaps[s] = b
			flipByte(t, s, int64(len(b)/2))
		}
		out := startRefused(t, c, victim, "member whose WAL needs a damaged snapshot")
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "snap") && (strings.Contains(l, "\twarn\t") || strings.Contains(l, "\terror\t")) {
				t.Logf("member %d logged: %s", c.Members[victim].ID, l)
			}
		}
		if !strings.Contains(out, "WAL") {
			t.Errorf("the member does not say why it cannot start; log tail:\n%s", strings.Join(tailLines(out, 10), "\n"))
		}
		for s, b := range origSnaps {
			// The refused start set the damaged files aside (.broken).
			os.Remove(s + ".broken")
			writeFile(t, s, b)
		}

		for k := 110; k < 120; k++ {
			log.mustPut(t, c, rest[k%2], fmt.Sprintf("snapdur/%03d", k), snapValue(k))
		}
		c.Restart(victim)
		acked, _, _ = log.snapshot(victim)
		rejoin(t, c, victim, acked)
	})
}
