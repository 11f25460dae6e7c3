package grpcapi

import (
	"io"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestLearnerServesOnlyWhatEtcdAllows: on a learner, Status, serializable
// Range and the Snapshot stream are served; every other call and stream
// is refused with etcd's "rpc not supported for learner", as etcd's
// interceptors refuse them. Once the member is a voter, they are served.
func TestLearnerServesOnlyWhatEtcdAllows(t *testing.T) {
	e := newTestEnv(t, Options{})
	e.put("k", "v")
	backup := etcdLayout(3)
	e.b.backup.Store(&backup)
	e.b.learner.Store(true)
	ctx := ctxT(t)
	conn := e.cli.ActiveConnection()
	kv, maint, cluster := pb.NewKVClient(conn), pb.NewMaintenanceClient(conn), pb.NewClusterClient(conn)

	if _, err := maint.Status(ctx, &pb.StatusRequest{}); err != nil {
		t.Errorf("Status on a learner: %v", err)
	}
	if r, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k"), Serializable: true}); err != nil || len(r.Kvs) != 1 {
		t.Errorf("serializable Range on a learner: %v, %v", r, err)
	}
	snap, err := maint.Snapshot(ctx, &pb.SnapshotRequest{})
	if err == nil {
		for err == nil {
			_, err = snap.Recv()
		}
	}
	if err != io.EOF {
		t.Errorf("Snapshot on a learner: %v, want the whole stream", err)
	}

	refused := map[string]func() error{
		"linearizable Range": func() error { _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("k")}); return err },
		"Put":                func() error { _, err := kv.Put(ctx, &pb.PutRequest{Key: []byte("k")}); return err },
		"MemberList":         func() error { _, err := cluster.MemberList(ctx, &pb.MemberListRequest{}); return err },
		"MemberAdd": func() error {
			_, err := cluster.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}})
			return err
		},
		"Alarm": func() error { _, err := maint.Alarm(ctx, &pb.AlarmRequest{}); return err },
		"LeaseLeases": func() error {
			_, err := pb.NewLeaseClient(conn).LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
			return err
		},
		"health Check": func() error {
			_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		},
		"Watch": func() error {
			ws, err := pb.NewWatchClient(conn).Watch(ctx)
			if err == nil {
				_, err = ws.Recv()
			}
			return err
		},
		"LeaseKeepAlive": func() error {
			ka, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
			if err == nil {
				_, err = ka.Recv()
			}
			return err
		},
	}
	for name, call := range refused {
		if err := call(); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNotSupportedForLearner) {
			t.Errorf("%s on a learner: %v, want %v", name, err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
	}

	e.b.learner.Store(false)
	for _, name := range []string{"linearizable Range", "MemberList", "Alarm"} {
		if err := refused[name](); err != nil {
			t.Errorf("%s on a voter: %v", name, err)
		}
	}
}
