package mvcc

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
)

var _ Attacher = (*lease.Lessor)(nil)

// TestLeaseAttachments runs the Store with metcd's lessor: puts and
// deletes move keys between leases, and a revoke deletes the lease's keys
// in one revision. It runs again with puts reading trimmed current records
// (TrimHot), as they do through the server's read cache: a put learns the
// key's old lease from them.
func TestLeaseAttachments(t *testing.T) {
	t.Run("engine", func(t *testing.T) { testLeaseAttachments(t, false) })
	t.Run("trimmed", func(t *testing.T) { testLeaseAttachments(t, true) })
}

func testLeaseAttachments(t *testing.T, trimmed bool) {
	eng := memory.New()
	l, err := lease.New(eng, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, eng, Options{LeaseExists: l.Exists, Leases: l})
	var tr *trimmingReader
	if trimmed {
		tr = &trimmingReader{Engine: eng}
		e.base = tr
		e.ob.Reset(tr)
	}
	for _, id := range []int64{7, 8, 9} {
		if _, err := l.Grant(e.ob, id, 60); err != nil {
			t.Fatal(err)
		}
	}
	e.commit()
	put := func(key string, lease int64, ignoreLease bool) {
		t.Helper()
		if _, err := e.putReq(&pb.PutRequest{Key: []byte(key), Lease: lease, IgnoreLease: ignoreLease}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(id int64) string {
		t.Helper()
		ks, err := l.Keys(id)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%q", ks)
	}
	put("b", 7, false)
	put("a", 7, false)
	put("c", 7, false)
	put("c", 0, true) // keeps lease 7
	put("e", 8, false)
	put("e", 9, false) // moves to 9
	put("f", 7, false)
	put("f", 0, false) // detached
	e.put("g", "")
	e.del("a", "")
	if _, err := e.txn(&pb.TxnRequest{Success: []*pb.RequestOp{putOp("h", "", 8), delOp("e", "")}}); err != nil {
		t.Fatal(err)
	}
	if trimmed && tr.trimmed == 0 {
		t.Fatal("no put read a trimmed record")
	}
	if got := keys(7); got != `["b" "c"]` {
		t.Fatalf("lease 7: %s", got)
	}
	if got := keys(8); got != `["h"]` {
		t.Fatalf("lease 8: %s", got)
	}
	if got := keys(9); got != `[]` {
		t.Fatalf("lease 9: %s", got)
	}
	_, err = e.putReq(&pb.PutRequest{Key: []byte("x"), Lease: 10})
	wantErr(t, "unknown lease", err, ErrLeaseNotFound)

	rev := e.s.Rev()
	revoked, err := l.Revoke(e.ob, 7)
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.s.DeleteKeys(e.ob, revoked)
	e.commit()
	if err != nil || got != rev+1 || e.s.Rev() != rev+1 {
		t.Fatalf("revoke: revision %d %v, want %d", got, err, rev+1)
	}
	r := e.mustRange(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}})
	if ks := keysOf(r.Kvs); !slices.Equal(ks, []string{"f", "g", "h"}) {
		t.Fatalf("after revoke: %q", ks)
	}
	var evs []string
	if err := e.s.History(e.eng, rev+1, []byte{0}, []byte{0}, func(ev *mvccpb.Event) bool {
		evs = append(evs, fmt.Sprintf("%v %s", ev.Type, ev.Kv.Key))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(evs, []string{"DELETE b", "DELETE c"}) {
		t.Fatalf("revoke events %q", evs)
	}
	// Keys already gone: no new revision.
	if got, err := e.s.DeleteKeys(e.ob, revoked); err != nil || got != rev+1 {
		t.Fatalf("second delete: %d %v", got, err)
	}
	e.commit()
	if e.s.Rev() != rev+1 {
		t.Fatal("second delete moved the revision")
	}
	// The lessor alone keeps the attachments: mvcc writes only its own
	// prefixes (vk, vx, vr, vm), no lease index of its own.
	it, err := eng.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		k := it.Key()
		switch {
		case k[0] == 'l' || k[0] == 'L':
		case len(k) >= 2 && k[0] == 'v' && strings.ContainsRune("kxrm", rune(k[1])):
		default:
			t.Errorf("unexpected engine key %q", k)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	// The attachments are in the engine: a new lessor sees them.
	l2, err := lease.New(eng, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ks, _ := l2.Keys(8); len(ks) != 1 || string(ks[0]) != "h" || l2.Exists(7) {
		t.Fatalf("reloaded lessor: %q, lease 7 exists %v", ks, l2.Exists(7))
	}
}
