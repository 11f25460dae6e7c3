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

	"github.com/metcd/metcd/internal/failpoint"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
)

// Key-space prefixes inside the engine; see doc.go.
const (
	prefixMember  = 'm'
	prefixRemoved = 'r'
	prefixAlarm   = 'A'
)

var appliedKey = []byte{'a'}

// Member is one raft member as the cluster knows it. Name and ClientURLs
// are published by the member itself once it runs (etcd's attributes).
type Member struct {
	ID         uint64   `json:"id"`
	PeerURL    string   `json:"peer_url"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"client_urls,omitempty"`
	IsLearner  bool     `json:"is_learner,omitempty"`
}

// Alarm is one raised alarm: etcd's AlarmMember (member id, alarm type).
type Alarm struct {
	MemberID uint64
	Type     int32
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

	// cache, if set, serves the transactions' point reads of hot keys; it
	// belongs to the goroutine running transactions (see SetReadCache).
	cache *readCache
	// fill is the cache's background fill, if one has not been adopted
	// or stopped yet.
	fill atomic.Pointer[cacheFill]
}

// Open wraps eng and loads the applied index it holds.
func Open(eng storage.Engine) (*Store, error) {
	s := &Store{eng: eng}
	if err := s.load(eng); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the applied index an engine holds.
func (s *Store) load(eng storage.Engine) error {
	idx, err := readApplied(eng)
	if err != nil {
		return err
	}
	s.applied.Store(idx)
	return nil
}

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

// Read calls fn with the current engine, which stays open (a snapshot
// install cannot swap it) until fn returns.
func (s *Store) Read(fn func(eng storage.Engine) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.eng)
}

// Hold returns the current engine, held open until release is called, for
// work that reads and writes it across calls (physical compaction) and
// lets go between them. A Restore waits for release, and reads that
// arrive meanwhile wait for the Restore, so hold it only briefly.
func (s *Store) Hold() (eng storage.Engine, release func()) {
	s.mu.RLock()
	return s.eng, s.mu.RUnlock
}

// Alarms returns the raised alarms, ordered by member and type.
func (s *Store) Alarms() ([]Alarm, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Alarm
	err := scan(s.eng, []byte{prefixAlarm}, func(k, _ []byte) error {
		if len(k) != 13 {
			return fmt.Errorf("kvstore: alarm record %q", k)
		}
		out = append(out, Alarm{MemberID: binary.BigEndian.Uint64(k[1:9]), Type: int32(binary.BigEndian.Uint32(k[9:]))})
		return nil
	})
	return out, err
}

func alarmKey(a Alarm) []byte {
	k := binary.BigEndian.AppendUint64([]byte{prefixAlarm}, a.MemberID)
	return binary.BigEndian.AppendUint32(k, uint32(a.Type))
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

// InUse is the size a write quota is checked against: the engine's live
// data where it knows it (memory, pebble), so that compaction frees quota,
// else the size of its files. It is cheap to ask often.
func (s *Store) InUse() (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ls, ok := s.eng.(storage.LiveSizer); ok {
		return ls.LiveBytes()
	}
	st, err := s.eng.Stats()
	if err != nil {
		return 0, err
	}
	if st.LiveBytes > 0 {
		return st.LiveBytes, nil
	}
	return st.DiskBytes, nil
}

// Sync makes every committed Txn durable.
func (s *Store) Sync() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eng.Sync()
}

// Close closes the engine.
func (s *Store) Close() error {
	s.stopFill()
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

func memberKey(prefix byte, id uint64) []byte {
	return strconv.AppendUint([]byte{prefix}, id, 16)
}

// Txn gathers the writes of a run of raft entries into one engine batch.
// Reads through its Batch see its own uncommitted writes. Only the apply
// goroutine uses a Txn, and it is the only one that swaps the engine
// (Restore), so the engine under a Txn does not change.
type Txn struct {
	s  *Store
	ov *overlay.Batch
}

// NewTxn starts a write transaction.
func (s *Store) NewTxn() *Txn {
	s.adoptFill()
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Txn{s: s, ov: overlay.New(s.base())}
}

// Batch is the transaction's batch, for the other state machines that
// share the engine (mvcc, lease) to write into.
func (t *Txn) Batch() *overlay.Batch { return t.ov }

// PutMember records a member, new or changed.
func (t *Txn) PutMember(m Member) error {
	v, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("kvstore: encode member: %w", err)
	}
	t.ov.Put(memberKey(prefixMember, m.ID), v)
	return nil
}

// RemoveMember drops a member and leaves a tombstone so its id is never
// accepted again.
func (t *Txn) RemoveMember(id uint64) {
	t.ov.Delete(memberKey(prefixMember, id))
	t.ov.Put(memberKey(prefixRemoved, id), nil)
}

// SetAlarm raises (on) or clears an alarm.
func (t *Txn) SetAlarm(a Alarm, on bool) {
	if on {
		t.ov.Put(alarmKey(a), nil)
	} else {
		t.ov.Delete(alarmKey(a))
	}
}

// Commit writes the batch together with the applied index. sync asks the
// engine to make it durable before returning.
func (t *Txn) Commit(applied uint64, sync bool) error {
	t.s.mu.RLock()
	defer t.s.mu.RUnlock()
	// Room for the pending writes and the applied index.
	b := storage.NewBatchSize(t.s.eng, t.ov.Len()+1, t.ov.Size()+len(appliedKey)+8)
	defer b.Close()
	t.ov.ApplyTo(b)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], applied)
	b.Put(appliedKey, v[:])
	if err := failpoint.Inject(failpoint.EngineCommit); err != nil {
		return fmt.Errorf("kvstore: commit applied index %d: %w", applied, err)
	}
	if err := b.Commit(sync); err != nil {
		if t.s.cache != nil {
			// The engine's state is unknown now.
			t.s.cache.clear()
		}
		return fmt.Errorf("kvstore: commit applied index %d: %w", applied, err)
	}
	t.s.applied.Store(applied)
	if c := t.s.cache; c != nil {
		// Write the committed values through, so that a key written now
		// and again in the next batch costs no engine lookup.
		t.ov.Ascend(func(key, value []byte, deleted bool) bool {
			if c.cfg.Keep(key) {
				c.set(key, value, !deleted)
			}
			return true
		})
	}
	return nil
}

// Abort discards the transaction.
func (t *Txn) Abort() { t.ov.Reset(nil) }
