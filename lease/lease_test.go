package lease

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	etcdlease "go.etcd.io/etcd/server/v3/lease"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// member is one lessor over its own engine, with the Ready batch the
// apply loop would use.
type member struct {
	t   testing.TB
	eng *memory.Engine
	ob  *overlay.Batch
	l   *Lessor
}

func newMember(t testing.TB, opts Options) *member {
	t.Helper()
	eng := memory.New()
	t.Cleanup(func() { eng.Close() })
	l, err := New(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &member{t: t, eng: eng, ob: overlay.New(eng), l: l}
}

// commit ends the Ready: the batch goes into the engine atomically.
func (m *member) commit() {
	m.t.Helper()
	eb := m.eng.NewBatch()
	defer eb.Close()
	m.ob.ApplyTo(eb)
	if err := eb.Commit(false); err != nil {
		m.t.Fatal(err)
	}
	m.ob.Reset(m.eng)
}

func (m *member) grant(id, ttl int64) {
	m.t.Helper()
	if _, err := m.l.Grant(m.ob, id, ttl); err != nil {
		m.t.Fatalf("grant %d: %v", id, err)
	}
}

func (m *member) attach(id int64, key string) {
	m.t.Helper()
	if err := m.l.Attach(m.ob, id, []byte(key)); err != nil {
		m.t.Fatalf("attach %d %q: %v", id, key, err)
	}
}

func dumpEngine(t testing.TB, r storage.Reader) string {
	t.Helper()
	it, err := r.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var sb strings.Builder
	for it.Next() {
		fmt.Fprintf(&sb, "%x=%x\n", it.Key(), it.Value())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// dumpState renders the replicated state of l.
func dumpState(t testing.TB, l *Lessor) string {
	t.Helper()
	var sb strings.Builder
	for _, id := range l.Leases() {
		ls, ok := l.Lookup(id)
		if !ok {
			t.Fatalf("lease %d listed but not found", id)
		}
		keys, err := l.Keys(id)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sb, "%d ttl=%d rem=%d keys=%q\n", id, ls.TTL, ls.RemainingTTL, keys)
		for _, k := range keys {
			if got := l.LeaseOf(k); got != id {
				t.Fatalf("LeaseOf(%q) = %d, want %d", k, got, id)
			}
		}
	}
	return sb.String()
}

func keyStrings(keys [][]byte) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = string(k)
	}
	return out
}

func TestPersistAndReload(t *testing.T) {
	m := newMember(t, Options{})
	m.grant(1, 10)
	m.grant(2, 20)
	m.attach(1, "b")
	m.attach(1, "a")
	m.attach(2, "c")
	m.attach(2, "b") // moves b from 1 to 2
	m.attach(2, "d")
	if err := m.l.Detach(m.ob, 2, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := m.l.Detach(m.ob, 2, []byte("zz")); err != nil { // not attached: no-op
		t.Fatal(err)
	}
	if err := m.l.Checkpoint(m.ob, 2, 7); err != nil {
		t.Fatal(err)
	}
	// Nothing reaches the engine before the Ready commits.
	if got := dumpEngine(t, m.eng); got != "" {
		t.Fatalf("engine before commit:\n%s", got)
	}
	m.commit()

	want := "1 ttl=10 rem=0 keys=[\"a\"]\n2 ttl=20 rem=7 keys=[\"b\" \"d\"]\n"
	if got := dumpState(t, m.l); got != want {
		t.Fatalf("state:\n%s\nwant:\n%s", got, want)
	}
	re, err := New(m.eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := dumpState(t, re); got != want {
		t.Fatalf("reloaded state:\n%s\nwant:\n%s", got, want)
	}

	keys, err := m.l.Revoke(m.ob, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := keyStrings(keys); !slices.Equal(got, []string{"b", "d"}) {
		t.Fatalf("revoke keys = %q", got)
	}
	if m.l.Exists(2) || m.l.LeaseOf([]byte("b")) != 0 {
		t.Fatal("revoked lease still visible")
	}
	m.commit()
	re, err = New(m.eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want = "1 ttl=10 rem=0 keys=[\"a\"]\n"
	if got := dumpState(t, re); got != want {
		t.Fatalf("reloaded after revoke:\n%s\nwant:\n%s", got, want)
	}
	// Only lease 1's record and attachment remain in the engine.
	wantEng := fmt.Sprintf("%x=\n%x=%x\n", attachedKey(1, []byte("a")), recordKey(1), record{id: 1, ttl: 10}.encode())
	if got := dumpEngine(t, m.eng); got != wantEng {
		t.Fatalf("engine:\n%s\nwant:\n%s", got, wantEng)
	}

	// Reload after a snapshot install: another engine's leases replace these.
	other := newMember(t, Options{})
	other.grant(9, 30)
	other.attach(9, "x")
	other.commit()
	if err := m.l.Reload(other.eng); err != nil {
		t.Fatal(err)
	}
	if got, want := dumpState(t, m.l), "9 ttl=30 rem=0 keys=[\"x\"]\n"; got != want {
		t.Fatalf("after Reload:\n%s\nwant:\n%s", got, want)
	}
}

func TestBatchReadYourWrites(t *testing.T) {
	// Grant and attach in one Ready, revoke in the next before anything
	// else: the attachments written in the batch are what Revoke deletes.
	m := newMember(t, Options{})
	m.grant(5, 10)
	m.attach(5, "k")
	if _, err := m.l.Revoke(m.ob, 5); err != nil {
		t.Fatal(err)
	}
	m.commit()
	if got := dumpEngine(t, m.eng); got != "" {
		t.Fatalf("engine after grant+revoke in one batch:\n%s", got)
	}
}

func TestErrors(t *testing.T) {
	m := newMember(t, Options{MinTTL: 5})
	if _, err := m.l.Grant(m.ob, 0, 10); err != etcdlease.ErrLeaseNotFound {
		t.Fatalf("grant id 0: %v", err)
	}
	if _, err := m.l.Grant(m.ob, 1, MaxLeaseTTL+1); err != ErrLeaseTTLTooLarge || err.Error() != "too large lease TTL" {
		t.Fatalf("grant too large: %v", err)
	}
	ls, err := m.l.Grant(m.ob, 1, MaxLeaseTTL)
	if err != nil || ls.TTL != MaxLeaseTTL {
		t.Fatalf("grant max: %v %v", ls, err)
	}
	ls, err = m.l.Grant(m.ob, 2, 1)
	if err != nil || ls.TTL != 5 {
		t.Fatalf("grant below MinTTL: %+v %v", ls, err)
	}
	ls, err = m.l.Grant(m.ob, -3, -7) // negative ids are allowed, as in etcd
	if err != nil || ls.TTL != 5 {
		t.Fatalf("grant negative: %+v %v", ls, err)
	}
	if _, err := m.l.Grant(m.ob, 2, 10); !errors.Is(err, etcdlease.ErrLeaseExists) || err.Error() != "lease already exists" {
		t.Fatalf("grant twice: %v", err)
	}
	if _, err := m.l.Revoke(m.ob, 4); err != ErrLeaseNotFound || err.Error() != "lease not found" {
		t.Fatalf("revoke missing: %v", err)
	}
	if err := m.l.Attach(m.ob, 4, []byte("k")); err != ErrLeaseNotFound {
		t.Fatalf("attach missing: %v", err)
	}
	if err := m.l.Attach(m.ob, 2, nil); err == nil {
		t.Fatal("attach of an empty key accepted")
	}
	if err := m.l.Detach(m.ob, 4, []byte("k")); err != ErrLeaseNotFound {
		t.Fatalf("detach missing: %v", err)
	}
	if err := m.l.Checkpoint(m.ob, 4, 3); err != nil {
		t.Fatalf("checkpoint missing: %v", err)
	}
	if _, err := m.l.Keys(4); err != ErrLeaseNotFound {
		t.Fatalf("keys missing: %v", err)
	}
	m.commit()
	// A reload raises stored TTLs to a larger MinTTL (etcd's recover).
	re, err := New(m.eng, Options{MinTTL: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := dumpState(t, re), "-3 ttl=8 rem=0 keys=[]\n1 ttl=9000000000 rem=0 keys=[]\n2 ttl=8 rem=0 keys=[]\n"; got != want {
		t.Fatalf("reloaded:\n%s\nwant:\n%s", got, want)
	}
}

func TestMinTTLFor(t *testing.T) {
	for _, c := range []struct {
		ticks int
		hb    time.Duration
		want  int64
	}{
		{10, 100 * time.Millisecond, 2}, // 1.5s
		{10, time.Second, 15},
		{5, 100 * time.Millisecond, 1}, // 7 ticks: 0.7s
		{20, 100 * time.Millisecond, 3},
	} {
		if got := MinTTLFor(c.ticks, c.hb); got != c.want {
			t.Errorf("MinTTLFor(%d, %v) = %d, want %d", c.ticks, c.hb, got, c.want)
		}
	}
}

func TestCorruptEngine(t *testing.T) {
	eng := memory.New()
	defer eng.Close()
	b := eng.NewBatch()
	b.Put(attachedKey(3, []byte("k")), nil) // no record for lease 3
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, err := New(eng, Options{}); err == nil {
		t.Fatal("New accepted an attachment without a lease")
	}
	b = eng.NewBatch()
	b.Put(recordKey(3), []byte{9})
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, err := New(eng, Options{}); err == nil {
		t.Fatal("New accepted a bad record")
	}
}

// TestDeterminism feeds two members the same applied entries, in
// different Ready boundaries and with one of them promoted and its clock
// running, and checks that they hold and store identical state.
func TestDeterminism(t *testing.T) {
	clk := newClock()
	a := newMember(t, Options{MinTTL: 3})
	b := newMember(t, Options{MinTTL: 3, Clock: clk, CheckpointInterval: time.Second})
	b.l.Promote(0)
	rng := rand.New(rand.NewSource(1))
	errStr := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	for i := range 3000 {
		id := int64(rng.Intn(20) + 1)
		key := []byte(fmt.Sprintf("key%d", rng.Intn(50)))
		var ea, eb error
		switch op := rng.Intn(10); {
		case op < 3:
			ttl := int64(rng.Intn(20))
			_, ea = a.l.Grant(a.ob, id, ttl)
			_, eb = b.l.Grant(b.ob, id, ttl)
		case op < 4:
			var ka, kb [][]byte
			ka, ea = a.l.Revoke(a.ob, id)
			kb, eb = b.l.Revoke(b.ob, id)
			if !slices.EqualFunc(ka, kb, bytes.Equal) {
				t.Fatalf("step %d: revoke keys %q vs %q", i, ka, kb)
			}
		case op < 7:
			ea = a.l.Attach(a.ob, id, key)
			eb = b.l.Attach(b.ob, id, key)
		case op < 9:
			ea = a.l.Detach(a.ob, id, key)
			eb = b.l.Detach(b.ob, id, key)
		default:
			rem := int64(rng.Intn(10))
			ea = a.l.Checkpoint(a.ob, id, rem)
			eb = b.l.Checkpoint(b.ob, id, rem)
		}
		if errStr(ea) != errStr(eb) {
			t.Fatalf("step %d: %v vs %v", i, ea, eb)
		}
		// The leader-only side runs on b only; it must not matter.
		clk.Advance(time.Duration(rng.Intn(2000)) * time.Millisecond)
		b.l.ExpiredLeases(0)
		b.l.DueCheckpoints(0)
		if rng.Intn(7) == 0 {
			b.l.Renew(id)
		}
		if rng.Intn(20) == 0 {
			a.commit()
		}
		if rng.Intn(13) == 0 {
			b.commit()
		}
	}
	a.commit()
	b.commit()
	sa, sb := dumpState(t, a.l), dumpState(t, b.l)
	if sa != sb {
		t.Fatalf("states differ:\n%s\nvs\n%s", sa, sb)
	}
	if sa == "" {
		t.Fatal("no leases left: the test exercises nothing")
	}
	if ea, eb := dumpEngine(t, a.eng), dumpEngine(t, b.eng); ea != eb {
		t.Fatal("engines differ")
	}
	re, err := New(a.eng, Options{MinTTL: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := dumpState(t, re); got != sa {
		t.Fatalf("reloaded state differs:\n%s\nvs\n%s", got, sa)
	}
}

func TestExpiryOnlyOnPrimary(t *testing.T) {
	clk := newClock()
	leader := newMember(t, Options{Clock: clk})
	follower := newMember(t, Options{Clock: clk})
	for _, m := range []*member{leader, follower} {
		m.grant(7, 10)
		m.commit()
	}
	leader.l.Promote(0)
	if !leader.l.IsPrimary() || follower.l.IsPrimary() {
		t.Fatal("IsPrimary wrong")
	}
	clk.Advance(9*time.Second + 999*time.Millisecond)
	if got := leader.l.ExpiredLeases(0); got != nil {
		t.Fatalf("expired before TTL: %v", got)
	}
	clk.Advance(time.Millisecond)
	if got := leader.l.ExpiredLeases(0); !slices.Equal(got, []int64{7}) {
		t.Fatalf("expired at TTL: %v", got)
	}
	// Handed out once, then quiet for the retry interval.
	if got := leader.l.ExpiredLeases(0); got != nil {
		t.Fatalf("expired handed out twice: %v", got)
	}
	// Still expired for TimeToLive and Renew meanwhile. TimeToLive counts
	// whole seconds toward zero, as etcd: 0 through the first second past
	// expiry, then negative.
	if _, rem, _, err := leader.l.TimeToLive(7, false); err != nil || rem != 0 {
		t.Fatalf("TimeToLive at expiry: %d %v, want 0", rem, err)
	}
	if _, err := leader.l.Renew(7); err != ErrLeaseNotFound {
		t.Fatalf("Renew of expired: %v", err)
	}
	clk.Advance(1500 * time.Millisecond)
	if _, rem, _, err := leader.l.TimeToLive(7, false); err != nil || rem != -1 {
		t.Fatalf("TimeToLive 1.5s past expiry: %d %v, want -1", rem, err)
	}
	clk.Advance(DefaultExpiredRetryInterval - 1500*time.Millisecond)
	if got := leader.l.ExpiredLeases(0); !slices.Equal(got, []int64{7}) {
		t.Fatalf("expired after retry interval: %v", got)
	}
	// The follower never expires anything.
	clk.Advance(time.Hour)
	if got := follower.l.ExpiredLeases(0); got != nil {
		t.Fatalf("follower expired %v", got)
	}
	// Nor does a demoted leader.
	leader.l.Demote()
	if got := leader.l.ExpiredLeases(0); got != nil {
		t.Fatalf("demoted leader expired %v", got)
	}
	// The revoke comes through raft, on every member.
	for _, m := range []*member{leader, follower} {
		if _, err := m.l.Revoke(m.ob, 7); err != nil {
			t.Fatal(err)
		}
		m.commit()
	}
}

func TestExpiredLeasesRateLimit(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk, RevokeRate: 8})
	for id := int64(1); id <= 10; id++ {
		m.grant(id, 5+id) // expire one second apart, id order
	}
	m.l.Promote(0)
	clk.Advance(time.Hour)
	if got := m.l.ExpiredLeases(3); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("limit 3: %v", got)
	}
	if got := m.l.ExpiredLeases(0); !slices.Equal(got, []int64{4, 5, 6, 7}) { // RevokeRate/2
		t.Fatalf("default limit: %v", got)
	}
	if got := m.l.ExpiredLeases(100); !slices.Equal(got, []int64{8, 9, 10}) {
		t.Fatalf("rest: %v", got)
	}
	// Revoked leases leave the tracking.
	for id := int64(1); id <= 10; id++ {
		if _, err := m.l.Revoke(m.ob, id); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour)
	if got := m.l.ExpiredLeases(100); got != nil {
		t.Fatalf("revoked leases expired: %v", got)
	}
}

func TestPromoteExtends(t *testing.T) {
	clk := newClock()
	old := newMember(t, Options{Clock: clk})
	next := newMember(t, Options{Clock: clk})
	for _, m := range []*member{old, next} {
		m.grant(1, 10)
		m.grant(2, 60)
		m.commit()
	}
	old.l.Promote(0)
	clk.Advance(9 * time.Second) // lease 1 is about to expire on the old leader
	if _, rem, _, _ := old.l.TimeToLive(1, false); rem != 1 {
		t.Fatalf("old leader remaining %d, want 1", rem)
	}
	// A checkpoint of lease 2 reaches every member through raft.
	for _, m := range []*member{old, next} {
		if err := m.l.Checkpoint(m.ob, 2, 51); err != nil {
			t.Fatal(err)
		}
		m.commit()
	}
	old.l.Demote()
	next.l.Promote(2 * time.Second)
	// Lease 1 gets its full TTL (plus the extension) on the new leader;
	// lease 2 its checkpointed remainder.
	if g, rem, _, err := next.l.TimeToLive(1, false); err != nil || g != 10 || rem != 12 {
		t.Fatalf("lease 1 on new leader: granted %d remaining %d %v", g, rem, err)
	}
	if g, rem, _, err := next.l.TimeToLive(2, false); err != nil || g != 60 || rem != 53 {
		t.Fatalf("lease 2 on new leader: granted %d remaining %d %v", g, rem, err)
	}
	clk.Advance(11 * time.Second)
	if got := next.l.ExpiredLeases(0); got != nil {
		t.Fatalf("expired too early: %v", got)
	}
	clk.Advance(time.Second)
	if got := next.l.ExpiredLeases(0); !slices.Equal(got, []int64{1}) {
		t.Fatalf("expired: %v", got)
	}
	// A renew restarts lease 2 from its full TTL and asks for the
	// checkpoint to be reset, so a later leader does not use 51.
	if ttl, err := next.l.Renew(2); err != nil || ttl != 60 {
		t.Fatalf("renew: %d %v", ttl, err)
	}
	if got := next.l.DueCheckpoints(0); !slices.Equal(got, []CheckpointEntry{{ID: 2}}) {
		t.Fatalf("due checkpoints after renew: %v", got)
	}
	if got := next.l.DueCheckpoints(0); got != nil {
		t.Fatalf("reset offered twice: %v", got)
	}
	if err := next.l.Checkpoint(next.ob, 2, 0); err != nil {
		t.Fatal(err)
	}
	next.commit()
	re, err := New(next.eng, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	re.Promote(0)
	if _, rem, _, _ := re.TimeToLive(2, false); rem != 60 {
		t.Fatalf("after reset, a new leader gives %d, want 60", rem)
	}
}

func TestPromoteSpreadsPileUp(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk, RevokeRate: 8}) // at most 6 expiries a second
	for id := int64(1); id <= 40; id++ {
		m.grant(id, 10)
	}
	m.grant(100, 100) // far away: untouched
	m.l.Promote(0)
	start := clk.Now().Add(10 * time.Second)
	var exp []time.Time
	for id := int64(1); id <= 40; id++ {
		e := m.l.p.track[id].expiry
		if e.Before(start) {
			t.Fatalf("lease %d moved earlier", id)
		}
		exp = append(exp, e)
	}
	slices.SortFunc(exp, time.Time.Compare)
	for i, e := range exp {
		n := 0
		for _, f := range exp[i:] {
			if f.Sub(e) < time.Second {
				n++
			}
		}
		if n > 6 {
			t.Fatalf("%d expiries within a second of %v", n, e.Sub(start))
		}
	}
	if last := exp[len(exp)-1].Sub(start); last > 7*time.Second {
		t.Fatalf("pile spread over %v, too long", last)
	}
	if got := m.l.p.track[100].expiry; !got.Equal(clk.Now().Add(100 * time.Second)) {
		t.Fatalf("far lease moved to %v", got)
	}
	// Every lease still expires, at most 6 a second.
	seen := map[int64]bool{}
	for range 20 {
		clk.Advance(time.Second)
		fresh := 0
		for _, id := range m.l.ExpiredLeases(100) {
			if !seen[id] {
				seen[id] = true
				fresh++
			}
		}
		if fresh > 6 {
			t.Fatalf("%d leases expired in one second", fresh)
		}
	}
	if len(seen) != 40 {
		t.Fatalf("%d leases expired, want 40", len(seen))
	}
}

func TestRenew(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk, MinTTL: 2})
	m.grant(1, 10)
	m.grant(2, 1) // raised to 2
	m.commit()
	if _, err := m.l.Renew(1); err != ErrNotPrimary || err.Error() != "not a primary lessor" {
		t.Fatalf("renew on follower: %v", err)
	}
	m.l.Promote(0)
	if _, err := m.l.Renew(3); err != ErrLeaseNotFound {
		t.Fatalf("renew missing: %v", err)
	}
	clk.Advance(8 * time.Second)
	if ttl, err := m.l.Renew(1); err != nil || ttl != 10 {
		t.Fatalf("renew: %d %v", ttl, err)
	}
	if got := m.l.DueCheckpoints(0); got != nil { // no checkpoint set: no reset
		t.Fatalf("due checkpoints: %v", got)
	}
	clk.Advance(9 * time.Second)
	if got := m.l.ExpiredLeases(0); !slices.Equal(got, []int64{2}) {
		t.Fatalf("expired after renew: %v", got)
	}
	if _, rem, _, _ := m.l.TimeToLive(1, false); rem != 1 {
		t.Fatalf("remaining %d", rem)
	}
	m.l.Demote()
	if _, err := m.l.Renew(1); err != ErrNotPrimary {
		t.Fatalf("renew after demote: %v", err)
	}
}

func TestTimeToLive(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk})
	m.grant(1, 30)
	m.grant(2, 30)
	m.attach(1, "zeta")
	m.attach(1, "alpha")
	m.attach(1, "mid\x00dle")
	m.attach(2, "other")
	m.commit()
	if _, _, _, err := m.l.TimeToLive(1, true); err != ErrNotPrimary {
		t.Fatalf("TimeToLive on follower: %v", err)
	}
	m.l.Promote(0)
	clk.Advance(10*time.Second + 500*time.Millisecond)
	g, rem, keys, err := m.l.TimeToLive(1, true)
	if err != nil || g != 30 || rem != 19 {
		t.Fatalf("TimeToLive: %d %d %v", g, rem, err)
	}
	if got := keyStrings(keys); !slices.Equal(got, []string{"alpha", "mid\x00dle", "zeta"}) {
		t.Fatalf("keys %q", got)
	}
	if _, _, keys, _ := m.l.TimeToLive(1, false); keys != nil {
		t.Fatalf("keys without withKeys: %q", keys)
	}
	if _, _, _, err := m.l.TimeToLive(3, true); err != ErrLeaseNotFound {
		t.Fatalf("TimeToLive missing: %v", err)
	}
	// A lease granted on the leader starts its TTL at apply time.
	m.grant(4, 15)
	if g, rem, keys, err := m.l.TimeToLive(4, true); err != nil || g != 15 || rem != 15 || len(keys) != 0 {
		t.Fatalf("new lease: %d %d %q %v", g, rem, keys, err)
	}
	clk.Advance(20 * time.Second) // 0.5s past lease 1's expiry
	if _, rem, _, _ := m.l.TimeToLive(1, false); rem != 0 {
		t.Fatalf("remaining 0.5s past expiry %d, want 0 (etcd's truncation)", rem)
	}
	clk.Advance(2 * time.Second)
	if _, rem, _, _ := m.l.TimeToLive(1, false); rem != -2 {
		t.Fatalf("remaining 2.5s past expiry %d, want -2", rem)
	}
	if got := m.l.Leases(); !slices.Equal(got, []int64{1, 2, 4}) {
		t.Fatalf("Leases %v", got)
	}
}

func TestPeriodicCheckpoints(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk, CheckpointInterval: 10 * time.Second})
	m.grant(1, 60)
	m.grant(2, 5) // shorter than the interval: never checkpointed
	m.l.Promote(0)
	clk.Advance(9 * time.Second)
	if got := m.l.DueCheckpoints(0); got != nil {
		t.Fatalf("early: %v", got)
	}
	clk.Advance(time.Second)
	if got := m.l.DueCheckpoints(0); !slices.Equal(got, []CheckpointEntry{{ID: 1, RemainingTTL: 50}}) {
		t.Fatalf("due: %v", got)
	}
	// Applying it schedules the next one.
	if err := m.l.Checkpoint(m.ob, 1, 50); err != nil {
		t.Fatal(err)
	}
	clk.Advance(10 * time.Second)
	if got := m.l.DueCheckpoints(0); !slices.Equal(got, []CheckpointEntry{{ID: 1, RemainingTTL: 40}}) {
		t.Fatalf("second: %v", got)
	}
	// A follower offers none.
	m.l.Demote()
	if got := m.l.DueCheckpoints(0); got != nil {
		t.Fatalf("follower: %v", got)
	}
}

// TestConcurrent runs the apply goroutine against keepalives, TimeToLive,
// expiry scans and leadership changes (for -race).
func TestConcurrent(t *testing.T) {
	clk := newClock()
	m := newMember(t, Options{Clock: clk, MinTTL: 1})
	m.l.Promote(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := int64(rng.Intn(50) + 1)
				switch rng.Intn(6) {
				case 0:
					m.l.Renew(id)
				case 1:
					m.l.TimeToLive(id, true)
				case 2:
					m.l.ExpiredLeases(0)
					m.l.DueCheckpoints(0)
				case 3:
					clk.Advance(time.Second)
				case 4:
					m.l.Leases()
					m.l.Exists(id)
				case 5:
					if rng.Intn(20) == 0 {
						if rng.Intn(2) == 0 {
							m.l.Demote()
						} else {
							m.l.Promote(time.Second)
						}
					}
				}
			}
		}()
	}
	rng := rand.New(rand.NewSource(99))
	for i := range 5000 {
		id := int64(rng.Intn(50) + 1)
		switch rng.Intn(4) {
		case 0:
			m.l.Grant(m.ob, id, int64(rng.Intn(10)))
		case 1:
			m.l.Revoke(m.ob, id)
		case 2:
			m.l.Attach(m.ob, id, []byte(fmt.Sprint("k", rng.Intn(100))))
		case 3:
			m.l.Checkpoint(m.ob, id, int64(rng.Intn(5)))
		}
		if i%50 == 0 {
			m.commit()
		}
	}
	close(stop)
	wg.Wait()
	m.commit()
	re, err := New(m.eng, Options{MinTTL: 1})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := dumpState(t, m.l), dumpState(t, re); a != b {
		t.Fatalf("reloaded state differs:\n%s\nvs\n%s", a, b)
	}
}
