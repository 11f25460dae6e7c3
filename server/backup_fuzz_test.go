package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/metcd/metcd/kvstore"
	"github.com/metcd/metcd/lease"
	"github.com/metcd/metcd/mvcc"
	"github.com/metcd/metcd/storage/memory"
)

// wrapBackup lays a state stream out as a backup file: padding, the
// stream's length and the SHA-256 of everything before.
func wrapBackup(stream []byte) []byte {
	b := append(append([]byte(nil), stream...), make([]byte, backupPadding(int64(len(stream))))...)
	b = binary.BigEndian.AppendUint64(b, uint64(len(stream)))
	h := sha256.Sum256(b)
	return append(b, h[:]...)
}

// seedStream is the state stream of a small store: keys with history, a
// lease with a key, a member and an alarm (which a restore must drop).
func seedStream(f *testing.F) []byte {
	eng := memory.New()
	st, err := kvstore.Open(eng)
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	l, err := lease.New(eng, lease.Options{})
	if err != nil {
		f.Fatal(err)
	}
	mv, err := mvcc.Open(eng, mvcc.Options{LeaseExists: l.Exists, Leases: l})
	if err != nil {
		f.Fatal(err)
	}
	txn := st.NewTxn()
	if _, err := l.Grant(txn.Batch(), 7, 60); err != nil {
		f.Fatal(err)
	}
	for i, p := range []*pb.PutRequest{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("a"), Value: []byte("2")},
		{Key: []byte("b"), Value: []byte("3"), Lease: 7},
	} {
		w := mv.Write(txn.Batch())
		if _, err := w.Put(p); err != nil {
			f.Fatalf("put %d: %v", i, err)
		}
		w.End()
	}
	if err := txn.PutMember(kvstore.Member{ID: 1, PeerURL: "http://127.0.0.1:1"}); err != nil {
		f.Fatal(err)
	}
	txn.SetAlarm(kvstore.Alarm{MemberID: 1, Type: 1}, true)
	if err := txn.Commit(9, false); err != nil {
		f.Fatal(err)
	}
	v, err := st.View()
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	var buf bytes.Buffer
	if _, err := v.WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzLoadBackupFile feeds loadBackupFile (metcd --restore-from) arbitrary
// files: either the fuzz bytes as the whole file (mode odd), or as the
// state stream inside a well-formed backup wrapper (mode even), so that
// inputs get past the SHA-256 to the stream decoder. It must refuse with a
// "restore:" error or load a key space a member can start on: no
// membership, no alarms, no applied index.
func FuzzLoadBackupFile(f *testing.F) {
	stream := seedStream(f)
	f.Add(byte(0), stream)
	f.Add(byte(1), wrapBackup(stream))
	f.Add(byte(0), stream[:len(stream)/2])
	f.Add(byte(1), wrapBackup(stream)[:512])
	f.Add(byte(0), []byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, mode byte, data []byte) {
		file := data
		if mode%2 == 0 {
			file = wrapBackup(data)
		}
		fh, err := os.CreateTemp(dir, "backup-*.db")
		if err != nil {
			t.Fatal(err)
		}
		path := fh.Name()
		defer os.Remove(path)
		_, err = fh.Write(file)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		eng := memory.New()
		defer eng.Close()
		if err := loadBackupFile(path, eng); err != nil {
			if !strings.HasPrefix(err.Error(), "restore: ") {
				t.Fatalf("loadBackupFile: %v, want a restore: error", err)
			}
			return
		}
		st, err := kvstore.Open(eng)
		if err != nil {
			t.Fatalf("a loaded backup does not open: %v", err)
		}
		members, removed, err := st.Members()
		alarms, aerr := st.Alarms()
		if err != nil || aerr != nil || len(members) != 0 || len(removed) != 0 || len(alarms) != 0 || st.Applied() != 0 {
			t.Fatalf("a loaded backup keeps cluster state: members %v removed %v alarms %v applied %d (%v, %v)", members, removed, alarms, st.Applied(), err, aerr)
		}
	})
}
