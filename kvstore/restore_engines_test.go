package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/leveldb"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/pebble"
)

// TestRestoreOnDisk installs a stream into each on-disk kind of engine:
// Pebble through a bulk load (storage.Loader), goleveldb through batches.
// Both must hold exactly the state the stream carries, and a damaged
// stream must leave nothing behind in the fresh engine.
func TestRestoreOnDisk(t *testing.T) {
	src, err := Open(memory.New())
	if err != nil {
		t.Fatal(err)
	}
	fill(t, src, 8000, 42)
	data := snapshotBytes(t, src)

	engines := map[string]func(dir string) (storage.Engine, error){
		"pebble":  func(dir string) (storage.Engine, error) { return pebble.Open(dir, nil) },
		"leveldb": func(dir string) (storage.Engine, error) { return leveldb.Open(dir, nil) },
	}
	for name, open := range engines {
		t.Run(name, func(t *testing.T) {
			if _, isLoader := must(t, open, t.TempDir()).(storage.Loader); isLoader != (name == "pebble") {
				t.Fatalf("%s: storage.Loader = %v", name, isLoader)
			}
			dst, err := Open(memory.New())
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			fresh := must(t, open, dir)
			applied, err := restore(t, dst, bytes.NewReader(data), fresh)
			if err != nil {
				t.Fatal(err)
			}
			if applied != 42 || dst.Applied() != 42 {
				t.Fatalf("applied = %d / %d, want 42", applied, dst.Applied())
			}
			if again := snapshotBytes(t, dst); !bytes.Equal(again, data) {
				t.Fatal("the restored engine does not produce the same stream")
			}
			if _, err := os.Stat(filepath.Join(dir, "load.tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("load.tmp left after a restore: %v", err)
			}

			for what, bad := range map[string][]byte{
				"truncated":    data[:len(data)*2/3],
				"flipped byte": flip(data, len(data)/2),
				"flipped crc":  flip(data, len(data)-1),
			} {
				fresh := must(t, open, t.TempDir())
				if _, err := restore(t, dst, bytes.NewReader(bad), fresh); !errors.Is(err, ErrCorruptSnapshot) {
					t.Fatalf("%s: Restore: got %v, want ErrCorruptSnapshot", what, err)
				}
				if name == "pebble" {
					// A load becomes visible only after the whole stream checked out.
					if _, err := fresh.Get([]byte("vkey-00000")); !errors.Is(err, storage.ErrNotFound) {
						t.Fatalf("%s: a damaged stream's keys are visible: %v", what, err)
					}
				}
				if v, err := dst.Engine().Get([]byte("vkey-00001")); err != nil || !bytes.Equal(v, bytes.Repeat([]byte{1}, 300)) {
					t.Fatalf("%s: installed state lost: %v", what, err)
				}
			}
		})
	}
}

func must(t *testing.T, open func(string) (storage.Engine, error), dir string) storage.Engine {
	t.Helper()
	e, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestRestoreRefusesDisorder: a stream whose chunks carry valid checksums
// but keys out of order cannot be bulk loaded, and says so.
func TestRestoreRefusesDisorder(t *testing.T) {
	var buf bytes.Buffer
	writeStream(&buf, 7, [][2]string{{"b", "1"}, {"a", "2"}})
	if _, err := VerifySnapshot(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("the hand-made stream is not well formed: %v", err)
	}
	fresh, err := pebble.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	dst, _ := Open(memory.New())
	if _, err := restore(t, dst, bytes.NewReader(buf.Bytes()), fresh); err == nil {
		t.Fatal("a stream out of key order was installed")
	}
	if _, err := fresh.Get([]byte("b")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("key of a refused stream visible: %v", err)
	}
}

// writeStream writes a stream of one chunk holding records in the order
// given, with correct checksums.
func writeStream(w *bytes.Buffer, applied uint64, records [][2]string) {
	var payload []byte
	for _, r := range records {
		payload = appendLenPrefixed(payload, r[0])
		payload = appendLenPrefixed(payload, r[1])
	}
	var b []byte
	b = append(b, snapMagic...)
	b = be32(b, snapVersion)
	b = be64(b, applied)
	b = be32(b, uint32(len(records)))
	b = be32(b, uint32(len(payload)))
	b = append(b, payload...)
	b = be32(b, crc32.Checksum(payload, castagnoli))
	b = be32(b, 0)
	b = be64(b, uint64(len(records)))
	b = be32(b, crc32.Checksum(b, castagnoli))
	w.Write(b)
}

func appendLenPrefixed(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func be64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
