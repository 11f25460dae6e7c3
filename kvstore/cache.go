package kvstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"time"

	"github.com/metcd/metcd/storage"
)

// DefaultCacheEntries bounds the read cache when SetReadCache is given 0
// entries. With values trimmed to a few dozen bytes (ReadCache.Trim) and
// short keys that is about 70 MiB (an entry's bytes plus its index slot).
const DefaultCacheEntries = 1 << 20

// ReadCache configures the read cache of a Store's transactions.
type ReadCache struct {
	// Keep selects the keys the cache serves.
	Keep func(key []byte) bool
	// Trim, if set, gives the form of a kept key's value the cache holds
	// (it copies it), or nil to hold the value whole. A trimmed entry
	// answers only GetTrimmed, the read of callers that need no more than
	// Trim keeps; a Get of that key goes to the engine.
	Trim func(key, value []byte) []byte
	// Entries bounds the keys held (DefaultCacheEntries if 0).
	Entries int
	// Load, if set, lets the cache hold every key Keep selects, so that a
	// kept key it does not hold is absent and reading it costs no engine
	// lookup: a put that creates its key reads the key first. Load calls
	// add for each kept key in r until add returns false, and reports
	// whether it gave them all: false when there are more than max. The
	// store runs it in the background on a snapshot of the engine, when
	// the cache is set and after a restore (see fill); the cache stays
	// complete until it has to evict.
	Load func(r storage.Reader, max int, add func(key, value []byte) bool) (bool, error)
	// Filled, if set, is told how each fill that was not stopped ended,
	// on the fill's goroutine: the keys it read, whether that is every
	// kept key, the time it took, and the engine's error if it failed.
	// The next transaction swaps the filled cache in, unless the live one
	// forgot a key meanwhile.
	Filled func(entries int, complete bool, took time.Duration, err error)
}

// readCache keeps the committed values of keys the apply path reads on
// every write (a key's current record, the revision counters), so that a
// put costs no engine lookup when its key was read or written recently.
// Only keys the owner declares cacheable are kept, and those must change
// only through Txn.Commit, which writes the committed values through.
// It belongs to the apply goroutine, like Txn; no lock.
//
// Entries live in one byte slice (arena) and the index maps a hash of the
// key to its entry's offset there, so neither holds a pointer and the
// garbage collector does not look inside them. A map of strings to byte
// slices made it visit three objects per entry on every cycle: with 1 M
// keys cached that was 89 % of a member's live heap, and marking it took a
// tenth to a fifth of the leader's CPU.
type readCache struct {
	cfg ReadCache // Entries set
	// complete is set while idx holds every kept key the engine has
	// (ReadCache.Load): a miss is then an absent key. Absent keys get no
	// entry in that state, and an eviction or a key displaced by another
	// with the same hash ends it.
	complete bool
	// forgets counts the times the cache dropped a key it knew (evictions,
	// displaced keys, clears); a fill compares it to see that every change
	// since its snapshot is still here to be merged.
	forgets uint64

	seed  maphash.Seed
	hash  func(seed maphash.Seed, key []byte) uint64 // maphash.Bytes; tests force collisions
	idx   map[uint64]uint64                          // hash of key → offset of its entry in arena
	arena []byte
	// dead counts the arena's bytes no entry in idx refers to; compact
	// reclaims them once they outgrow the live ones.
	dead       int
	minCompact int // arena size below which dead bytes are left alone
}

// An entry is laid out as
//
//	flags (1 byte) | slack (1 byte) | uvarint key length | uvarint room |
//	key | value, then slack unused bytes
//
// where room is the value's space, fixed when the entry is appended and
// rounded up to a multiple of roomAlign, and slack is room minus the
// value's length. A later value of the same key that fits in room is
// written in place, so a key rewritten over and over costs no new space
// while its trimmed record grows by a byte now and then.
const (
	flagFound   = 1 << 0
	flagTrimmed = 1 << 1
	roomAlign   = 8
	maxSlack    = 255
)

// defaultMinCompact keeps small caches from compacting over a few dead
// entries; a compaction copies the live entries once.
const defaultMinCompact = 1 << 20

func newReadCache(c ReadCache) *readCache {
	return &readCache{
		cfg:        c,
		seed:       maphash.MakeSeed(),
		hash:       maphash.Bytes,
		idx:        make(map[uint64]uint64),
		minCompact: defaultMinCompact,
	}
}

type cachedValue struct {
	v       []byte // in the arena: valid until the next set or clear
	found   bool
	trimmed bool
}

// entry decodes the entry at off: its key, its value, its flags and its
// size in the arena.
func (c *readCache) entry(off uint64) (key, v []byte, flags byte, size int) {
	e := c.arena[off:]
	klen, n1 := binary.Uvarint(e[2:])
	room, n2 := binary.Uvarint(e[2+n1:])
	p := 2 + n1 + n2
	key = e[p : p+int(klen)]
	v = e[p+int(klen) : p+int(klen)+int(room)-int(e[1])]
	return key, v, e[0], p + int(klen) + int(room)
}

func (c *readCache) get(key []byte) (cachedValue, bool) {
	off, ok := c.idx[c.hash(c.seed, key)]
	if !ok {
		return cachedValue{}, false
	}
	k, v, flags, _ := c.entry(off)
	if !bytes.Equal(k, key) {
		return cachedValue{}, false // another key with the same hash
	}
	return cachedValue{v: v, found: flags&flagFound != 0, trimmed: flags&flagTrimmed != 0}, true
}

func (c *readCache) set(key, v []byte, found bool) {
	var flags byte
	if found {
		flags = flagFound
		if c.cfg.Trim != nil {
			if t := c.cfg.Trim(key, v); t != nil {
				v, flags = t, flags|flagTrimmed
			}
		}
	} else {
		v = nil
	}
	c.put(key, v, flags)
}

// put stores v, already in the form the cache holds, with its flags.
func (c *readCache) put(key, v []byte, flags byte) {
	found := flags&flagFound != 0
	h := c.hash(c.seed, key)
	if off, ok := c.idx[h]; ok {
		k, old, _, size := c.entry(off)
		same := bytes.Equal(k, key)
		if !found && c.complete {
			// A complete cache holds present keys only. If another key
			// has this hash, key is not cached and so absent already.
			if same {
				c.drop(h, size)
			}
			return
		}
		if room := len(old) + int(c.arena[off+1]); same && len(v) <= room && room-len(v) <= maxSlack {
			c.arena[off] = flags
			c.arena[off+1] = byte(room - len(v))
			copy(old[:len(v):room], v)
			return
		}
		if !same {
			// A key with the same hash takes its place: that key is no
			// longer held, though the engine may have it.
			c.complete = false
			c.forgets++
		}
		c.dead += size
	} else if !found && c.complete {
		return
	} else if len(c.idx) >= c.cfg.Entries {
		c.evict()
	}
	c.idx[h] = c.append(key, v, flags)
	c.maybeCompact()
}

// drop removes the entry of hash h, whose size is size.
func (c *readCache) drop(h uint64, size int) {
	delete(c.idx, h)
	c.dead += size
	c.maybeCompact()
}

func (c *readCache) maybeCompact() {
	if c.dead > c.minCompact && c.dead > len(c.arena)/2 {
		c.compact()
	}
}

// append writes a new entry at the end of the arena and returns its offset.
func (c *readCache) append(key, v []byte, flags byte) uint64 {
	room := (len(v) + roomAlign - 1) / roomAlign * roomAlign
	off := uint64(len(c.arena))
	c.arena = append(c.arena, flags, byte(room-len(v)))
	c.arena = binary.AppendUvarint(c.arena, uint64(len(key)))
	c.arena = binary.AppendUvarint(c.arena, uint64(room))
	c.arena = append(c.arena, key...)
	c.arena = append(c.arena, v...)
	c.arena = append(c.arena, make([]byte, room-len(v))...)
	return off
}

// evict drops an eighth of the entries, at random (map order): cheap, and
// a working set larger than the cache still mostly hits on its hot part.
func (c *readCache) evict() {
	c.complete = false
	c.forgets++
	n := max(c.cfg.Entries/8, 1)
	for h, off := range c.idx {
		if n <= 0 {
			break
		}
		_, _, _, size := c.entry(off)
		c.dead += size
		delete(c.idx, h)
		n--
	}
}

// compact copies the live entries into a new arena. Values handed out by
// get before it stay valid: they point into the old arena.
func (c *readCache) compact() {
	live := len(c.arena) - c.dead
	arena := make([]byte, 0, live+live/4)
	for h, off := range c.idx {
		_, _, _, size := c.entry(off)
		c.idx[h] = uint64(len(arena))
		arena = append(arena, c.arena[off:off+uint64(size)]...)
	}
	c.arena, c.dead = arena, 0
}

func (c *readCache) len() int { return len(c.idx) }

func (c *readCache) clear() {
	clear(c.idx)
	c.arena, c.dead = nil, 0
	c.complete = false
	c.forgets++
}

// each calls fn for every entry, with the value as held and its flags.
func (c *readCache) each(fn func(key, v []byte, flags byte)) {
	for _, off := range c.idx {
		k, v, flags, _ := c.entry(off)
		fn(k, v, flags)
	}
}

// cachedReader is the base a Txn's batch reads through: cacheable keys
// from the cache, filled on a miss; everything else from the engine.
type cachedReader struct {
	eng storage.Engine
	c   *readCache
}

func (r cachedReader) Get(key []byte) ([]byte, error) {
	return r.get(key, false)
}

// GetTrimmed implements overlay.TrimGetter: a kept key's value as the
// cache holds it, which may be trimmed (ReadCache.Trim).
func (r cachedReader) GetTrimmed(key []byte) ([]byte, error) {
	return r.get(key, true)
}

func (r cachedReader) get(key []byte, trimmedOK bool) ([]byte, error) {
	if !r.c.cfg.Keep(key) {
		return r.eng.Get(key)
	}
	if cv, ok := r.c.get(key); ok {
		if !cv.found {
			return nil, storage.ErrNotFound
		}
		if !cv.trimmed || trimmedOK {
			return append(make([]byte, 0, len(cv.v)), cv.v...), nil
		}
		// The whole value is only in the engine; the entry stays as it is.
		return r.eng.Get(key)
	}
	if r.c.complete {
		return nil, storage.ErrNotFound
	}
	v, err := r.eng.Get(key)
	switch {
	case err == nil:
		r.c.set(key, v, true)
	case errors.Is(err, storage.ErrNotFound):
		r.c.set(key, nil, false)
	}
	return v, err
}

func (r cachedReader) NewIterator(opts storage.IterOptions) (storage.Iterator, error) {
	return r.eng.NewIterator(opts)
}

// SetReadCache makes transactions read the keys c.Keep selects through a
// cache (see ReadCache), and starts filling it if c.Load is set. Every
// write to such a key must go through Txn; keys another writer changes (a
// background compaction, say) must not be selected. Call it before the
// first Txn.
func (s *Store) SetReadCache(c ReadCache) {
	if c.Entries <= 0 {
		c.Entries = DefaultCacheEntries
	}
	s.stopFill()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache = newReadCache(c)
	s.startFill()
}

// ReadCacheState reports how many keys the read cache holds and whether
// that is all the keys it keeps (ReadCache.Load). Call it from the
// goroutine running transactions.
func (s *Store) ReadCacheState() (entries int, complete bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.cache == nil {
		return 0, false
	}
	return s.cache.len(), s.cache.complete
}

// base is the reader a new Txn's batch reads through; the caller holds mu.
func (s *Store) base() storage.Reader {
	if s.cache == nil {
		return s.eng
	}
	return cachedReader{eng: s.eng, c: s.cache}
}
