package kvstore

import (
	"errors"

	"github.com/metcd/metcd/storage"
)

// DefaultCacheEntries bounds the read cache when SetReadCache is given 0
// entries. With values trimmed to a few dozen bytes (ReadCache.Trim) that
// is about 100 MiB for short keys.
const DefaultCacheEntries = 1 << 20

// ReadCache configures the read cache of a Store's transactions.
type ReadCache struct {
	// Keep selects the keys the cache serves.
	Keep func(key []byte) bool
	// Trim, if set, gives the form of a kept key's value the cache holds,
	// in a slice of its own, or nil to hold the value whole. A trimmed entry answers only
	// GetTrimmed, the read of callers that need no more than Trim keeps;
	// a Get of that key goes to the engine.
	Trim func(key, value []byte) []byte
	// Entries bounds the keys held (DefaultCacheEntries if 0).
	Entries int
}

// readCache keeps the committed values of keys the apply path reads on
// every write (a key's current record, the revision counters), so that a
// put costs no engine lookup when its key was read or written recently.
// Only keys the owner declares cacheable are kept, and those must change
// only through Txn.Commit, which writes the committed values through.
// It belongs to the apply goroutine, like Txn; no lock.
type readCache struct {
	keep func(key []byte) bool
	trim func(key, value []byte) []byte
	max  int
	m    map[string]cachedValue
}

type cachedValue struct {
	v       []byte
	found   bool
	trimmed bool
}

func (c *readCache) get(key []byte) (cachedValue, bool) {
	cv, ok := c.m[string(key)]
	return cv, ok
}

func (c *readCache) set(key, v []byte, found bool) {
	if _, ok := c.m[string(key)]; !ok && len(c.m) >= c.max {
		// Drop an eighth, at random (map order): cheap, and a working set
		// larger than the cache still mostly hits on its hot part.
		n := max(c.max/8, 1)
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	trimmed := false
	if found && c.trim != nil {
		// Trim returns a new slice; the cache may keep it as it is.
		if t := c.trim(key, v); t != nil {
			v, trimmed = t, true
		}
	}
	if found && !trimmed {
		v = append(make([]byte, 0, len(v)), v...)
	}
	c.m[string(key)] = cachedValue{v: v, found: found, trimmed: trimmed}
}

func (c *readCache) clear() { clear(c.m) }

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
	if !r.c.keep(key) {
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
// cache (see ReadCache). Every write to such a key must go through Txn;
// keys another writer changes (a background compaction, say) must not be
// selected. Call it before the first Txn.
func (s *Store) SetReadCache(c ReadCache) {
	if c.Entries <= 0 {
		c.Entries = DefaultCacheEntries
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache = &readCache{keep: c.Keep, trim: c.Trim, max: c.Entries, m: make(map[string]cachedValue)}
}

// base is the reader a new Txn's batch reads through; the caller holds mu.
func (s *Store) base() storage.Reader {
	if s.cache == nil {
		return s.eng
	}
	return cachedReader{eng: s.eng, c: s.cache}
}
