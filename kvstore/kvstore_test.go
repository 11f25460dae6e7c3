package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/pebble"
)

func fill(t *testing.T, s *Store, n int, applied uint64) {
	t.Helper()
	txn := s.NewTxn()
	for i := 0; i < n; i++ {
		txn.Batch().Put([]byte(fmt.Sprintf("vkey-%05d", i)), bytes.Repeat([]byte{byte(i)}, 300))
	}
	if err := txn.PutMember(Member{ID: 1, PeerURL: "http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	txn.RemoveMember(9)
	if err := txn.Commit(applied, false); err != nil {
		t.Fatal(err)
	}
}

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	var buf bytes.Buffer
	n, err := v.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	size, err := v.Size()
	if err != nil {
		t.Fatal(err)
	}
	if size != n || int64(buf.Len()) != n {
		t.Fatalf("Size() = %d, WriteTo wrote %d, buffer has %d", size, n, buf.Len())
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	src, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	// Enough data for several chunks.
	fill(t, src, 8000, 42)
	data := snapshotBytes(t, src)

	dst, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	applied, err := restore(t, dst, bytes.NewReader(data), memory.New())
	if err != nil {
		t.Fatal(err)
	}
	if applied != 42 || dst.Applied() != 42 {
		t.Fatalf("applied = %d / %d, want 42", applied, dst.Applied())
	}
	for _, i := range []int{0, 1234, 7999} {
		v, err := dst.Engine().Get([]byte(fmt.Sprintf("vkey-%05d", i)))
		if err != nil || !bytes.Equal(v, bytes.Repeat([]byte{byte(i)}, 300)) {
			t.Fatalf("key %d: %v %x", i, err, v)
		}
	}
	members, removed, err := dst.Members()
	if err != nil || len(members) != 1 || members[0].PeerURL != "http://127.0.0.1:1" || len(removed) != 1 || removed[0] != 9 {
		t.Fatalf("members %+v removed %v err %v", members, removed, err)
	}
	if again := snapshotBytes(t, dst); !bytes.Equal(again, data) {
		t.Fatal("a restored store does not produce the same stream")
	}
}

func TestSnapshotViewIsStable(t *testing.T) {
	s, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	fill(t, s, 100, 1)
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	txn := s.NewTxn()
	txn.Batch().Put([]byte("later"), []byte("x"))
	if err := txn.Commit(2, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := v.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dst, _ := Open(memory.New())
	applied, err := restore(t, dst, &buf, memory.New())
	if err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Fatalf("view applied index = %d, want 1", applied)
	}
	if _, err := dst.Engine().Get([]byte("later")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("write after the view leaked into it: %v", err)
	}
}

func TestSnapshotCorruptionKeepsState(t *testing.T) {
	src, _ := Open(memory.New())
	fill(t, src, 3000, 10)
	data := snapshotBytes(t, src)

	cases := map[string][]byte{
		"truncated":      data[:len(data)/2],
		"missing crc":    data[:len(data)-2],
		"flipped byte":   flip(data, len(data)/3),
		"flipped header": flip(data, 2),
		"flipped crc":    flip(data, len(data)-1),
		"trailing":       append(append([]byte(nil), data...), 1),
		"empty":          nil,
	}
	for name, bad := range cases {
		t.Run(name, func(t *testing.T) {
			dst, _ := Open(memory.New())
			txn := dst.NewTxn()
			txn.Batch().Put([]byte("mine"), []byte("keep"))
			if err := txn.Commit(5, false); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifySnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("VerifySnapshot: got %v, want ErrCorruptSnapshot", err)
			}
			_, err := restore(t, dst, bytes.NewReader(bad), memory.New())
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: got %v, want ErrCorruptSnapshot", err)
			}
			if v, err := dst.Engine().Get([]byte("mine")); err != nil || string(v) != "keep" || dst.Applied() != 5 {
				t.Fatalf("previous state lost: %q %v applied=%d", v, err, dst.Applied())
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x40
	return c
}

func FuzzSnapshotDecode(f *testing.F) {
	s, _ := Open(memory.New())
	txn := s.NewTxn()
	txn.Batch().Put([]byte("a"), []byte("b"))
	txn.Commit(1, false)
	v, _ := s.View()
	var buf bytes.Buffer
	v.WriteTo(&buf)
	v.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		VerifySnapshot(bytes.NewReader(data))
	})
}

func TestLoadBackupDropsClusterState(t *testing.T) {
	src, _ := Open(memory.New())
	fill(t, src, 50, 7)
	txn := src.NewTxn()
	txn.SetAlarm(Alarm{MemberID: 1, Type: 1}, true)
	if err := txn.Commit(8, false); err != nil {
		t.Fatal(err)
	}
	eng := memory.New()
	if err := LoadBackup(bytes.NewReader(snapshotBytes(t, src)), eng); err != nil {
		t.Fatal(err)
	}
	dst, err := Open(eng)
	if err != nil {
		t.Fatal(err)
	}
	members, removed, err := dst.Members()
	alarms, aerr := dst.Alarms()
	if err != nil || aerr != nil || len(members) != 0 || len(removed) != 0 || len(alarms) != 0 || dst.Applied() != 0 {
		t.Fatalf("cluster state kept: members %v removed %v alarms %v applied %d (%v, %v)", members, removed, alarms, dst.Applied(), err, aerr)
	}
	if v, err := eng.Get([]byte("vkey-00049")); err != nil || len(v) != 300 {
		t.Fatalf("data lost: %v", err)
	}
}

// TestInUse: the quota's figure is the engine's live data where it knows
// it: the memory engine's keys and values, pebble's tables and WAL.
func TestInUse(t *testing.T) {
	opens := map[string]func(dir string) (storage.Engine, error){
		"memory": func(string) (storage.Engine, error) { return memory.New(), nil },
		"pebble": func(dir string) (storage.Engine, error) { return pebble.Open(dir, nil) },
	}
	for name, open := range opens {
		t.Run(name, func(t *testing.T) {
			eng, err := open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			s, err := Open(eng)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			before, err := s.InUse()
			if err != nil {
				t.Fatal(err)
			}
			b := eng.NewBatch()
			b.Put([]byte("big"), make([]byte, 200_000))
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			after, err := s.InUse()
			if err != nil {
				t.Fatal(err)
			}
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if after-before < 200_000 || after != st.LiveBytes {
				t.Errorf("InUse = %d before and %d after a 200 kB value; want it to grow by the value and equal Stats.LiveBytes (%d)", before, after, st.LiveBytes)
			}
		})
	}
}

// restore is Store.Restore closing the replaced engine, as the server
// does.
func restore(t *testing.T, s *Store, r io.Reader, fresh storage.Engine) (uint64, error) {
	t.Helper()
	applied, old, err := s.Restore(r, fresh)
	if err != nil {
		return 0, err
	}
	if err := old.Close(); err != nil {
		t.Fatalf("close the engine Restore replaced: %v", err)
	}
	return applied, nil
}

// TestRestoreHandsBackOldEngine: Restore switches to the new engine and
// hands the old one back open, for the caller to close.
func TestRestoreHandsBackOldEngine(t *testing.T) {
	src, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	txn := src.NewTxn()
	txn.Batch().Put([]byte("k"), []byte("restored"))
	if err := txn.Commit(7, false); err != nil {
		t.Fatal(err)
	}
	first := memory.New()
	dst, err := Open(first)
	if err != nil {
		t.Fatal(err)
	}
	txn = dst.NewTxn()
	txn.Batch().Put([]byte("k"), []byte("mine"))
	if err := txn.Commit(3, false); err != nil {
		t.Fatal(err)
	}
	fresh := memory.New()
	applied, old, err := dst.Restore(bytes.NewReader(snapshotBytes(t, src)), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if old != first {
		t.Fatalf("Restore handed back %v, want the engine it replaced", old)
	}
	if v, err := old.Get([]byte("k")); err != nil || string(v) != "mine" {
		t.Fatalf("the replaced engine, before its caller closes it: k = %q, %v; want it open with mine", v, err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if applied != 7 || dst.Engine() != fresh || dst.Applied() != 7 {
		t.Fatalf("after the restore: applied %d (returned %d), engine switched %v; want 7 and the new engine", dst.Applied(), applied, dst.Engine() == fresh)
	}
	txn = dst.NewTxn()
	defer txn.Abort()
	if v, err := txn.Batch().Get([]byte("k")); err != nil || string(v) != "restored" {
		t.Fatalf("k = %q, %v; want restored", v, err)
	}
}
