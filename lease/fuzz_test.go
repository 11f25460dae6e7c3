package lease

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

// fuzzEngine fills a memory engine with the lease keys data describes.
// data is read as a sequence of entries, each a kind byte and then:
//
//	kind%4 == 0: a raw 'l' key and value: len, key bytes, len, value bytes
//	kind%4 == 1: a raw 'L' key: len, key bytes
//	kind%4 == 2: a well-formed record: id, ttl, remaining (8 bytes each)
//	kind%4 == 3: a well-formed attachment: id (8 bytes), len, key bytes
//
// so that inputs reach both the decoder's refusals and lessors whose
// records are valid but odd (huge or negative TTLs, ids, duplicates).
func fuzzEngine(data []byte) *memory.Engine {
	eng := memory.New()
	b := eng.NewBatch()
	defer b.Close()
	take := func(n int) []byte {
		n = min(n, len(data))
		out := data[:n]
		data = data[n:]
		return out
	}
	takeLen := func(limit int) int {
		if len(data) == 0 {
			return 0
		}
		return int(take(1)[0]) % limit
	}
	u64 := func() uint64 {
		var v [8]byte
		copy(v[:], take(8))
		return binary.BigEndian.Uint64(v[:])
	}
	for len(data) > 0 {
		switch take(1)[0] % 4 {
		case 0:
			k := append([]byte{prefixRecord}, take(takeLen(24))...)
			b.Put(k, append([]byte(nil), take(takeLen(40))...))
		case 1:
			b.Put(append([]byte{prefixKey}, take(takeLen(24))...), nil)
		case 2:
			r := record{id: int64(u64()), ttl: int64(u64()), remaining: int64(u64())}
			b.Put(recordKey(r.id), r.encode())
		case 3:
			id := int64(u64())
			b.Put(attachedKey(id, append([]byte(nil), take(takeLen(16))...)), nil)
		}
	}
	if err := b.Commit(false); err != nil {
		panic(err)
	}
	return eng
}

// FuzzLeaseRecords loads lessors from engines holding arbitrary 'l' and
// 'L' keys: New either refuses with a lease error or returns a lessor
// whose state is consistent, which the applied methods, a reload and the
// leader's clock then handle without panicking.
func FuzzLeaseRecords(f *testing.F) {
	rec := func(id, ttl, rem uint64) []byte {
		b := []byte{2}
		for _, v := range []uint64{id, ttl, rem} {
			b = binary.BigEndian.AppendUint64(b, v)
		}
		return b
	}
	att := func(id uint64, key string) []byte {
		b := binary.BigEndian.AppendUint64([]byte{3}, id)
		return append(append(b, byte(len(key))), key...)
	}
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	f.Add(cat(rec(7, 60, 0), att(7, "a"), att(7, "b"), rec(8, 1, 30)))
	f.Add(cat(rec(7, 60, 0), att(8, "a")))                                  // no record
	f.Add(cat(rec(7, 60, 0), rec(8, 60, 0), att(7, "k"), att(8, "k")))      // two owners
	f.Add(cat(rec(1<<63, 1<<62, 1<<63-1), rec(1, 1<<63-1, 0), att(1, "x"))) // odd values
	f.Add([]byte{0, 9, 'l', 1, 2, 3, 4, 5, 6, 7, 8, 3, 1, 2, 3})            // bad record
	f.Add([]byte{1, 3, 1, 2, 3})                                            // short attachment key
	f.Fuzz(func(t *testing.T, data []byte) {
		eng := fuzzEngine(data)
		defer eng.Close()
		clock := newClock()
		opts := Options{MinTTL: 5, Clock: clock, CheckpointInterval: time.Minute}
		l, err := New(eng, opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "lease: ") {
				t.Fatalf("New: %v, want a lease error", err)
			}
			return
		}
		ids := l.Leases()
		owners := map[string]int64{}
		for _, id := range ids {
			ls, ok := l.Lookup(id)
			if !ok || ls.ID != id || ls.TTL < opts.MinTTL {
				t.Fatalf("lease %d: Lookup %+v %v", id, ls, ok)
			}
			keys, err := l.Keys(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if got := l.LeaseOf(k); got != id {
					t.Fatalf("key %q of lease %d: LeaseOf says %d", k, id, got)
				}
				if prev, dup := owners[string(k)]; dup {
					t.Fatalf("key %q attached to %d and %d", k, prev, id)
				}
				owners[string(k)] = id
			}
		}

		// The leader's half over whatever was loaded.
		l.Promote(time.Second)
		clock.Advance(time.Hour)
		l.ExpiredLeases(0)
		l.DueCheckpoints(0)
		for _, id := range ids {
			l.Renew(id)
			l.TimeToLive(id, true)
		}

		// The applied methods, then a reload from the committed engine.
		ob := overlay.New(eng)
		var revoked []int64
		for n, id := range ids {
			switch n % 3 {
			case 0:
				if _, err := l.Revoke(ob, id); err != nil {
					t.Fatalf("Revoke(%d): %v", id, err)
				}
				revoked = append(revoked, id)
			case 1:
				if err := l.Checkpoint(ob, id, 17); err != nil {
					t.Fatal(err)
				}
				if err := l.Attach(ob, id, []byte("fuzz-attached")); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := l.Grant(ob, 424242, 30); err != nil && err != ErrLeaseExists {
			t.Fatalf("Grant: %v", err)
		}
		eb := eng.NewBatch()
		ob.ApplyTo(eb)
		if err := eb.Commit(false); err != nil {
			t.Fatal(err)
		}
		eb.Close()
		if err := l.Reload(eng); err != nil {
			t.Fatalf("Reload of what the lessor wrote itself: %v", err)
		}
		for _, id := range revoked {
			if id != 424242 && l.Exists(id) {
				t.Fatalf("revoked lease %d back after reload", id)
			}
		}
		if !l.Exists(424242) {
			t.Fatal("granted lease missing after reload")
		}
		l2, err := New(eng, opts)
		if err != nil {
			t.Fatalf("New over what the lessor wrote itself: %v", err)
		}
		if !slices.Equal(l2.Leases(), l.Leases()) {
			t.Fatalf("leases after reload %v, a new lessor reads %v", l.Leases(), l2.Leases())
		}
	})
}
