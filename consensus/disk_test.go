package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"go.etcd.io/etcd/server/v3/storage/wal"
	"go.etcd.io/etcd/server/v3/storage/wal/walpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// testEntries makes entries lo..hi at term with recognisable data.
func testEntries(lo, hi, term uint64) []*raftpb.Entry {
	var ents []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, &raftpb.Entry{
			Term:  proto.Uint64(term),
			Index: proto.Uint64(i),
			Type:  raftpb.EntryNormal.Enum(),
			Data:  fmt.Appendf(nil, "key-%03d=value-%03d-%s", i, i, strings.Repeat("x", 100)),
		})
	}
	return ents
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func checkEntries(t *testing.T, got []*raftpb.Entry, lo, hi, term uint64) {
	t.Helper()
	want := testEntries(lo, hi, term)
	if len(got) != len(want) {
		t.Fatalf("%d entries, want %d (%d..%d)", len(got), len(want), lo, hi)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// walFrame is one record of a WAL file, as laid out on disk.
type walFrame struct {
	off, end int64 // [off, end) including the length field and padding
	rec      *walpb.Record
	recLen   int64
}

// readFrames walks the records of a WAL file up to the zeroed tail.
func readFrames(t *testing.T, b []byte) []walFrame {
	t.Helper()
	var frames []walFrame
	for off := int64(0); off+8 <= int64(len(b)); {
		l := int64(binary.LittleEndian.Uint64(b[off:]))
		if l == 0 {
			break
		}
		recLen := int64(uint64(l) & ^(uint64(0xff) << 56))
		var pad int64
		if l < 0 {
			pad = int64((uint64(l) >> 56) & 0x7)
		}
		rec := &walpb.Record{}
		if err := proto.Unmarshal(b[off+8:off+8+recLen], rec); err != nil {
			t.Fatalf("frame at %d: %v", off, err)
		}
		frames = append(frames, walFrame{off: off, end: off + 8 + recLen + pad, rec: rec, recLen: recLen})
		off += 8 + recLen + pad
	}
	return frames
}

// onlyWAL returns the single WAL file of dir, and its content.
func onlyWAL(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	files := walFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("WAL files %v, want one", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return files[0], b
}

func TestDiskFreshAndReopen(t *testing.T) {
	dir := t.TempDir()
	lg := testLogger(t)
	d, b, err := OpenDisk(lg, dir, []byte("meta-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !b.Fresh || !bytes.Equal(b.Metadata, []byte("meta-1")) || b.Snapshot != nil || len(b.Entries) != 0 {
		t.Fatalf("fresh bootstrap = %+v", b)
	}
	if err := d.Save(hardState(1, 1, 3), testEntries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	if err := d.Save(hardState(2, 2, 4), testEntries(4, 6, 2)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d, b, err = OpenDisk(lg, dir, []byte("ignored"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if b.Fresh || !bytes.Equal(b.Metadata, []byte("meta-1")) {
		t.Fatalf("reopened bootstrap fresh=%v metadata=%q", b.Fresh, b.Metadata)
	}
	if !proto.Equal(b.HardState, hardState(2, 2, 4)) {
		t.Fatalf("hard state %v", b.HardState)
	}
	checkEntries(t, b.Entries[:3], 1, 3, 1)
	checkEntries(t, b.Entries[3:], 4, 6, 2)
	ms, err := b.NewMemoryStorage()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := ms.FirstIndex(); fi != 1 {
		t.Fatalf("first index %d", fi)
	}
	if li, _ := ms.LastIndex(); li != 6 {
		t.Fatalf("last index %d", li)
	}
}

// TestDiskTornTail cuts the last record short, as a power loss in the middle
// of a write leaves it: OpenDisk repairs the WAL and returns what was whole.
func TestDiskTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		// write fills the WAL; the last record it writes is torn.
		write     func(*Disk) error
		wantHS    *raftpb.HardState
		wantLast  uint64
		lastIsEnt bool
	}{
		{
			name: "torn entry",
			write: func(d *Disk) error {
				if err := d.Save(hardState(2, 1, 5), testEntries(1, 5, 2)); err != nil {
					return err
				}
				return d.Save(nil, testEntries(6, 8, 2)) // last record: entry 8
			},
			wantHS:    hardState(2, 1, 5),
			wantLast:  7,
			lastIsEnt: true,
		},
		{
			name: "torn hard state",
			write: func(d *Disk) error {
				if err := d.Save(hardState(1, 1, 2), testEntries(1, 3, 1)); err != nil {
					return err
				}
				return d.Save(hardState(2, 2, 5), testEntries(4, 5, 2)) // last record: hard state
			},
			wantHS:   hardState(1, 1, 2),
			wantLast: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lg := testLogger(t)
			d, _, err := OpenDisk(lg, dir, []byte("meta"))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.write(d); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}

			path, b := onlyWAL(t, dir)
			frames := readFrames(t, b)
			last := frames[len(frames)-1]
			wantType := wal.StateType
			if tc.lastIsEnt {
				wantType = wal.EntryType
			}
			if last.rec.GetType() != wantType {
				t.Fatalf("last record has type %d, want %d", last.rec.GetType(), wantType)
			}
			// Power lost mid-write: the record's last bytes never made it.
			if err := os.Truncate(path, last.off+8+last.recLen-3); err != nil {
				t.Fatal(err)
			}

			d, boot, err := OpenDisk(lg, dir, nil)
			if err != nil {
				t.Fatalf("OpenDisk after torn write: %v", err)
			}
			if boot.Fresh || !bytes.Equal(boot.Metadata, []byte("meta")) {
				t.Fatalf("fresh=%v metadata=%q", boot.Fresh, boot.Metadata)
			}
			if !proto.Equal(boot.HardState, tc.wantHS) {
				t.Fatalf("hard state %v, want %v", boot.HardState, tc.wantHS)
			}
			if n := uint64(len(boot.Entries)); n != tc.wantLast {
				t.Fatalf("%d entries after repair, want %d", n, tc.wantLast)
			}
			for i, e := range boot.Entries {
				term := uint64(2)
				if !tc.lastIsEnt && e.GetIndex() <= 3 {
					term = 1
				}
				if !proto.Equal(e, testEntries(uint64(i+1), uint64(i+1), term)[0]) {
					t.Fatalf("entry %d = %v", i+1, e)
				}
			}
			if _, err := os.Stat(path + ".broken"); err != nil {
				t.Errorf("no backup of the torn file: %v", err)
			}

			// The repaired WAL takes new records and reads back whole.
			next := tc.wantLast + 1
			if err := d.Save(hardState(3, 1, next), testEntries(next, next+1, 3)); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d, boot, err = OpenDisk(lg, dir, nil)
			if err != nil {
				t.Fatalf("OpenDisk after repair and append: %v", err)
			}
			defer d.Close()
			if n := uint64(len(boot.Entries)); n != next+1 {
				t.Fatalf("%d entries, want %d", n, next+1)
			}
			checkEntries(t, boot.Entries[next-1:], next, next+1, 3)
			if !proto.Equal(boot.HardState, hardState(3, 1, next)) {
				t.Fatalf("hard state %v", boot.HardState)
			}
		})
	}
}

// TestDiskCorruptMiddle flips a byte inside an entry in the middle of the
// WAL: that is not a torn write and must stop the member, not lose the rest
// of the log silently.
func TestDiskCorruptMiddle(t *testing.T) {
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
	at := bytes.Index(b, []byte("value-010-"))
	if at < 0 {
		t.Fatal("entry 10 not found in the WAL")
	}
	at += 50 // well inside entry 10's data
	b[at] ^= 0xff
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b[at:at+1], int64(at)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	for attempt := range 2 {
		_, _, err := OpenDisk(lg, dir, nil)
		if err == nil {
			t.Fatalf("attempt %d: OpenDisk accepted a WAL with a corrupt record in the middle", attempt)
		}
		if !errors.Is(err, walpb.ErrCRCMismatch) {
			t.Fatalf("attempt %d: error %v, want a CRC mismatch", attempt, err)
		}
	}
	// Nothing was cut off or repaired.
	if _, err := os.Stat(path + ".broken"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt WAL was treated as torn: %v", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, b) {
		t.Fatal("OpenDisk modified the corrupt WAL")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "wal", "*")); len(m) != 1 {
		t.Fatalf("WAL dir holds %v", m)
	}
}

func TestCheckContinuity(t *testing.T) {
	ents := func(from, n uint64) []*raftpb.Entry {
		var out []*raftpb.Entry
		for i := range n {
			out = append(out, &raftpb.Entry{Index: proto.Uint64(from + i), Term: proto.Uint64(1)})
		}
		return out
	}
	hs := func(commit uint64) *raftpb.HardState { return &raftpb.HardState{Commit: proto.Uint64(commit)} }
	for _, tc := range []struct {
		name      string
		snap      uint64
		hs        *raftpb.HardState
		ents      []*raftpb.Entry
		wantError bool
	}{
		{"fresh log", 0, hs(5), ents(1, 5), false},
		{"after snapshot", 100, hs(103), ents(101, 3), false},
		{"nothing after snapshot", 100, hs(100), nil, false},
		{"entries start after a lost snapshot", 0, hs(103), ents(101, 3), true},
		{"commit past the entries (lost snapshot)", 0, hs(117), ents(1, 17), true},
	} {
		if err := checkContinuity(tc.snap, tc.hs, tc.ents); (err != nil) != tc.wantError {
			t.Errorf("%s: err = %v, want error %v", tc.name, err, tc.wantError)
		}
	}
}

// TestSaveStateFrom saves state streams larger than the writeback chunk,
// replaces one, and checks what OpenState reads back, that a failed stream
// leaves neither a state file nor a temporary file behind, and that the
// snapshot dir holds nothing else.
func TestSaveStateFrom(t *testing.T) {
	d, _, err := OpenDisk(testLogger(t), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	payload := func(seed byte, n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i*7)
		}
		return b
	}
	check := func(i uint64, want []byte) {
		t.Helper()
		f, err := d.OpenState(i)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		got, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("state %d: read %d bytes, want the %d saved", i, len(got), len(want))
		}
	}
	big := payload(1, 3*writebackChunk+12345)
	if n, err := d.SaveStateFrom(bytes.NewReader(big), 10); err != nil || n != int64(len(big)) {
		t.Fatalf("save: n=%d err=%v", n, err)
	}
	check(10, big)
	other := payload(2, writebackChunk/2)
	if _, err := d.SaveStateFrom(bytes.NewReader(other), 10); err != nil {
		t.Fatal(err)
	}
	check(10, other)

	broken := io.MultiReader(bytes.NewReader(big), iotest.ErrReader(errors.New("stream cut")))
	if _, err := d.SaveStateFrom(broken, 20); err == nil || !strings.Contains(err.Error(), "stream cut") {
		t.Fatalf("save of a failing stream: err=%v, want the stream's error", err)
	}
	if _, err := os.Stat(d.StateFile(20)); !os.IsNotExist(err) {
		t.Fatalf("a failed save left %s (stat err %v)", d.StateFile(20), err)
	}
	names, err := os.ReadDir(d.SnapDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != filepath.Base(d.StateFile(10)) {
		var got []string
		for _, n := range names {
			got = append(got, n.Name())
		}
		t.Fatalf("snapshot dir holds %v, want only %s", got, filepath.Base(d.StateFile(10)))
	}
}
