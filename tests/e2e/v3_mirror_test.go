package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestV3MakeMirror moves data between a real etcd (started in-process) and
// a metcd cluster with `etcdctl make-mirror`, both ways: the keys of a
// prefix and the changes made while the mirror runs arrive, and keys
// outside the prefix stay behind. This is the migration path README
// documents.
func TestV3MakeMirror(t *testing.T) {
	bin := buildEtcdctl(t, t.TempDir())
	etcd := v3DiffEtcd(t)
	c := NewV3Cluster(t, Options{Size: 3})
	metcd := c.V3Client(t)
	etcdEndpoint := etcd.Endpoints()[0]
	metcdEndpoint := c.Members[0].V3Endpoint()

	for _, dir := range []struct {
		name     string
		src, dst *clientv3.Client
		from, to string
	}{
		{"EtcdToMetcd", etcd, metcd, etcdEndpoint, metcdEndpoint},
		{"MetcdToEtcd", metcd, etcd, metcdEndpoint, etcdEndpoint},
	} {
		t.Run(dir.name, func(t *testing.T) {
			pfx := "mirror/" + dir.name + "/"
			want := map[string]string{}
			for i := range 30 {
				k, v := fmt.Sprintf("%sk%02d", pfx, i), fmt.Sprintf("v%d", i)
				mustV3Put(t, dir.src, k, v)
				want[k] = v
			}
			mustV3Put(t, dir.src, "elsewhere/"+dir.name, "not mirrored")

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "--endpoints", dir.from, "make-mirror", "--prefix", pfx, dir.to)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				cancel()
				cmd.Wait()
			}()
			same := func() error {
				r, err := dir.dst.Get(v3ctx(t), pfx, clientv3.WithPrefix())
				if err != nil {
					return err
				}
				got := map[string]string{}
				for _, kv := range r.Kvs {
					got[string(kv.Key)] = string(kv.Value)
				}
				if len(got) != len(want) {
					return fmt.Errorf("%d keys at the destination, want %d (make-mirror: %q)", len(got), len(want), out.String())
				}
				for k, v := range want {
					if got[k] != v {
						return fmt.Errorf("%s = %q at the destination, want %q", k, got[k], v)
					}
				}
				return nil
			}
			c.Eventually(30*time.Second, "the prefix copied", same)

			// Changes made while the mirror runs follow it.
			mustV3Put(t, dir.src, pfx+"k03", "changed")
			want[pfx+"k03"] = "changed"
			mustV3Put(t, dir.src, pfx+"late", "x")
			want[pfx+"late"] = "x"
			if _, err := dir.src.Delete(v3ctx(t), pfx+"k07"); err != nil {
				t.Fatal(err)
			}
			delete(want, pfx+"k07")
			c.Eventually(30*time.Second, "the changes mirrored", same)

			if r, err := dir.dst.Get(v3ctx(t), "elsewhere/"+dir.name); err != nil || r.Count != 0 {
				t.Fatalf("a key outside the prefix at the destination: %v %v", r, err)
			}
		})
	}
}
