package kvstore

import (
	"errors"
	"fmt"

	"github.com/metcd/metcd/mvcc"
)

// MaxKeyBytes is the longest key the store accepts (mvcc.MaxKeyBytes).
const MaxKeyBytes = mvcc.MaxKeyBytes

var (
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
	case mvcc.StoredKeyLen(k) > MaxKeyBytes:
		return fmt.Errorf("%w: %d bytes, the limit is %d (a 0x00 byte counts twice)", ErrKeyTooLong, len(k), MaxKeyBytes)
	}
	return nil
}
