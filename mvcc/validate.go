package mvcc

import (
	"bytes"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/pkg/v3/adt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxKeyBytes is the longest key a new write may carry, counted as the
// index stores it (StoredKeyLen). Members on different engines share one
// log, so the limit is the same on every engine. etcd has none below
// --max-request-bytes, since its bbolt keys are revisions; keys this long
// are rare.
const MaxKeyBytes = 16 << 10

// maxAppliedKeyBytes is the longest key an entry may carry when applied:
// bbolt's 32 KiB key limit, less room for the prefixes and the revision.
// An entry over it could never be committed to a bolt engine, so it is
// refused alike on every member. Between MaxKeyBytes and it, entries
// committed before MaxKeyBytes was checked (by an older metcd) still
// apply as they did when a member replays them.
const maxAppliedKeyBytes = 32<<10 - 64

// StoredKeyLen is the length of key as the index stores it: each 0x00
// byte takes two (see appendEscaped).
func StoredKeyLen(key []byte) int { return len(key) + bytes.Count(key, []byte{0}) }

// ErrGRPCKeyTooLarge refuses a put of a key over MaxKeyBytes.
var ErrGRPCKeyTooLarge = status.Error(codes.InvalidArgument,
	fmt.Sprintf("etcdserver: key is too large (at most %d bytes, a 0x00 byte counting twice)", MaxKeyBytes))

// Validation repeats the checks etcd's gRPC layer makes before a request
// reaches its server, with the same rpctypes.ErrGRPC* errors. The Store's
// methods run them too (so an entry is refused the same way on every
// member); the server should also run them before proposing a request.

// ValidateRange checks a RangeRequest: a key is required and the sort
// options must be known values.
func ValidateRange(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// ValidatePut checks a PutRequest about to be proposed: a key is
// required and at most MaxKeyBytes long, ignore_value forbids a value and
// ignore_lease a lease.
func ValidatePut(r *pb.PutRequest) error { return validatePut(r, MaxKeyBytes) }

// validatePut is ValidatePut with a key limit: MaxKeyBytes before a put is
// proposed, maxAppliedKeyBytes when it is applied.
func validatePut(r *pb.PutRequest, maxKey int) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if StoredKeyLen(r.GetKey()) > maxKey {
		return ErrGRPCKeyTooLarge
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a DeleteRangeRequest: a key is required.
func ValidateDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// ValidateTxn checks a TxnRequest as etcd does: at most maxOps compares,
// success ops and failure ops each (etcd's --max-txn-ops, 128 by default;
// a nested txn gets what its parent's largest list leaves; maxOps <= 0
// means no limit), compares need keys, every op is valid and not empty
// (an empty op is rpctypes.ErrGRPCKeyNotFound), and no key is both put
// twice or put and deleted (rpctypes.ErrGRPCDuplicateKey; see
// checkIntervals for the exact rule, which is etcd's).
func ValidateTxn(r *pb.TxnRequest, maxOps int) error {
	return validateTxn(r, maxOps, MaxKeyBytes)
}

// validateTxn is ValidateTxn with a key limit for its puts (see
// validatePut).
func validateTxn(r *pb.TxnRequest, maxOps, maxKey int) error {
	if err := checkTxnRequest(r, maxOps, maxOps > 0, maxKey); err != nil {
		return err
	}
	if _, _, err := checkIntervals(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkIntervals(r.GetFailure())
	return err
}

func checkTxnRequest(r *pb.TxnRequest, maxOps int, limited bool, maxKey int) error {
	opc := max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()))
	if limited && opc > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			if err := checkRequestOp(op, maxOps-opc, limited, maxKey); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(op *pb.RequestOp, maxOps int, limited bool, maxKey int) error {
	switch v := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return ValidateRange(v.RequestRange)
	case *pb.RequestOp_RequestPut:
		return validatePut(v.RequestPut, maxKey)
	case *pb.RequestOp_RequestDeleteRange:
		return ValidateDeleteRange(v.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnRequest(v.RequestTxn, maxOps, limited, maxKey)
	default:
		return rpctypes.ErrGRPCKeyNotFound
	}
}

// checkIntervals is etcd's rule against conflicting writes in one list of
// ops, applied level by level: the deletes of this level are collected
// first; then each nested txn in order contributes its puts (a put already
// put by an earlier nested txn, or inside a delete collected so far, is a
// duplicate, except that the failure branch may put what the success
// branch of the same txn puts) and then its deletes; last come this
// level's puts, checked the same way. A put in an earlier nested txn and a
// delete of the same key in a later one is therefore allowed, as in etcd.
// Intervals use etcd's own interval tree (pkg/v3/adt) so that degenerate
// ranges (range_end "\x00" or below the key) behave exactly as in etcd.
func checkIntervals(reqs []*pb.RequestOp) (map[string]struct{}, adt.IntervalTree, error) {
	dels := adt.NewIntervalTree()
	for _, req := range reqs {
		d := req.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		if len(d.RangeEnd) != 0 {
			dels.Insert(adt.NewStringAffineInterval(string(d.Key), string(d.RangeEnd)), struct{}{})
		} else {
			dels.Insert(adt.NewStringAffinePoint(string(d.Key)), struct{}{})
		}
	}
	conflicts := func(puts map[string]struct{}, k string) bool {
		_, dup := puts[k]
		return dup || dels.Intersects(adt.NewStringAffinePoint(k))
	}
	puts := make(map[string]struct{})
	for _, req := range reqs {
		t := req.GetRequestTxn()
		if t == nil {
			continue
		}
		putsThen, delsThen, err := checkIntervals(t.GetSuccess())
		if err != nil {
			return nil, dels, err
		}
		putsElse, delsElse, err := checkIntervals(t.GetFailure())
		if err != nil {
			return nil, dels, err
		}
		for k := range putsThen {
			if conflicts(puts, k) {
				return nil, dels, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, then := putsThen[k]; !then {
					return nil, dels, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if dels.Intersects(adt.NewStringAffinePoint(k)) {
				return nil, dels, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		all := adt.NewStringAffineInterval("\x00", "")
		dels.Union(delsThen, all)
		dels.Union(delsElse, all)
	}
	for _, req := range reqs {
		p := req.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if conflicts(puts, k) {
			return nil, dels, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
