package kvstore

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Op is the kind of a replicated request.
type Op byte

const (
	// OpPut sets a key.
	OpPut Op = 1
	// OpDelete removes a key.
	OpDelete Op = 2
)

const requestVersion = 1

// MaxKeyBytes is the longest key the store accepts. It keeps every engine
// key within bbolt's 32 KiB limit, with room for metcd's own prefixes.
const MaxKeyBytes = 16 << 10

var (
	// ErrBadRequest is returned when a proposal cannot be decoded.
	ErrBadRequest = errors.New("kvstore: malformed request")
	// ErrEmptyKey rejects a request without a key.
	ErrEmptyKey = errors.New("kvstore: empty key")
	// ErrKeyTooLong rejects a key over MaxKeyBytes.
	ErrKeyTooLong = errors.New("kvstore: key too long")
)

// ValidateKey checks a user key. Requests are checked before they are
// proposed, and again when applied, so an entry that slipped through is
// refused the same way on every member rather than failing an engine.
func ValidateKey(k []byte) error {
	switch {
	case len(k) == 0:
		return ErrEmptyKey
	case len(k) > MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrKeyTooLong, len(k), MaxKeyBytes)
	}
	return nil
}

// Request is one client write as it travels through the raft log.
type Request struct {
	// ID matches the applied result to the waiting client; 0 means no one
	// is waiting.
	ID    uint64
	Op    Op
	Key   []byte
	Value []byte
}

// Marshal encodes r compactly:
//
//	version(1) op(1) uvarint(id) uvarint(len key) key [uvarint(len value) value]
func (r *Request) Marshal() []byte {
	n := 2 + 3*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
	b := make([]byte, 0, n)
	b = append(b, requestVersion, byte(r.Op))
	b = binary.AppendUvarint(b, r.ID)
	b = binary.AppendUvarint(b, uint64(len(r.Key)))
	b = append(b, r.Key...)
	if r.Op == OpPut {
		b = binary.AppendUvarint(b, uint64(len(r.Value)))
		b = append(b, r.Value...)
	}
	return b
}

// Unmarshal decodes data into r. The key and value alias data.
func (r *Request) Unmarshal(data []byte) error {
	if len(data) < 2 {
		return fmt.Errorf("%w: %d bytes", ErrBadRequest, len(data))
	}
	if data[0] != requestVersion {
		return fmt.Errorf("%w: unknown version %d", ErrBadRequest, data[0])
	}
	r.Op = Op(data[1])
	if r.Op != OpPut && r.Op != OpDelete {
		return fmt.Errorf("%w: unknown op %d", ErrBadRequest, data[1])
	}
	rest := data[2:]
	var ok bool
	if r.ID, rest, ok = uvarint(rest); !ok {
		return fmt.Errorf("%w: bad id", ErrBadRequest)
	}
	if r.Key, rest, ok = lenPrefixed(rest); !ok {
		return fmt.Errorf("%w: bad key", ErrBadRequest)
	}
	r.Value = nil
	if r.Op == OpPut {
		if r.Value, rest, ok = lenPrefixed(rest); !ok {
			return fmt.Errorf("%w: bad value", ErrBadRequest)
		}
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrBadRequest, len(rest))
	}
	return nil
}

func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

func lenPrefixed(b []byte) ([]byte, []byte, bool) {
	n, rest, ok := uvarint(b)
	if !ok || n > uint64(len(rest)) {
		return nil, b, false
	}
	return rest[:n:n], rest[n:], true
}
