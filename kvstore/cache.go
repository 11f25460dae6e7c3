package kvstore

import (
	"errors"

	"github.com/metcd/metcd/storage"
)

// DefaultCacheEntries bounds the read cache when SetReadCache is given 0.
const DefaultCacheEntries = 1 << 18

// readCache keeps the committed values of keys the apply path reads on
// every write (a key's current record, the revision counters), so that a
// put costs no engine lookup when its key was read or written recently.
// Only keys the owner declares cacheable are kept, and those must change
// only through Txn.Commit, which writes the committed values through.
// It belongs to the apply goroutine, like Txn; no lock.
type readCache struct {
	keep func(key []byte) bool
	max  int
	m    map[string]cachedValue
}

type cachedValue struct {
	v     []byte
	found bool
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
	if found {
		v = append(make([]byte, 0, len(v)), v...)
	}
	c.m[string(key)] = cachedValue{v: v, found: found}
}

func (c *readCache) clear() { clear(c.m) }

// cachedReader is the base a Txn's batch reads through: cacheable keys
// from the cache, filled on a miss; everything else from the engine.
type cachedReader struct {
	eng storage.Engine
	c   *readCache
}

func (r cachedReader) Get(key []byte) ([]byte, error) {
	if !r.c.keep(key) {
		return r.eng.Get(key)
	}
	if cv, ok := r.c.get(key); ok {
		if !cv.found {
			return nil, storage.ErrNotFound
		}
		return append(make([]byte, 0, len(cv.v)), cv.v...), nil
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

// SetReadCache makes transactions read the keys keep selects through a
// cache of at most entries keys (DefaultCacheEntries if 0). Every write to
// such a key must go through Txn; keys another writer changes (a
// background compaction, say) must not be selected. Call it before the
// first Txn.
func (s *Store) SetReadCache(keep func(key []byte) bool, entries int) {
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache = &readCache{keep: keep, max: entries, m: make(map[string]cachedValue)}
}

// base is the reader a new Txn's batch reads through; the caller holds mu.
func (s *Store) base() storage.Reader {
	if s.cache == nil {
		return s.eng
	}
	return cachedReader{eng: s.eng, c: s.cache}
}
