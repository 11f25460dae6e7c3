package server

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range []*pb.InternalRaftRequest{
		{ID: 1, Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("b"), Lease: 7}},
		{ID: 1<<63 + 5, DeleteRange: &pb.DeleteRangeRequest{Key: []byte{0, 0xff}, RangeEnd: []byte{0}}},
		{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k")}}}}}},
		{Compaction: &pb.CompactionRequest{Revision: 9, Physical: true}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 3, TTL: 10}},
	} {
		data, err := encodeRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRequest(data)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		if !proto.Equal(got, r) {
			t.Fatalf("round trip: got %v, want %v", got, r)
		}
	}
}

func TestRequestRejectsMalformed(t *testing.T) {
	good, _ := encodeRequest(&pb.InternalRaftRequest{ID: 7, Put: &pb.PutRequest{Key: []byte("key")}})
	two, _ := encodeRequest(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("a")}, DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a")}})
	none, _ := encodeRequest(&pb.InternalRaftRequest{ID: 3})
	for name, data := range map[string][]byte{
		"empty":       nil,
		"old version": append([]byte{1}, good[1:]...),
		"truncated":   good[:len(good)-1],
		"two ops":     two,
		"no op":       none,
	} {
		if _, err := decodeRequest(data); !errors.Is(err, errBadEntry) {
			t.Errorf("%s: got %v, want errBadEntry", name, err)
		}
	}
}

// FuzzDecodeRequest: any entry payload decodes to one request or fails
// with errBadEntry, and what decodes encodes back to something equal.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range []*pb.InternalRaftRequest{
		{ID: 1, Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("b")}},
		{ID: 2, Txn: &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VERSION}}}},
		{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 5}},
		{Alarm: &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, Alarm: pb.AlarmType_NOSPACE}},
	} {
		data, _ := encodeRequest(r)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRequest(data)
		if err != nil {
			if !errors.Is(err, errBadEntry) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		again, err := encodeRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRequest(again)
		if err != nil || !proto.Equal(r, r2) {
			t.Fatalf("re-encoding a decoded request: %v", err)
		}
	})
}
