package server

import (
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// requestVersion is the first byte of every normal raft entry this
// version writes; the rest is an etcdserverpb.InternalRaftRequest, the
// request etcd itself puts in its log.
const requestVersion = 2

// errBadEntry reports a normal raft entry that does not decode.
var errBadEntry = errors.New("server: malformed raft entry")

func encodeRequest(r *pb.InternalRaftRequest) ([]byte, error) {
	b, err := proto.MarshalOptions{}.MarshalAppend([]byte{requestVersion}, r)
	if err != nil {
		return nil, fmt.Errorf("server: encode request: %w", err)
	}
	return b, nil
}

// decodeRequest decodes a normal entry. Exactly one request field must be
// set, so a damaged entry is never half applied.
func decodeRequest(data []byte) (*pb.InternalRaftRequest, error) {
	if len(data) == 0 || data[0] != requestVersion {
		return nil, fmt.Errorf("%w: unknown version", errBadEntry)
	}
	r := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(data[1:], r); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEntry, err)
	}
	n := 0
	for _, set := range []bool{
		r.Put != nil, r.DeleteRange != nil, r.Txn != nil, r.Compaction != nil,
		r.LeaseGrant != nil, r.LeaseRevoke != nil, r.LeaseCheckpoint != nil,
		r.Alarm != nil, r.ClusterMemberAttrSet != nil,
	} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("%w: %d requests in one entry", errBadEntry, n)
	}
	return r, nil
}

// result is what a waiting request receives from the apply goroutine.
type result struct {
	resp proto.Message
	err  error
}
