package kvstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/metcd/metcd/storage"
)

// The snapshot stream is engine-neutral: any engine can produce it and any
// engine can install it, so members on different engines share a cluster.
//
//	header  magic "MTCDSNAP" | version u32 | applied index u64
//	chunk*  records u32 (>0) | payload length u32 | payload | crc32c(payload) u32
//	trailer 0 u32 | total records u64 | crc32c(all bytes before this field) u32
//
// A payload is a run of records: uvarint(len key) key uvarint(len value) value.
// All integers are big endian. The engine's applied-index key is not among
// the records; the header carries it.
const (
	snapMagic       = "MTCDSNAP"
	snapVersion     = 1
	chunkTarget     = 1 << 20   // flush a chunk once its payload reaches this
	maxChunkPayload = 256 << 20 // refuse larger chunks when decoding
)

// ErrCorruptSnapshot is returned when a snapshot stream fails a check.
var ErrCorruptSnapshot = errors.New("kvstore: corrupt snapshot stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// View is a consistent, read-only picture of the whole state machine that
// can be serialized as a snapshot stream while writes go on.
type View struct {
	snap    storage.Snapshot
	applied uint64
}

// View opens a consistent view. The caller must Close it.
func (s *Store) View() (*View, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	snap, err := s.eng.NewSnapshot()
	if err != nil {
		return nil, fmt.Errorf("kvstore: open view: %w", err)
	}
	applied, err := readApplied(snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	return &View{snap: snap, applied: applied}, nil
}

// Applied is the raft index the view reflects.
func (v *View) Applied() uint64 { return v.applied }

// Close releases the view.
func (v *View) Close() error { return v.snap.Close() }

// Size returns the exact length WriteTo will produce.
func (v *View) Size() (int64, error) { return v.WriteTo(io.Discard) }

// WriteTo serializes the view as a snapshot stream.
func (v *View) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w, crc: crc32.New(castagnoli)}
	bw := bufio.NewWriterSize(cw, 64<<10)
	var hdr [20]byte
	copy(hdr[:8], snapMagic)
	binary.BigEndian.PutUint32(hdr[8:12], snapVersion)
	binary.BigEndian.PutUint64(hdr[12:20], v.applied)
	if _, err := bw.Write(hdr[:]); err != nil {
		return cw.n, err
	}

	it, err := v.snap.NewIterator(storage.IterOptions{})
	if err != nil {
		return cw.n, err
	}
	defer it.Close()
	var (
		payload []byte
		records uint32
		total   uint64
	)
	flush := func() error {
		if records == 0 {
			return nil
		}
		var h [8]byte
		binary.BigEndian.PutUint32(h[:4], records)
		binary.BigEndian.PutUint32(h[4:], uint32(len(payload)))
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], crc32.Checksum(payload, castagnoli))
		for _, p := range [][]byte{h[:], payload, c[:]} {
			if _, err := bw.Write(p); err != nil {
				return err
			}
		}
		payload, records = payload[:0], 0
		return nil
	}
	for it.Next() {
		k := it.Key()
		if string(k) == string(appliedKey) {
			continue
		}
		val := it.Value()
		payload = binary.AppendUvarint(payload, uint64(len(k)))
		payload = append(payload, k...)
		payload = binary.AppendUvarint(payload, uint64(len(val)))
		payload = append(payload, val...)
		records++
		total++
		if len(payload) >= chunkTarget {
			if err := flush(); err != nil {
				return cw.n, err
			}
		}
	}
	if err := it.Err(); err != nil {
		return cw.n, fmt.Errorf("kvstore: iterate view: %w", err)
	}
	if err := flush(); err != nil {
		return cw.n, err
	}
	var tr [12]byte
	binary.BigEndian.PutUint64(tr[4:12], total)
	if _, err := bw.Write(tr[:]); err != nil {
		return cw.n, err
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], cw.crc.Sum32())
	_, err = cw.Write(c[:])
	return cw.n, err
}

type countingWriter struct {
	w   io.Writer
	crc hash.Hash32
	n   int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// Restore installs a snapshot stream into fresh, an empty engine, and on
// success makes it the store's engine. It returns the engine it replaced,
// which no read of the store uses any more, for the caller to close. On
// error the store keeps its previous engine and state, and fresh is left
// to the caller to discard.
func (s *Store) Restore(r io.Reader, fresh storage.Engine) (applied uint64, old storage.Engine, err error) {
	applied, err = decodeSnapshot(r, fresh)
	if err != nil {
		return 0, nil, err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], applied)
	b := fresh.NewBatch()
	b.Put(appliedKey, v[:])
	if err := b.Commit(true); err != nil {
		return 0, nil, fmt.Errorf("kvstore: restore: write applied index: %w", err)
	}
	s.stopFill() // it reads the old engine
	s.mu.Lock()
	old = s.eng
	s.eng = fresh
	if s.cache != nil {
		// It knew the old engine.
		s.cache.clear()
		s.startFill()
	}
	s.applied.Store(applied)
	s.mu.Unlock()
	return applied, old, nil
}

// LoadBackup fills the empty engine dst with the state of a snapshot stream
// taken from another cluster (a backup) and strips what belonged to that
// cluster: its members, tombstones, alarms and applied index. The key
// space and the leases stay. A new cluster bootstraps on top of it.
func LoadBackup(r io.Reader, dst storage.Engine) error {
	if _, err := decodeSnapshot(r, dst); err != nil {
		return err
	}
	b := dst.NewBatch()
	defer b.Close()
	for _, p := range []byte{prefixMember, prefixRemoved, prefixAlarm} {
		if err := scan(dst, []byte{p}, func(k, _ []byte) error {
			b.Delete(k)
			return nil
		}); err != nil {
			return err
		}
	}
	b.Delete(appliedKey)
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("kvstore: load backup: %w", err)
	}
	return nil
}

// VerifySnapshot reads a whole stream and checks it without installing it.
func VerifySnapshot(r io.Reader) (applied uint64, err error) {
	return decodeSnapshot(r, nil)
}

// decodeSnapshot checks a stream and, when dst is not nil, writes its
// records into dst: through a bulk load when dst is a storage.Loader (the
// records come in key order, and the load becomes visible only once the
// whole stream checked out), else in batches of about a chunk each.
func decodeSnapshot(r io.Reader, dst storage.Engine) (applied uint64, err error) {
	var put func(k, v []byte) error
	var commit func() error // after each chunk
	if l, ok := dst.(storage.Loader); ok {
		load, lerr := l.NewLoad()
		if lerr != nil {
			return 0, fmt.Errorf("kvstore: restore: %w", lerr)
		}
		defer func() {
			if err == nil {
				if err = load.Finish(); err != nil {
					err = fmt.Errorf("kvstore: restore: %w", err)
				}
			}
			load.Abort()
		}()
		put = load.Put
	} else if dst != nil {
		var b storage.Batch
		defer func() {
			if b != nil {
				b.Close() // a chunk the stream broke off in
			}
		}()
		put = func(k, v []byte) error {
			if b == nil {
				b = dst.NewBatch()
			}
			b.Put(k, v)
			return nil
		}
		commit = func() error {
			if b == nil {
				return nil
			}
			defer func() { b = nil }()
			return b.Commit(false)
		}
	}
	return decodeStream(r, put, commit)
}

// decodeStream checks a stream, giving each record to put (when not nil)
// and calling commit (when not nil) after each chunk.
func decodeStream(r io.Reader, put func(k, v []byte) error, commit func() error) (uint64, error) {
	crc := crc32.New(castagnoli)
	raw := bufio.NewReaderSize(r, 64<<10)
	// br checksums exactly the bytes consumed, so the final checksum,
	// read from raw, is not part of it.
	br := &crcReader{r: raw, crc: crc}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorruptSnapshot}, args...)...)
	}
	var hdr [20]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, corrupt("header: %v", err)
	}
	if string(hdr[:8]) != snapMagic {
		return 0, corrupt("bad magic %q", hdr[:8])
	}
	if v := binary.BigEndian.Uint32(hdr[8:12]); v != snapVersion {
		return 0, corrupt("unsupported version %d", v)
	}
	applied := binary.BigEndian.Uint64(hdr[12:20])

	var total uint64
	var payload []byte
	for {
		var h [4]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0, corrupt("chunk header: %v", err)
		}
		records := binary.BigEndian.Uint32(h[:])
		if records == 0 {
			break
		}
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0, corrupt("chunk length: %v", err)
		}
		n := binary.BigEndian.Uint32(h[:])
		if n > maxChunkPayload {
			return 0, corrupt("chunk of %d bytes exceeds limit", n)
		}
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(br, payload); err != nil {
			return 0, corrupt("chunk payload: %v", err)
		}
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return 0, corrupt("chunk checksum: %v", err)
		}
		if got, want := crc32.Checksum(payload, castagnoli), binary.BigEndian.Uint32(h[:]); got != want {
			return 0, corrupt("chunk checksum mismatch (got %08x, want %08x)", got, want)
		}
		rest := payload
		for i := uint32(0); i < records; i++ {
			var k, v []byte
			var ok bool
			if k, rest, ok = lenPrefixed(rest); !ok {
				return 0, corrupt("record %d: bad key", total)
			}
			if v, rest, ok = lenPrefixed(rest); !ok {
				return 0, corrupt("record %d: bad value", total)
			}
			if put != nil {
				if err := put(k, v); err != nil {
					return 0, fmt.Errorf("kvstore: restore: record %d: %w", total, err)
				}
			}
			total++
		}
		if len(rest) != 0 {
			return 0, corrupt("%d stray bytes after chunk records", len(rest))
		}
		if commit != nil {
			if err := commit(); err != nil {
				return 0, fmt.Errorf("kvstore: restore: write chunk: %w", err)
			}
		}
	}
	var cnt [8]byte
	if _, err := io.ReadFull(br, cnt[:]); err != nil {
		return 0, corrupt("trailer: %v", err)
	}
	if got := binary.BigEndian.Uint64(cnt[:]); got != total {
		return 0, corrupt("trailer counts %d records, stream had %d", got, total)
	}
	want := crc.Sum32()
	var c [4]byte
	if _, err := io.ReadFull(raw, c[:]); err != nil {
		return 0, corrupt("stream checksum: %v", err)
	}
	if got := binary.BigEndian.Uint32(c[:]); got != want {
		return 0, corrupt("stream checksum mismatch (got %08x, want %08x)", got, want)
	}
	if _, err := raw.ReadByte(); err != io.EOF {
		return 0, corrupt("trailing data after stream checksum")
	}
	return applied, nil
}

type crcReader struct {
	r   io.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

func lenPrefixed(b []byte) ([]byte, []byte, bool) {
	n, rest, ok := uvarint(b)
	if !ok || n > uint64(len(rest)) {
		return nil, b, false
	}
	return rest[:n:n], rest[n:], true
}
