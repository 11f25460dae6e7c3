package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func names(t *testing.T, g prometheus.Gatherer) map[string]bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
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

	own := prometheus.NewGauge(prometheus.GaugeOpts{Name: "etcd_server_has_leader", Help: "test"})
	reg, err := NewRegistry(own)
	if err != nil {
		t.Fatal(err)
	}
	got := names(t, Gatherer(reg)) // Gather fails on a family gathered twice
	for _, n := range []string{"etcd_server_has_leader", "etcd_disk_wal_test_total", "etcd_network_test_total", "go_goroutines", "process_cpu_seconds_total"} {
		if !got[n] {
			t.Errorf("%s missing", n)
		}
	}
	for _, n := range []string{"etcd_mvcc_put_total", "etcd_debugging_lease_granted_total"} {
		if got[n] {
			t.Errorf("%s served: metcd does not drive it", n)
		}
	}
	if _, err := NewRegistry(own); err != nil {
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
