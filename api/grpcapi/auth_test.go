package grpcapi

import (
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAuthDisabled checks the Auth service answers as an etcd with auth
// disabled: a client configured with a user name connects and works, the
// status says disabled, the lists are empty, named users and roles are not
// found, and what would create auth state is refused as unsupported.
func TestAuthDisabled(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := ctxT(t)

	// clientv3 calls Authenticate when dialling with a user name, and goes
	// on without a token on etcd's "authentication is not enabled".
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.addr},
		DialTimeout: 5 * time.Second,
		Username:    "root",
		Password:    "secret",
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("dial with a user name: %v", err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put through a client with a user name: %v", err)
	}
	if resp, err := cli.Get(ctx, "k"); err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get through a client with a user name: %v, %v", resp, err)
	}

	_, err = e.cli.Authenticate(ctx, "root", "secret")
	wantErr(t, err, rpctypes.ErrAuthNotEnabled)

	st, err := e.cli.AuthStatus(ctx)
	if err != nil {
		t.Fatalf("AuthStatus: %v", err)
	}
	if st.Enabled || st.AuthRevision != authRevision {
		t.Errorf("AuthStatus: enabled %v revision %d, want false, %d", st.Enabled, st.AuthRevision, authRevision)
	}
	checkHeader(t, st.Header)
	if st.Header.Revision != e.b.Header().Revision {
		t.Errorf("AuthStatus header revision %d, want the member's %d", st.Header.Revision, e.b.Header().Revision)
	}

	if _, err := e.cli.AuthDisable(ctx); err != nil {
		t.Errorf("AuthDisable with auth disabled: %v, want success as etcd", err)
	}
	users, err := e.cli.UserList(ctx)
	if err != nil || len(users.Users) != 0 {
		t.Errorf("UserList: %v, %v; want no users", users, err)
	}
	roles, err := e.cli.RoleList(ctx)
	if err != nil || len(roles.Roles) != 0 {
		t.Errorf("RoleList: %v, %v; want no roles", roles, err)
	}

	_, err = e.cli.UserGet(ctx, "alice")
	wantErr(t, err, rpctypes.ErrUserNotFound)
	_, err = e.cli.UserDelete(ctx, "alice")
	wantErr(t, err, rpctypes.ErrUserNotFound)
	_, err = e.cli.UserChangePassword(ctx, "alice", "pw")
	wantErr(t, err, rpctypes.ErrUserNotFound)
	_, err = e.cli.UserGrantRole(ctx, "alice", "r")
	wantErr(t, err, rpctypes.ErrUserNotFound)
	_, err = e.cli.UserRevokeRole(ctx, "alice", "r")
	wantErr(t, err, rpctypes.ErrUserNotFound)
	_, err = e.cli.RoleGet(ctx, "r")
	wantErr(t, err, rpctypes.ErrRoleNotFound)
	_, err = e.cli.RoleDelete(ctx, "r")
	wantErr(t, err, rpctypes.ErrRoleNotFound)
	_, err = e.cli.RoleGrantPermission(ctx, "r", "a", "b", clientv3.PermissionType(clientv3.PermRead))
	wantErr(t, err, rpctypes.ErrRoleNotFound)
	_, err = e.cli.RoleRevokePermission(ctx, "r", "a", "b")
	wantErr(t, err, rpctypes.ErrRoleNotFound)

	auth := pb.NewAuthClient(e.cli.ActiveConnection())
	for name, call := range map[string]func() error{
		"AuthEnable": func() error { _, err := auth.AuthEnable(ctx, &pb.AuthEnableRequest{}); return err },
		"UserAdd": func() error {
			_, err := auth.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "root", Password: "x"})
			return err
		},
		"RoleAdd": func() error { _, err := auth.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "root"}); return err },
	} {
		if code := status.Code(call()); code != codes.Unimplemented {
			t.Errorf("%s: code %v, want Unimplemented", name, code)
		}
	}
}
