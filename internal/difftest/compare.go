package difftest

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Result is one side's answer to a request.
type Result struct {
	// Name labels the side in Compare's messages ("a" or "b" if empty).
	Name string
	Resp proto.Message
	// Err is a gRPC status error (or an error status.Convert maps).
	Err error
}

// Compare returns nil if a and b are the same answer, else an error that
// shows both. Two errors are the same if their gRPC codes and messages
// are (the responses that come with errors are ignored). Two responses
// are the same if their header revisions are and they are equal once
// Normalize has cleared the fields of every response header that name the
// member and its term (cluster_id, member_id, raft_term), in nested txn
// responses too. A nil response without an error is always a difference.
func Compare(a, b Result) error {
	an, bn := a.Name, b.Name
	if an == "" {
		an = "a"
	}
	if bn == "" {
		bn = "b"
	}
	if a.Err != nil || b.Err != nil {
		as, bs := status.Convert(a.Err), status.Convert(b.Err)
		if a.Err == nil || b.Err == nil || as.Code() != bs.Code() || as.Message() != bs.Message() {
			return fmt.Errorf("different errors:\n %s error %s (resp %s)\n %s error %s (resp %s)",
				an, errText(a.Err), Text(a.Resp), bn, errText(b.Err), Text(b.Resp))
		}
		return nil
	}
	if isNilMsg(a.Resp) || isNilMsg(b.Resp) {
		return fmt.Errorf("nil response:\n %s %s\n %s %s", an, Text(a.Resp), bn, Text(b.Resp))
	}
	arev, am := Normalize(a.Resp)
	brev, bm := Normalize(b.Resp)
	if arev != brev || !proto.Equal(am, bm) {
		return fmt.Errorf("different responses:\n %s (rev %d) %s\n %s (rev %d) %s", an, arev, Text(am), bn, brev, Text(bm))
	}
	return nil
}

func errText(err error) string {
	if err == nil {
		return "<nil>"
	}
	s := status.Convert(err)
	return fmt.Sprintf("%v %q", s.Code(), s.Message())
}

// Normalize returns the header revision of resp and a copy of resp
// without its header, in which the response headers nested in it (txn
// responses) have no cluster_id, member_id or raft_term.
func Normalize(resp proto.Message) (rev int64, norm proto.Message) {
	if isNilMsg(resp) {
		return 0, resp
	}
	c := proto.Clone(resp)
	r := c.ProtoReflect()
	if fd := r.Descriptor().Fields().ByName("header"); fd != nil && fd.Message() != nil &&
		fd.Message().FullName() == headerName {
		rev = HeaderRevision(resp)
		r.Clear(fd)
	}
	clearMemberFields(r)
	return rev, c
}

var headerName = (&pb.ResponseHeader{}).ProtoReflect().Descriptor().FullName()

// HeaderRevision is the revision of resp's header (0 if it has none).
func HeaderRevision(resp proto.Message) int64 {
	if isNilMsg(resp) {
		return 0
	}
	r := resp.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("header")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != headerName || !r.Has(fd) {
		return 0
	}
	h := r.Get(fd).Message()
	return h.Get(h.Descriptor().Fields().ByName("revision")).Int()
}

// clearMemberFields clears cluster_id, member_id and raft_term in every
// ResponseHeader inside m (m itself included).
func clearMemberFields(m protoreflect.Message) {
	if m.Descriptor().FullName() == headerName {
		for _, name := range []protoreflect.Name{"cluster_id", "member_id", "raft_term"} {
			m.Clear(m.Descriptor().Fields().ByName(name))
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearMemberFields(l.Get(i).Message())
			}
		default:
			clearMemberFields(v.Message())
		}
		return true
	})
}

func isNilMsg(m proto.Message) bool {
	return m == nil || !m.ProtoReflect().IsValid()
}

// Text is m in protobuf text format ("<nil>" for no message).
func Text(m proto.Message) string {
	if isNilMsg(m) {
		return "<nil>"
	}
	return prototext.MarshalOptions{}.Format(m)
}

// Stats counts outcomes: per kind of request, successes under the kind
// ("put") and errors under the kind and the gRPC message ("put error:
// etcdserver: key not found").
type Stats map[string]int

// Add counts op's outcome, given the reference error. Errors that are
// not gRPC status errors are not counted.
func (s Stats) Add(op Op, err error) {
	if err == nil {
		s[op.Kind()]++
		return
	}
	if st, ok := status.FromError(err); ok {
		s[op.Kind()+" error: "+st.Message()]++
	}
}
