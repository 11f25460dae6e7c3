package metrics

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

func names(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		if out[mf.GetName()] {
			t.Errorf("%s gathered twice", mf.GetName())
		}
		out[mf.GetName()] = true
	}
	return out
}

// TestGatherer: a member's registry, plus the library families of the
// default registry, without the etcd families metcd does not drive (as
// etcd's server module registers them on import) and without Go's metrics
// twice.
func TestGatherer(t *testing.T) {
	def := func(name string) {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "test"})
		prometheus.MustRegister(c)
		t.Cleanup(func() { prometheus.Unregister(c) })
	}
	def("etcd_disk_wal_test_total")
	def("etcd_network_test_total")
	def("etcd_mvcc_put_total")
	def("etcd_debugging_lease_granted_total")
	def("etcd_network_client_grpc_sent_bytes_total") // as etcd's v3rpc registers it

	own := prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_server_has_leader", Help: "test"})
	var bytes ClientBytes
	reg, err := NewRegistry(own, &bytes)
	if err != nil {
		t.Fatal(err)
	}
	got := names(t, Gatherer(reg))
	for _, n := range []string{"etcd_server_has_leader", "etcd_disk_wal_test_total", "etcd_network_test_total", "etcd_network_client_grpc_sent_bytes_total", "go_goroutines", "process_cpu_seconds_total"} {
		if !got[n] {
			t.Errorf("%s missing", n)
		}
	}
	for _, n := range []string{"etcd_mvcc_put_total", "etcd_debugging_lease_granted_total"} {
		if got[n] {
			t.Errorf("%s served: metcd does not drive it", n)
		}
	}
	if _, err := NewRegistry(own, &ClientBytes{}); err != nil {
		t.Errorf("a second member's registry: %v", err) // each member has its own
	}
}

func TestOnly(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, n := range []string{"a_x", "ab_y", "b_z"} {
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: n, Help: "test"}))
	}
	got := names(t, Only(reg, "a_", "b_"))
	if len(got) != 2 || !got["a_x"] || !got["b_z"] {
		t.Errorf("Only(a_, b_) = %v, want a_x and b_z", got)
	}
	if got := names(t, Only(reg)); len(got) != 0 {
		t.Errorf("Only() = %v, want nothing", got)
	}
}

// TestClientBytes: the bytes of each request and response, as encoded, on
// a real gRPC server over loopback.
func TestClientBytes(t *testing.T) {
	var b ClientBytes
	gs := grpc.NewServer(b.ServerOption())
	hs := health.NewServer()
	hs.SetServingStatus("metcd-test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	defer gs.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &healthpb.HealthCheckRequest{Service: "metcd-test"}
	var sent, received int
	for i := 0; i < 3; i++ {
		resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		received += proto.Size(req)
		sent += proto.Size(resp)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&b)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetCounter().GetValue()
	}
	if got["etcd_network_client_grpc_received_bytes_total"] != float64(received) || got["etcd_network_client_grpc_sent_bytes_total"] != float64(sent) || sent == 0 {
		t.Errorf("counted %v, want received %d and sent %d", got, received, sent)
	}
}
