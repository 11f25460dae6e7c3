package mvcc

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/engines"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/overlay"
)

// env is a Store over one engine, committing a batch per call unless
// told otherwise.
type env struct {
	t   testing.TB
	eng storage.Engine
	s   *Store
	ob  *overlay.Batch
	// base is what ob reads through: eng, unless a test sets another.
	base storage.Reader
}

func newEnv(t testing.TB) *env { return newEnvOn(t, memory.New(), Options{}) }

func newEnvOn(t testing.TB, eng storage.Engine, opts Options) *env {
	t.Helper()
	s, err := Open(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, eng: eng, s: s, ob: overlay.New(eng), base: eng}
}

// openEngine opens the named engine in a temporary directory, closed when
// the test ends.
func openEngine(t testing.TB, name string) storage.Engine {
	t.Helper()
	open, err := engines.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

// commit writes the pending batch into the engine, through Store.Commit
// as the server does.
func (e *env) commit() {
	e.t.Helper()
	if err := e.s.Commit(func() error { return commitBatch(e.eng, e.ob) }); err != nil {
		e.t.Fatal(err)
	}
	e.ob.Reset(e.base)
}

func commitBatch(eng storage.Engine, ob *overlay.Batch) error {
	eb := storage.NewBatchSize(eng, ob.Len(), ob.Size())
	defer eb.Close()
	ob.ApplyTo(eb)
	if err := eb.Commit(false); err != nil {
		return err
	}
	ob.Reset(eng)
	return nil
}

func (e *env) put(key, val string) *pb.PutResponse {
	e.t.Helper()
	resp, err := e.putReq(&pb.PutRequest{Key: []byte(key), Value: []byte(val)})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *env) putReq(req *pb.PutRequest) (*pb.PutResponse, error) {
	w := e.s.Write(e.ob)
	resp, err := w.Put(req)
	w.End()
	e.commit()
	return resp, err
}

func (e *env) del(key, end string) *pb.DeleteRangeResponse {
	e.t.Helper()
	resp, err := e.delReq(&pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: bytesOrNil(end)})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

func (e *env) delReq(req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	w := e.s.Write(e.ob)
	resp, err := w.DeleteRange(req)
	w.End()
	e.commit()
	return resp, err
}

func (e *env) txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := e.s.Txn(e.ob, req)
	e.commit()
	return resp, err
}

func (e *env) compact(rev int64) (*pb.CompactionResponse, error) {
	resp, err := e.s.Compact(e.ob, rev)
	e.commit()
	return resp, err
}

// rng answers req with Range and with RangeCommitted, which must agree.
func (e *env) rng(req *pb.RangeRequest) (*pb.RangeResponse, error) {
	e.t.Helper()
	resp, err := e.s.Range(e.eng, req)
	cresp, cerr := e.s.RangeCommitted(e.eng, req)
	if !errors.Is(cerr, err) || !proto.Equal(cresp, resp) {
		e.t.Fatalf("range %v:\n Range          %s, %v\n RangeCommitted %s, %v", req, text(resp), err, text(cresp), cerr)
	}
	return resp, err
}

func (e *env) mustRange(req *pb.RangeRequest) *pb.RangeResponse {
	e.t.Helper()
	resp, err := e.rng(req)
	if err != nil {
		e.t.Fatalf("range %v: %v", req, err)
	}
	return resp
}

// get reads one key at rev (0: current).
func (e *env) get(key string, rev int64) *mvccpb.KeyValue {
	e.t.Helper()
	resp := e.mustRange(&pb.RangeRequest{Key: []byte(key), Revision: rev})
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0]
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

func kv(key, val string, create, mod, ver int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: bytesOrNil(val), CreateRevision: create, ModRevision: mod, Version: ver}
}

func text(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	return prototext.MarshalOptions{}.Format(m)
}

func wantMsg(t testing.TB, what string, got, want proto.Message) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("%s:\n got  %s\n want %s", what, text(got), text(want))
	}
}

func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

func keysOf(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = string(kv.Key)
	}
	return out
}
