package grpcapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// snapshotChunkBytes is the blob size of Snapshot responses (etcd's
// snapshotSendBufferSize).
const snapshotChunkBytes = 32 * 1024

// maintenanceServer is etcd's Maintenance service.
type maintenanceServer struct {
	pb.UnsafeMaintenanceServer
	b              Backend
	storageVersion string
}

func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := s.b.Alarm(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *maintenanceServer) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := s.b.Status(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *maintenanceServer) Defragment(ctx context.Context, r *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	resp, err := s.b.Defragment(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *maintenanceServer) Hash(ctx context.Context, r *pb.HashRequest) (*pb.HashResponse, error) {
	resp, err := s.b.Hash(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := s.b.HashKV(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	resp, err := s.b.MoveLeader(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return resp, nil
}

// Downgrade is not supported: metcd has one storage version.
func (s *maintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "metcd: downgrade is not supported")
}

// Snapshot streams the backend's backup as etcd does: blobs of 32 KiB with
// the bytes remaining after each, and, when the backup has etcd's layout
// (a multiple of 512 bytes followed by its SHA-256), the checksum as a
// last message of its own with remaining_bytes 0. Like etcd, responses
// carry no header and every one carries the storage version. clientv3
// concatenates the blobs, so the file it writes is the backup, byte for
// byte.
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	rc, size, err := s.b.Backup(srv.Context())
	if err != nil {
		return toGRPCError(err)
	}
	defer rc.Close()

	data := size
	if size >= sha256.Size && size%512 == sha256.Size {
		data = size - sha256.Size
	}
	var sent int64
	send := func(n int, remaining int64) error {
		buf := make([]byte, n) // not reused: Send may keep it
		if _, err := io.ReadFull(rc, buf); err != nil {
			return toGRPCError(fmt.Errorf("metcd: backup shorter than its size %d: %w", size, err))
		}
		sent += int64(n)
		return srv.Send(&pb.SnapshotResponse{
			RemainingBytes: uint64(remaining),
			Blob:           buf,
			Version:        s.storageVersion,
		})
	}
	for sent < data {
		n := int(min(snapshotChunkBytes, data-sent))
		if err := send(n, data-sent-int64(n)); err != nil {
			return err
		}
	}
	if data < size {
		if err := send(int(size-data), 0); err != nil {
			return err
		}
	}
	// A backup longer than it said would be a corrupt file: refuse it
	// rather than truncate silently.
	if n, err := rc.Read(make([]byte, 1)); n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
		if err == nil {
			err = fmt.Errorf("metcd: backup longer than its size %d", size)
		}
		return toGRPCError(err)
	}
	return nil
}
