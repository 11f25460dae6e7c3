package kvstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
)

// Key-space prefixes inside the engine; see doc.go.
const (
	prefixUser    = 'k'
	prefixMember  = 'm'
	prefixRemoved = 'r'
)

var (
	appliedKey = []byte{'a'}
	// countKey holds the number of user keys, kept in step by every Txn.
	countKey = []byte{'n'}
)

// ErrNotFound is returned by Get for an absent key.
var ErrNotFound = errors.New("kvstore: key not found")

// Member is one raft member as the cluster knows it.
type Member struct {
	ID      uint64 `json:"id"`
	PeerURL string `json:"peer_url"`
}

// Store is the state machine. Reads may run on any goroutine; writes come
// only from the apply goroutine through Txn.
type Store struct {
	// mu guards eng against being swapped by Restore while in use. Reads
	// hold it shared for the length of one engine call.
	mu  sync.RWMutex
	eng storage.Engine

	// applied is the raft index of the last committed Txn.
	applied atomic.Uint64
	// keys is the number of user keys as of applied.
	keys atomic.Int64
}

// Open wraps eng and loads the applied index it holds.
func Open(eng storage.Engine) (*Store, error) {
	s := &Store{eng: eng}
	if err := s.load(eng); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the applied index and key count an engine holds.
func (s *Store) load(eng storage.Engine) error {
	idx, err := readApplied(eng)
	if err != nil {
		return err
	}
	n, err := readUint(eng, countKey)
	if err != nil {
		return err
	}
	s.applied.Store(idx)
	s.keys.Store(int64(n))
	return nil
}

// Keys is the number of user keys.
func (s *Store) Keys() int64 { return s.keys.Load() }

func readApplied(r storage.Reader) (uint64, error) { return readUint(r, appliedKey) }

func readUint(r storage.Reader, key []byte) (uint64, error) {
	v, err := r.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kvstore: read %q: %w", key, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("kvstore: %q has %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Applied returns the raft index of the last applied entry.
func (s *Store) Applied() uint64 { return s.applied.Load() }

// Engine returns the engine currently in use.
func (s *Store) Engine() storage.Engine {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eng
}

// Get returns the value of a user key, or ErrNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.eng.Get(userKey(key))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("kvstore: get: %w", err)
	}
	return v, nil
}

// Members returns the current members, ordered by id, and the ids of the
// removed ones.
func (s *Store) Members() (members []Member, removed []uint64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	err = scan(s.eng, []byte{prefixMember}, func(k, v []byte) error {
		var m Member
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("kvstore: member record %q: %w", k, err)
		}
		members = append(members, m)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	err = scan(s.eng, []byte{prefixRemoved}, func(k, _ []byte) error {
		id, err := strconv.ParseUint(string(k[1:]), 16, 64)
		if err != nil {
			return fmt.Errorf("kvstore: removed record %q: %w", k, err)
		}
		removed = append(removed, id)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	return members, removed, nil
}

// Stats returns the engine's size figures; Keys counts user keys only when
// the engine counts cheaply.
func (s *Store) Stats() (storage.Stats, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eng.Stats()
}

// Sync makes every committed Txn durable.
func (s *Store) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eng.Sync()
}

// Close closes the engine.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eng.Close()
}

func scan(r storage.Reader, prefix []byte, fn func(k, v []byte) error) error {
	it, err := r.NewIterator(storage.IterOptions{Lower: prefix, Upper: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			return err
		}
	}
	return it.Err()
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func userKey(k []byte) []byte {
	b := make([]byte, 1+len(k))
	b[0] = prefixUser
	copy(b[1:], k)
	return b
}

func memberKey(prefix byte, id uint64) []byte {
	return strconv.AppendUint([]byte{prefix}, id, 16)
}

// Txn gathers the writes of a run of raft entries into one engine batch.
// Reads through a Txn see its own uncommitted writes. Only the apply
// goroutine uses a Txn, and it is the only one that swaps the engine
// (Restore), so the engine under a Txn does not change.
type Txn struct {
	s     *Store
	ov    *overlay.Batch
	n     int
	delta int64 // change in the number of user keys
}

// NewTxn starts a write transaction.
func (s *Store) NewTxn() *Txn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Txn{s: s, ov: overlay.New(s.eng)}
}

// Len is the number of writes queued.
func (t *Txn) Len() int { return t.n }

// exists reports whether key is present, counting this Txn's own writes.
func (t *Txn) exists(key []byte) (bool, error) {
	_, err := t.ov.Get(userKey(key))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	}
	return false, fmt.Errorf("kvstore: get: %w", err)
}

// Put sets a user key.
func (t *Txn) Put(key, value []byte) error {
	existed, err := t.exists(key)
	if err != nil {
		return err
	}
	if !existed {
		t.delta++
	}
	t.ov.Put(userKey(key), value)
	t.n++
	return nil
}

// Delete removes a user key and reports whether it existed.
func (t *Txn) Delete(key []byte) (bool, error) {
	existed, err := t.exists(key)
	if err != nil {
		return false, err
	}
	if existed {
		t.delta--
		t.ov.Delete(userKey(key))
		t.n++
	}
	return existed, nil
}

// AddMember records a member.
func (t *Txn) AddMember(m Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("kvstore: encode member: %w", err)
	}
	t.ov.Put(memberKey(prefixMember, m.ID), v)
	t.n++
	return nil
}

// RemoveMember drops a member and leaves a tombstone so its id is never
// accepted again.
func (t *Txn) RemoveMember(id uint64) {
	t.ov.Delete(memberKey(prefixMember, id))
	t.ov.Put(memberKey(prefixRemoved, id), nil)
	t.n++
}

// Commit writes the batch together with the applied index. sync asks the
// engine to make it durable before returning.
func (t *Txn) Commit(applied uint64, sync bool) error {
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	b := t.s.eng.NewBatch()
	defer b.Close()
	t.ov.ApplyTo(b)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], applied)
	b.Put(appliedKey, v[:])
	keys := t.s.keys.Load() + t.delta
	if t.delta != 0 {
		var c [8]byte
		binary.BigEndian.PutUint64(c[:], uint64(keys))
		b.Put(countKey, c[:])
	}
	err := b.Commit(sync)
	if err != nil {
		return fmt.Errorf("kvstore: commit applied index %d: %w", applied, err)
	}
	t.s.keys.Store(keys)
	t.s.applied.Store(applied)
	return nil
}

// Abort discards the transaction.
func (t *Txn) Abort() { t.ov.Reset(nil) }
