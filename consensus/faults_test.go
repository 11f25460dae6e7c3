package consensus

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/storage/wal"
)

// TestWaitPersistedAfterPersistFailure guards a fixed bug: when
// handleReady failed to persist a Ready whose committed entries were
// already handed out on Applies, Apply.WaitPersisted blocked forever, and
// with it the server's apply loop and Stop. It must return the error.
func TestWaitPersistedAfterPersistFailure(t *testing.T) {
	c := newCluster(t, 3)
	all := []uint64{1, 2, 3}
	lead := c.waitLeader(all...)
	f := others(all, lead)[0]
	other := others(all, lead, f)[0]
	// Hold the follower back so that its next Ready carries new entries and
	// commits them at once; then break its WAL so that Ready cannot persist.
	for attempt := range 10 {
		c.waitConverged(all...)
		c.net.isolate(f, lead, other)
		c.propose(lead, "k", string(rune('a'+attempt)))
		if err := c.members[f].disk.w.Close(); err != nil {
			t.Fatal(err)
		}
		c.net.heal()
		if err := c.reap(f); err == nil {
			t.Fatal("follower with a closed WAL did not fail")
		}
		if ab := c.abandoned(f); len(ab) > 0 {
			done := make(chan error, 1)
			go func() { done <- ab[0].WaitPersisted() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("WaitPersisted reported success for a Ready that was never written")
				}
				return
			case <-time.After(2 * time.Second):
				t.Fatalf("Apply.WaitPersisted still blocked 2s after the node stopped on %v", c.node(f).Err())
			}
		}
		c.restart(f)
	}
	t.Skip("the failing Ready never carried committed entries")
}

// TestWALLengthCorruption guards a fixed bug: one damaged length field in
// the middle of the WAL makes the decoder report io.ErrUnexpectedEOF (the
// record seems to run past the end of the file), which OpenDisk took for a
// torn tail: wal.Repair cut the file there and the member started without
// the rest of its log and its newer hard states, silently.
func TestWALLengthCorruption(t *testing.T) {
	dir := t.TempDir()
	lg := testLogger(t)
	d, _, err := OpenDisk(lg, dir, []byte("meta"))
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i += 5 {
		if err := d.Save(hardState(1, 1, i+4), testEntries(i, i+4, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	path, b := onlyWAL(t, dir)
	found := false
	for _, f := range readFrames(t, b) {
		if f.rec.GetType() == wal.EntryType && wal.MustUnmarshalEntry(f.rec.GetData()).GetIndex() == 10 {
			l := binary.LittleEndian.Uint64(b[f.off:])
			binary.LittleEndian.PutUint64(b[f.off:], l|1<<40) // one flipped bit
			found = true
		}
	}
	if !found {
		t.Fatal("entry 10 not found")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	d, boot, err := OpenDisk(lg, dir, nil)
	if err == nil {
		d.Close()
		t.Fatalf("OpenDisk accepted a WAL damaged in the middle: %d of 20 entries, hard state %v", len(boot.Entries), boot.HardState)
	}
}
