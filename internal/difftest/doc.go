// Package difftest is the shared part of metcd's differential tests, which
// run one seeded random sequence of etcd v3 KV requests against a real
// etcd and against metcd, and require the same responses and errors.
//
// Gen makes the requests: puts, deletes, ranges (every option: revisions
// past, compacted, future and negative, limits, sorts, filters, keys_only,
// count_only, serializable), txns (compares of every target and result,
// nested txns, duplicate keys, empty ops), compactions and leases, over a
// small key set with awkward bytes, invalid requests included. It is fed
// the reference answers (Observe) to aim at the live revisions.
//
//	g := difftest.NewGen(difftest.Seed(t, "SOME_SEED_ENV"), difftest.Options{})
//	// grant difftest.DefaultLeases (TTL long enough) on every side first
//	for i := range n {
//		op := g.Next()
//		want, wantErr := etcd.Do(ctx, op)
//		got, gotErr := other.Do(ctx, op)
//		if err := difftest.Compare(difftest.Result{Name: "etcd", Resp: want, Err: wantErr},
//			difftest.Result{Name: "metcd", Resp: got, Err: gotErr}); err != nil {
//			t.Fatalf("seed %d, op %d: %s: %v", seed, i, op, err)
//		}
//		g.Observe(op, want, wantErr)
//	}
//
// A Target answers an Op. Client is the Target of a gRPC server reached
// through a clientv3 connection with the raw etcdserverpb clients, so that
// requests reach it unchanged; with Barrier set it makes a member of a
// cluster answer serializable requests deterministically. Other Targets
// (a Store driven directly) live in their tests.
//
// Compare compares two answers: errors by gRPC code and message,
// responses by header revision and content, ignoring the header fields
// that name the member (cluster_id, member_id, raft_term).
//
// etcd v3.7.3 panics applying some txns that it accepts (see PanicsEtcd);
// Gen does not avoid them, so a test must not send them to etcd:
// Client.PanicsEtcd (on the etcd Client, before the txn is sent) tells
// them.
package difftest
