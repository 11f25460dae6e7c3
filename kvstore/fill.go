package kvstore

import (
	"fmt"
	"time"
)

// A fill builds a complete read cache (ReadCache.Load) in the background,
// from a snapshot of the engine, so that neither a start nor a snapshot
// install waits for it: reading every current record takes seconds with
// a million keys. Meanwhile the live cache serves and records the
// transactions' writes as before. The apply goroutine swaps the filled
// cache in at its next transaction, after copying into it every entry of
// the live one: those are the keys read or written since the snapshot,
// and they are newer than it. If the live cache forgot a key meanwhile
// (an eviction, say), a change since the snapshot may be lost with it,
// so the fill is dropped and the cache stays incomplete.
type cacheFill struct {
	stop    chan struct{} // closed to make the fill give up
	done    chan struct{} // closed when it has ended
	start   time.Time
	forgets uint64 // the live cache's forgets at the snapshot

	// Set before done is closed.
	c   *readCache
	ok  bool // the loader gave c every kept key of the snapshot
	err error
}

// startFill starts a fill of s.cache from the current engine, if its
// config has a loader. The caller holds s.mu and has stopped any fill.
func (s *Store) startFill() {
	cfg := s.cache.cfg
	if cfg.Load == nil {
		return
	}
	f := &cacheFill{stop: make(chan struct{}), done: make(chan struct{}), start: time.Now(), forgets: s.cache.forgets}
	snap, err := s.eng.NewSnapshot()
	if err != nil {
		f.err = fmt.Errorf("kvstore: fill read cache: %w", err)
		close(f.done)
		s.fill.Store(f)
		if cfg.Filled != nil {
			cfg.Filled(0, false, time.Since(f.start), f.err)
		}
		return
	}
	go func() {
		defer close(f.done)
		defer snap.Close()
		c := newReadCache(cfg)
		c.complete = true // until an eviction or a displaced key
		stopped := false
		ok, err := cfg.Load(snap, cfg.Entries, func(key, value []byte) bool {
			select {
			case <-f.stop:
				stopped = true
				return false
			default:
			}
			c.set(key, value, true)
			return true
		})
		if err != nil {
			f.err = fmt.Errorf("kvstore: fill read cache: %w", err)
		}
		f.c, f.ok = c, ok && err == nil && !stopped
		if cfg.Filled != nil && !stopped {
			cfg.Filled(c.len(), f.ok && c.complete, time.Since(f.start), f.err)
		}
	}()
	s.fill.Store(f)
}

// stopFill makes a running fill give up and waits for it, so that its
// snapshot is closed; the caller does not hold s.mu.
func (s *Store) stopFill() {
	if f := s.fill.Swap(nil); f != nil {
		close(f.stop)
		<-f.done
	}
}

// adoptFill swaps in the cache a fill has built, if it has ended, merged
// with what the live cache learned since. Only the goroutine running
// transactions calls it, between them.
func (s *Store) adoptFill() {
	f := s.fill.Load()
	if f == nil {
		return
	}
	select {
	case <-f.done:
	default:
		return
	}
	s.mu.Lock()
	if !s.fill.CompareAndSwap(f, nil) {
		s.mu.Unlock() // stopped meanwhile
		return
	}
	if live := s.cache; f.ok && live.forgets == f.forgets {
		live.each(f.c.put)
		s.cache = f.c
	}
	s.mu.Unlock()
}
