package mvcc

import (
	"bytes"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

func TestTrimHot(t *testing.T) {
	kv := &mvccpb.KeyValue{Key: []byte("k"), CreateRevision: 5, ModRevision: 9, Version: 3, Value: bytes.Repeat([]byte("v"), 256), Lease: 7}
	rec := encodeKV(kindPut, kv)[1:]
	tr := TrimHot(currentKey(kv.Key), rec)
	got, err := decodeKV(tr)
	if err != nil {
		t.Fatal(err)
	}
	want := &mvccpb.KeyValue{CreateRevision: 5, ModRevision: 9, Version: 3, Lease: 7}
	if !proto.Equal(got, want) || len(tr) >= 16 {
		t.Fatalf("trimmed record (%d bytes) = %v, want %v", len(tr), got, want)
	}
	if tr := TrimHot(metaRev, []byte{0, 0, 0, 0, 0, 0, 0, 9}); tr != nil {
		t.Errorf("the revision counter trimmed to %x, want it kept whole", tr)
	}
	if tr := TrimHot(currentKey(kv.Key), []byte{0xff}); tr != nil {
		t.Errorf("an unparsable record trimmed to %x, want it kept whole", tr)
	}
}

// trimmingReader answers GetTrimmed with TrimHot's form of the value, as
// kvstore's read cache does, and counts those reads.
type trimmingReader struct {
	storage.Engine
	trimmed int
}

func (r *trimmingReader) GetTrimmed(key []byte) ([]byte, error) {
	v, err := r.Engine.Get(key)
	if err != nil {
		return nil, err
	}
	if tr := TrimHot(key, v); tr != nil {
		r.trimmed++
		return tr, nil
	}
	return v, nil
}

// TestPutReadsTrimmedRecord checks that a put keeps the create revision
// and counts the version from a trimmed current record, and that prev_kv
// still returns the whole previous pair.
func TestPutReadsTrimmedRecord(t *testing.T) {
	eng := memory.New()
	s, err := Open(eng, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := &trimmingReader{Engine: eng}
	put := func(req *pb.PutRequest) *pb.PutResponse {
		t.Helper()
		ob := overlay.New(base)
		w := s.Write(ob)
		resp, err := w.Put(req)
		w.End()
		if err != nil {
			t.Fatal(err)
		}
		if err := commitBatch(eng, ob); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	first := put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v1")})
	put(&pb.PutRequest{Key: []byte("other"), Value: []byte("x")})
	put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v2")})
	last := put(&pb.PutRequest{Key: []byte("k"), Value: []byte("v3"), PrevKv: true})
	if base.trimmed == 0 {
		t.Fatal("no put read a trimmed record")
	}
	if p := last.PrevKv; p == nil || string(p.Value) != "v2" || string(p.Key) != "k" || p.Version != 2 {
		t.Fatalf("prev_kv = %v, want k = v2 at version 2", p)
	}
	// A compare of the key's revisions, version or lease reads the trimmed
	// record too; one of its value reads the whole one.
	before := base.trimmed
	for _, tc := range []struct {
		c    *pb.Compare
		want bool
	}{
		{&pb.Compare{Key: []byte("k"), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_ModRevision{ModRevision: last.Header.Revision}}, true},
		{&pb.Compare{Key: []byte("k"), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: first.Header.Revision}}, true},
		{&pb.Compare{Key: []byte("k"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 3}}, true},
		{&pb.Compare{Key: []byte("k"), Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Version{Version: 2}}, false},
		{&pb.Compare{Key: []byte("k"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: []byte("v3")}}, true},
		{&pb.Compare{Key: []byte("missing"), Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 0}}, true},
	} {
		ob := overlay.New(base)
		resp, err := s.Txn(ob, &pb.TxnRequest{Compare: []*pb.Compare{tc.c}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Succeeded != tc.want {
			t.Errorf("compare %v: succeeded %v, want %v", tc.c, resp.Succeeded, tc.want)
		}
	}
	if got := base.trimmed - before; got != 4 {
		t.Errorf("%d compares read a trimmed record, want the 4 of k's revisions and version", got)
	}
	rr, err := s.Range(eng, &pb.RangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	want := &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v3"), CreateRevision: first.Header.Revision, ModRevision: last.Header.Revision, Version: 3}
	if len(rr.Kvs) != 1 || !proto.Equal(rr.Kvs[0], want) {
		t.Fatalf("k = %v, want %v", rr.Kvs, want)
	}
}

// TestLoadHot checks that LoadHot hands over exactly the keys HotKey
// selects, with their values, and declines when they do not fit or the
// live-key counter disagrees with the records.
func TestLoadHot(t *testing.T) {
	e := newEnv(t)
	e.put("a", "1")
	e.put("b", "2")
	e.put("a", "3")
	e.put("c", "4")
	e.del("b", "")
	if _, err := e.compact(2); err != nil {
		t.Fatal(err)
	}

	want := map[string]string{}
	it, err := e.eng.NewIterator(storage.IterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		if HotKey(it.Key()) {
			want[string(it.Key())] = string(it.Value())
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if len(want) != 5 { // a, c and the three counters
		t.Fatalf("engine holds %d hot keys, want 5: %q", len(want), want)
	}
	load := func(max int) (map[string]string, bool) {
		t.Helper()
		got := map[string]string{}
		ok, err := LoadHot(e.eng, max, func(k, v []byte) bool { got[string(k)] = string(v); return true })
		if err != nil {
			t.Fatal(err)
		}
		return got, ok
	}
	if got, ok := load(5); !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadHot(max 5) = %q, %v; want %q, true", got, ok, want)
	}
	if got, ok := load(4); ok || len(got) != 0 {
		t.Fatalf("LoadHot(max 4) = %q, %v; want nothing, false", got, ok)
	}
	// add asks it to stop.
	calls := 0
	if ok, err := LoadHot(e.eng, 5, func(k, v []byte) bool { calls++; return calls < 4 }); ok || err != nil || calls != 4 {
		t.Fatalf("LoadHot stopped by add: %v, %v after %d calls; want false, nil after 4", ok, err, calls)
	}
	// A current record the counter does not know of.
	b := e.eng.NewBatch()
	b.Put(currentKey([]byte("stray")), []byte{})
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	if _, ok := load(100); ok {
		t.Fatal("LoadHot reported every key with a record the counter does not count")
	}
}
