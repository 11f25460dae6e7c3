package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

var (
	descSent = prometheus.NewDesc("etcd_network_client_grpc_sent_bytes_total",
		"The total number of bytes sent to grpc clients.", nil, nil)
	descReceived = prometheus.NewDesc("etcd_network_client_grpc_received_bytes_total",
		"The total number of bytes received from grpc clients.", nil, nil)
)

// ClientBytes counts the bytes of the gRPC messages a member sends to and
// receives from its clients, encoded and before compression, under etcd's
// names. etcd counts them in its server codec, and so does this: install
// ServerOption on the member's gRPC server and register ClientBytes.
type ClientBytes struct {
	sent, received atomic.Uint64
}

// ServerOption makes the gRPC server encode with gRPC's proto codec,
// counting as it goes.
func (b *ClientBytes) ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(countingCodec{CodecV2: encoding.GetCodecV2(proto.Name), b: b})
}

// Describe implements prometheus.Collector.
func (b *ClientBytes) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSent
	ch <- descReceived
}

// Collect implements prometheus.Collector.
func (b *ClientBytes) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(b.sent.Load()))
	ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(b.received.Load()))
}

type countingCodec struct {
	encoding.CodecV2
	b *ClientBytes
}

func (c countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	out, err := c.CodecV2.Marshal(v)
	if err == nil {
		c.b.sent.Add(uint64(out.Len()))
	}
	return out, err
}

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c.b.received.Add(uint64(data.Len()))
	return c.CodecV2.Unmarshal(data, v)
}
