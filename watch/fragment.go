package watch

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// eventsField is the field number of WatchResponse.events.
const eventsField = 11

// Fragments splits resp, for a watcher that asked for fragment, into
// responses of fewer than maxBytes encoded bytes each, as etcd's watch
// stream does (its limit is exclusive): a response below it, or that has
// fewer than two events, is returned alone; otherwise every part but the last has Fragment set, and
// each part holds at least one event (an event larger than maxBytes goes
// alone). The parts share resp's header and events.
func Fragments(resp *pb.WatchResponse, maxBytes int) []*pb.WatchResponse {
	if len(resp.Events) < 2 || proto.Size(resp) < maxBytes {
		return []*pb.WatchResponse{resp}
	}
	part := func(evs []*mvccpb.Event, more bool) *pb.WatchResponse {
		return &pb.WatchResponse{
			Header:          resp.Header,
			WatchId:         resp.WatchId,
			Created:         resp.Created,
			Canceled:        resp.Canceled,
			CompactRevision: resp.CompactRevision,
			CancelReason:    resp.CancelReason,
			Fragment:        more,
			Events:          evs,
		}
	}
	// Size of a part without events, with the fragment flag set (the last
	// part, without it, is two bytes smaller).
	base := proto.Size(part(nil, true))
	var out []*pb.WatchResponse
	start, size := 0, base
	for i, ev := range resp.Events {
		n := protowire.SizeTag(eventsField) + protowire.SizeBytes(proto.Size(ev))
		if i > start && size+n >= maxBytes {
			out = append(out, part(resp.Events[start:i:i], true))
			start, size = i, base
		}
		size += n
	}
	return append(out, part(resp.Events[start:], false))
}
