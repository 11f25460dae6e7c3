package lease

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/overlay"
)

// Defaults for Options fields left zero.
const (
	// DefaultRevokeRate is etcd's default number of leases revoked per
	// second.
	DefaultRevokeRate = 1000
	// DefaultExpiredRetryInterval is how long an expired lease handed out
	// by ExpiredLeases stays quiet before it is handed out again, in case
	// its revoke proposal was lost (etcd's expiredLeaseRetryInterval).
	DefaultExpiredRetryInterval = 3 * time.Second
)

// Clock tells the time. Only the leader-only half of the Lessor reads it.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options configure a Lessor. The zero value is usable (no minimum TTL,
// the wall clock, etcd's rates, no periodic checkpoints).
type Options struct {
	// MinTTL is the smallest TTL in seconds a lease gets: Grant raises
	// smaller TTLs to it, and New raises stored ones. etcd uses
	// ceil(3/2 × election timeout); see MinTTLFor. Every member must use
	// the same value, since Grant's result is replicated state.
	MinTTL int64
	// Clock is the leader's clock; nil means the wall clock.
	Clock Clock
	// RevokeRate is the number of leases per second the leader should
	// revoke at most: ExpiredLeases(0) returns up to RevokeRate/2 (the
	// server calls it every 500ms), and Promote spreads piled-up expiries
	// so that no second sees more than 3/4 of it. 0 means
	// DefaultRevokeRate.
	RevokeRate int
	// ExpiredRetryInterval: see DefaultExpiredRetryInterval. 0 means the
	// default.
	ExpiredRetryInterval time.Duration
	// CheckpointInterval enables etcd's lease checkpoints: every interval
	// the leader offers (DueCheckpoints) the remaining TTL of each lease
	// whose TTL is longer than the interval, so a new leader does not
	// restart long leases from their full TTL. 0 disables them (etcd's
	// default), except for the resets Renew asks for.
	CheckpointInterval time.Duration
}

// MinTTLFor returns etcd's minimum lease TTL for a raft configuration:
// ceil(3/2 × electionTicks × heartbeat) in seconds (the product is taken
// in whole ticks, as etcd does).
func MinTTLFor(electionTicks int, heartbeat time.Duration) int64 {
	d := time.Duration(3*electionTicks/2) * heartbeat
	return int64(math.Ceil(d.Seconds()))
}

// Lease describes a granted lease: its replicated state.
type Lease struct {
	ID int64
	// TTL is the granted TTL in seconds (after raising it to MinTTL).
	TTL int64
	// RemainingTTL is the last checkpointed remaining TTL in seconds, 0
	// if none.
	RemainingTTL int64
}

// lease is the replicated, in-memory copy of one lease.
type lease struct {
	rec  record
	keys map[string]struct{}
}

// Lessor holds the leases of one member. See the package documentation
// for the split between its replicated state and its leader-only expiry
// tracking.
//
// Locking: one mutex, mu, guards both halves. It is a leaf lock: nothing
// else is locked, no channel is used and no engine I/O is done while it is
// held (the applied methods write only to the caller's in-memory
// overlay.Batch under it). So any goroutine may call any method without a
// lock-order concern; the applied methods must still all be called from
// the one apply goroutine, since their order is the replicated order.
type Lessor struct {
	mu    sync.Mutex
	opts  Options
	clock Clock

	// Replicated state: changed only by the applied methods (and New,
	// Reload), never read from the clock.
	leases map[int64]*lease
	owner  map[string]int64 // attached key → its lease

	// Leader-only state: nil/false on a follower.
	p *primary
}

// New returns a Lessor holding the leases stored in r (normally the
// engine, at its applied index). TTLs below opts.MinTTL are raised, in
// memory only. The Lessor starts as a follower: no lease expires until
// Promote.
func New(r storage.Reader, opts Options) (*Lessor, error) {
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.RevokeRate <= 0 {
		opts.RevokeRate = DefaultRevokeRate
	}
	if opts.ExpiredRetryInterval <= 0 {
		opts.ExpiredRetryInterval = DefaultExpiredRetryInterval
	}
	l := &Lessor{opts: opts, clock: opts.Clock}
	leases, owner, err := load(r, opts.MinTTL)
	if err != nil {
		return nil, err
	}
	l.leases, l.owner = leases, owner
	return l, nil
}

// Reload replaces the replicated state with the leases stored in r, after
// the member installed a snapshot into a new engine (etcd's Recover). A
// promoted lessor tracks the reloaded leases as Promote(0) would; a leader
// does not normally install snapshots.
func (l *Lessor) Reload(r storage.Reader) error {
	leases, owner, err := load(r, l.opts.MinTTL)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leases, l.owner = leases, owner
	if l.p != nil {
		l.promoteLocked(0)
	}
	return nil
}

func load(r storage.Reader, minTTL int64) (map[int64]*lease, map[string]int64, error) {
	leases := make(map[int64]*lease)
	owner := make(map[string]int64)
	it, err := r.NewIterator(storage.IterOptions{Lower: []byte{prefixRecord}, Upper: []byte{prefixRecord + 1}})
	if err != nil {
		return nil, nil, err
	}
	for it.Next() {
		rec, err := decodeRecord(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return nil, nil, err
		}
		rec.ttl = max(rec.ttl, minTTL)
		leases[rec.id] = &lease{rec: rec, keys: make(map[string]struct{})}
	}
	err = errors.Join(it.Err(), it.Close())
	if err != nil {
		return nil, nil, err
	}
	it, err = r.NewIterator(storage.IterOptions{Lower: []byte{prefixKey}, Upper: []byte{prefixKey + 1}})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	for it.Next() {
		id, key, err := splitAttachedKey(it.Key())
		if err != nil {
			return nil, nil, err
		}
		ls := leases[id]
		if ls == nil {
			return nil, nil, fmt.Errorf("lease: key %q attached to lease %d, which has no record", key, id)
		}
		k := string(key)
		if prev, ok := owner[k]; ok {
			return nil, nil, fmt.Errorf("lease: key %q attached to leases %d and %d", key, prev, id)
		}
		ls.keys[k] = struct{}{}
		owner[k] = id
	}
	return leases, owner, it.Err()
}

// --- Applied methods: deterministic, called on the apply goroutine only,
// in raft order, each writing its changes into the Ready's batch. ---

// Grant creates lease id with ttl seconds, raised to MinTTL, and returns
// it. id 0 fails with ErrLeaseNotFound (the proposing member picks a
// non-zero id before proposing, as etcd does); a TTL above MaxLeaseTTL
// fails with ErrLeaseTTLTooLarge, an existing id with ErrLeaseExists.
// On a promoted lessor the new lease expires ttl seconds from now.
func (l *Lessor) Grant(b *overlay.Batch, id, ttl int64) (*Lease, error) {
	if id == 0 {
		return nil, ErrLeaseNotFound
	}
	if ttl > MaxLeaseTTL {
		return nil, ErrLeaseTTLTooLarge
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.leases[id]; ok {
		return nil, ErrLeaseExists
	}
	rec := record{id: id, ttl: max(ttl, l.opts.MinTTL)}
	l.leases[id] = &lease{rec: rec, keys: make(map[string]struct{})}
	b.Put(recordKey(id), rec.encode())
	if l.p != nil {
		l.p.start(rec, l.clock.Now(), 0)
	}
	return &Lease{ID: id, TTL: rec.ttl}, nil
}

// Revoke deletes lease id and its attachments and returns the attached
// keys in key order: the caller deletes them from the key space in the
// same batch (one write transaction, as etcd does). ErrLeaseNotFound if
// there is no such lease.
func (l *Lessor) Revoke(b *overlay.Batch, id int64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return nil, ErrLeaseNotFound
	}
	keys := sortedKeys(ls.keys)
	for _, k := range keys {
		delete(l.owner, string(k))
		b.Delete(attachedKey(id, k))
	}
	b.Delete(recordKey(id))
	delete(l.leases, id)
	if l.p != nil {
		l.p.stop(id)
	}
	return keys, nil
}

var errEmptyKey = errors.New("lease: empty key")

// Attach attaches key to lease id, detaching it from any other lease it
// was attached to. ErrLeaseNotFound if there is no lease id.
func (l *Lessor) Attach(b *overlay.Batch, id int64, key []byte) error {
	if len(key) == 0 {
		return errEmptyKey
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return ErrLeaseNotFound
	}
	k := string(key)
	if prev, ok := l.owner[k]; ok {
		if prev == id {
			return nil
		}
		delete(l.leases[prev].keys, k)
		b.Delete(attachedKey(prev, key))
	}
	ls.keys[k] = struct{}{}
	l.owner[k] = id
	b.Put(attachedKey(id, key), nil)
	return nil
}

// Detach detaches key from lease id; a key that is not attached to it is
// left alone. ErrLeaseNotFound if there is no lease id (etcd's mvcc logs
// that and goes on with the put or delete).
func (l *Lessor) Detach(b *overlay.Batch, id int64, key []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return ErrLeaseNotFound
	}
	k := string(key)
	if _, ok := ls.keys[k]; !ok {
		return nil
	}
	delete(ls.keys, k)
	delete(l.owner, k)
	b.Delete(attachedKey(id, key))
	return nil
}

// Checkpoint records remainingTTL (seconds; 0 clears it) as lease id's
// remaining TTL, which Promote uses instead of the full TTL. A checkpoint
// of a lease that no longer exists is ignored, as in etcd (it may race
// the lease's revoke through raft).
func (l *Lessor) Checkpoint(b *overlay.Batch, id, remainingTTL int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return nil
	}
	if ls.rec.remaining != remainingTTL {
		ls.rec.remaining = remainingTTL
		b.Put(recordKey(id), ls.rec.encode())
	}
	if l.p != nil {
		l.p.checkpointed(ls.rec, l.clock.Now())
	}
	return nil
}

// --- Reads of the replicated state (any goroutine). ---

// Exists reports whether lease id is granted (mvcc's Options.LeaseExists).
func (l *Lessor) Exists(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leases[id] != nil
}

// Lookup returns lease id, if granted.
func (l *Lessor) Lookup(id int64) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return Lease{}, false
	}
	return Lease{ID: id, TTL: ls.rec.ttl, RemainingTTL: ls.rec.remaining}, true
}

// LeaseOf returns the lease key is attached to, 0 if none (etcd's
// GetLease).
func (l *Lessor) LeaseOf(key []byte) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.owner[string(key)]
}

// Keys returns the keys attached to lease id in key order.
func (l *Lessor) Keys(id int64) ([][]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return nil, ErrLeaseNotFound
	}
	return sortedKeys(ls.keys), nil
}

// Leases returns the ids of every granted lease, in increasing order.
func (l *Lessor) Leases() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sortedIDsLocked()
}

func (l *Lessor) sortedIDsLocked() []int64 {
	ids := make([]int64, 0, len(l.leases))
	for id := range l.leases {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func sortedKeys(set map[string]struct{}) [][]byte {
	keys := make([][]byte, 0, len(set))
	for k := range set {
		keys = append(keys, []byte(k))
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}
