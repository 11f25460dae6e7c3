package metrics

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

// LibraryPrefixes name the families of the default registry that metcd's
// own code drives, through the etcd libraries it runs.
var LibraryPrefixes = []string{
	"etcd_disk_wal_",            // wal: fsync and write latency, bytes written
	"etcd_snap_",                // snap: snapshot file and received-snapshot fsyncs
	"etcd_debugging_snap_save_", // snap: snapshot save timing
	"etcd_network_",             // rafthttp: peer traffic, failures, round trips
}

// NewRegistry returns a registry holding Go's and the process's metrics
// and cs.
func NewRegistry(cs ...prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	cs = append([]prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, cs...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// Gatherer returns reg's metrics followed by the LibraryPrefixes families
// of the default registry, less any family reg has too: a member's own
// figure wins over a library's of the same name, and /metrics never fails
// for a family gathered twice.
func Gatherer(reg prometheus.Gatherer) prometheus.Gatherer {
	lib := Only(prometheus.DefaultGatherer, LibraryPrefixes...)
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		own, err := reg.Gather()
		if err != nil {
			return own, err
		}
		names := make(map[string]bool, len(own))
		for _, mf := range own {
			names[mf.GetName()] = true
		}
		more, err := lib.Gather()
		for _, mf := range more {
			if !names[mf.GetName()] {
				own = append(own, mf)
			}
		}
		slices.SortFunc(own, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
		return own, err
	})
}

// Only returns a gatherer of g's families whose names start with one of
// prefixes.
func Only(g prometheus.Gatherer, prefixes ...string) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		kept := mfs[:0]
		for _, mf := range mfs {
			for _, p := range prefixes {
				if strings.HasPrefix(mf.GetName(), p) {
					kept = append(kept, mf)
					break
				}
			}
		}
		return kept, err
	})
}
