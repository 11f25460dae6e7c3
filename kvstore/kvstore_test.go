package kvstore

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/metcd/metcd/storage/memory"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []Request{
		{ID: 1, Op: OpPut, Key: []byte("a"), Value: []byte("b")},
		{ID: 1<<63 + 5, Op: OpPut, Key: []byte("config/db/host"), Value: nil},
		{Op: OpDelete, Key: []byte{0, 0xff, 1}},
	} {
		var got Request
		if err := got.Unmarshal(r.Marshal()); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got.ID != r.ID || got.Op != r.Op || !bytes.Equal(got.Key, r.Key) || !bytes.Equal(got.Value, r.Value) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
	}
}

func TestRequestRejectsMalformed(t *testing.T) {
	good := (&Request{ID: 7, Op: OpPut, Key: []byte("key"), Value: []byte("value")}).Marshal()
	cases := map[string][]byte{
		"empty":         nil,
		"bad version":   append([]byte{9}, good[1:]...),
		"bad op":        append([]byte{good[0], 77}, good[2:]...),
		"truncated":     good[:len(good)-1],
		"trailing data": append(append([]byte(nil), good...), 0),
	}
	for name, data := range cases {
		var r Request
		if err := r.Unmarshal(data); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%s: got %v, want ErrBadRequest", name, err)
		}
	}
}

func fill(t *testing.T, s *Store, n int, applied uint64) {
	t.Helper()
	txn := s.NewTxn()
	for i := 0; i < n; i++ {
		if err := txn.Put([]byte(fmt.Sprintf("key-%05d", i)), bytes.Repeat([]byte{byte(i)}, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.AddMember(Member{ID: 1, PeerURL: "http://127.0.0.1:1"}); err != nil {
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
	applied, err := dst.Restore(bytes.NewReader(data), memory.New())
	if err != nil {
		t.Fatal(err)
	}
	if dst.Keys() != 8000 {
		t.Fatalf("restored key count %d, want 8000", dst.Keys())
	}
	if applied != 42 || dst.Applied() != 42 {
		t.Fatalf("applied = %d / %d, want 42", applied, dst.Applied())
	}
	for _, i := range []int{0, 1234, 7999} {
		v, err := dst.Get([]byte(fmt.Sprintf("key-%05d", i)))
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
	txn.Put([]byte("later"), []byte("x"))
	if err := txn.Commit(2, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := v.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	dst, _ := Open(memory.New())
	applied, err := dst.Restore(&buf, memory.New())
	if err != nil {
		t.Fatal(err)
	}
	if applied != 1 {
		t.Fatalf("view applied index = %d, want 1", applied)
	}
	if _, err := dst.Get([]byte("later")); !errors.Is(err, ErrNotFound) {
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
			txn.Put([]byte("mine"), []byte("keep"))
			if err := txn.Commit(5, false); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifySnapshot(bytes.NewReader(bad)); !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("VerifySnapshot: got %v, want ErrCorruptSnapshot", err)
			}
			_, err := dst.Restore(bytes.NewReader(bad), memory.New())
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("Restore: got %v, want ErrCorruptSnapshot", err)
			}
			if v, err := dst.Get([]byte("mine")); err != nil || string(v) != "keep" || dst.Applied() != 5 {
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

func TestTxnDeleteSeesOwnWrites(t *testing.T) {
	s, _ := Open(memory.New())
	txn := s.NewTxn()
	if existed, err := txn.Delete([]byte("a")); err != nil || existed {
		t.Fatalf("delete of absent key: existed=%v err=%v", existed, err)
	}
	txn.Put([]byte("a"), []byte("1"))
	if existed, _ := txn.Delete([]byte("a")); !existed {
		t.Fatal("delete after put in the same txn: want existed")
	}
	if existed, _ := txn.Delete([]byte("a")); existed {
		t.Fatal("second delete: want absent")
	}
	if err := txn.Commit(3, false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("a")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if s.Applied() != 3 {
		t.Fatalf("applied %d, want 3", s.Applied())
	}
	if n := s.Keys(); n != 0 {
		t.Fatalf("Keys = %d, want 0", n)
	}
}

func FuzzRequestUnmarshal(f *testing.F) {
	f.Add((&Request{ID: 3, Op: OpPut, Key: []byte("k"), Value: []byte("v")}).Marshal())
	f.Add((&Request{ID: 4, Op: OpDelete, Key: []byte("k")}).Marshal())
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Request
		if err := r.Unmarshal(data); err != nil {
			return
		}
		var again Request
		if err := again.Unmarshal(r.Marshal()); err != nil {
			t.Fatalf("re-encoding a decoded request fails: %v", err)
		}
	})
}

func FuzzSnapshotDecode(f *testing.F) {
	s, _ := Open(memory.New())
	txn := s.NewTxn()
	txn.Put([]byte("a"), []byte("b"))
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
