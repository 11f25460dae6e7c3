package grpcapi

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/metcd/metcd/server"
)

// etcdLayout returns n random bytes followed by their SHA-256, as etcd's
// snapshot files are (n a multiple of 512).
func etcdLayout(n int) []byte {
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(data)
	return append(data, sum[:]...)
}

func TestSnapshot(t *testing.T) {
	e := newTestEnv(t, Options{StorageVersion: "3.6.0"})
	ctx := ctxT(t)
	for _, backup := range [][]byte{
		etcdLayout(3*snapshotChunkBytes + 10*512),
		etcdLayout(snapshotChunkBytes),
		bytes.Repeat([]byte("x"), 100001), // not etcd's layout: plain chunks
	} {
		e.b.backup.Store(&backup)
		sr, err := e.cli.SnapshotWithVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(sr.Snapshot)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, backup) || sr.Version != "3.6.0" {
			t.Fatalf("snapshot of %d bytes: got %d bytes, version %q", len(backup), len(got), sr.Version)
		}

		// The framing, as etcd's.
		ss, err := pb.NewMaintenanceClient(e.cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var resps []*pb.SnapshotResponse
		for {
			r, err := ss.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			resps = append(resps, r)
		}
		hasSum := len(backup)%512 == sha256.Size
		data := len(backup)
		if hasSum {
			data -= sha256.Size
		}
		sent := 0
		for i, r := range resps {
			last := i == len(resps)-1
			if hasSum && last {
				if len(r.Blob) != sha256.Size || r.RemainingBytes != 0 {
					t.Fatalf("checksum message: %d bytes, remaining %d", len(r.Blob), r.RemainingBytes)
				}
				continue
			}
			sent += len(r.Blob)
			if len(r.Blob) > snapshotChunkBytes || r.RemainingBytes != uint64(data-sent) || r.Version != "3.6.0" || r.Header != nil {
				t.Fatalf("message %d: %d bytes, remaining %d, version %q, header %v", i, len(r.Blob), r.RemainingBytes, r.Version, r.Header)
			}
		}
		if sent != data {
			t.Fatalf("%d data bytes sent, want %d", sent, data)
		}
	}

	// (Raw: clientv3 retries an unavailable member until ctx ends.)
	e.b.failWith("Backup", server.ErrStopped)
	ss, err := pb.NewMaintenanceClient(e.cli.ActiveConnection()).Snapshot(ctx, &pb.SnapshotRequest{})
	if err == nil {
		_, err = ss.Recv()
	}
	wantErr(t, rpctypes.Error(err), rpctypes.ErrStopped)
}

func TestClusterAndMaintenance(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := ctxT(t)
	ml, err := e.cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 || ml.Members[0].Name != "m1" {
		t.Fatalf("MemberList: %+v %v", ml, err)
	}
	for _, c := range []struct{ err, want error }{
		{server.ErrMemberExists, rpctypes.ErrMemberExist},
		{server.ErrIDRemoved, rpctypes.ErrMemberNotFound},
		{server.ErrBadMember, rpctypes.ErrMemberBadURLs},
	} {
		e.b.failWith("MemberAdd", c.err)
		_, err := e.cli.MemberAdd(ctx, []string{"http://127.0.0.1:2380"})
		wantErr(t, err, c.want)
	}
	for _, c := range []struct{ err, want error }{
		{server.ErrMemberNotFound, rpctypes.ErrMemberNotFound},
		{fmt.Errorf("%w: member 1 is the last voting member", server.ErrNotEnoughStartedMembers), rpctypes.ErrMemberNotEnoughStarted},
		{fmt.Errorf("%w: 1 of 2", server.ErrUnhealthy), rpctypes.ErrUnhealthy},
	} {
		e.b.failWith("MemberRemove", c.err)
		_, err = e.cli.MemberRemove(ctx, 5)
		wantErr(t, err, c.want)
	}

	st, err := e.cli.Status(ctx, e.addr)
	if err != nil || st.Version != "3.7.3" || st.Leader != testMemberID {
		t.Fatalf("Status: %+v %v", st, err)
	}
	e.put("k", "v")
	h, err := e.cli.HashKV(ctx, e.addr, 0)
	if err != nil || h.HashRevision != 2 {
		t.Fatalf("HashKV: %+v %v", h, err)
	}
	if _, err := e.cli.Defragment(ctx, e.addr); err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewMaintenanceClient(e.cli.ActiveConnection()).Downgrade(ctx, &pb.DowngradeRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Downgrade: %v", err)
	}
}
