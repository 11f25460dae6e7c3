package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestV3Gateway drives etcd's JSON gateway (POST /v3/...) on the client
// port, as curl users of etcd do: put through a follower, range, txn,
// lease grant, member list, status, auth status and authenticate (auth
// disabled), a watch stream from a past revision,
// and etcd's error bodies ({"code":3,...} for an empty key). The curl key
// API and the gateway read the same store.
func TestV3Gateway(t *testing.T) {
	c := NewV3Cluster(t, Options{Size: 3})
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	post := func(i int, path string, body any) (int, map[string]any) {
		t.Helper()
		in, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r, err := c.Do(i, http.MethodPost, path, in)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		var out map[string]any
		if err := json.Unmarshal([]byte(r.Body), &out); err != nil {
			t.Fatalf("POST %s: %d, body %q is not JSON: %v", path, r.Code, r.Body, err)
		}
		return r.Code, out
	}
	li := c.WaitLeader(10 * time.Second)
	follower := (li + 1) % len(c.Members)

	code, put := post(follower, "/v3/kv/put", map[string]string{"key": b64("gw/a"), "value": b64("one")})
	if code != http.StatusOK || put["header"] == nil {
		t.Fatalf("put through a follower: %d %v", code, put)
	}
	rev := put["header"].(map[string]any)["revision"].(string) // int64 as a JSON string, as etcd
	c.MustGet(li, "gw/a", "one")                               // the curl API reads what the gateway wrote

	code, rng := post(li, "/v3/kv/range", map[string]string{"key": b64("gw/a")})
	kvs, _ := rng["kvs"].([]any)
	if code != http.StatusOK || len(kvs) != 1 || kvs[0].(map[string]any)["value"] != b64("one") || kvs[0].(map[string]any)["mod_revision"] != rev {
		t.Fatalf("range: %d %v, want gw/a = one at revision %s", code, rng, rev)
	}

	code, txn := post(li, "/v3/kv/txn", map[string]any{
		"compare": []any{map[string]any{"key": b64("gw/a"), "result": "EQUAL", "target": "VALUE", "value": b64("one")}},
		"success": []any{map[string]any{"request_put": map[string]string{"key": b64("gw/a"), "value": b64("two")}}},
	})
	if code != http.StatusOK || txn["succeeded"] != true {
		t.Fatalf("txn: %d %v, want succeeded", code, txn)
	}

	code, empty := post(li, "/v3/kv/range", map[string]string{"key": ""})
	if code != http.StatusBadRequest || empty["code"] != float64(3) || empty["message"] != "etcdserver: key is not provided" {
		t.Fatalf("range of an empty key: %d %v, want 400 with code 3 (InvalidArgument) and etcd's message", code, empty)
	}

	code, lease := post(li, "/v3/lease/grant", map[string]any{"TTL": 30})
	if code != http.StatusOK || lease["TTL"] != "30" || lease["ID"] == nil {
		t.Fatalf("lease grant: %d %v", code, lease)
	}
	code, ml := post(li, "/v3/cluster/member/list", map[string]any{})
	if members, _ := ml["members"].([]any); code != http.StatusOK || len(members) != 3 {
		t.Fatalf("member list: %d %v, want 3 members", code, ml)
	}
	code, st := post(follower, "/v3/maintenance/status", map[string]any{})
	if code != http.StatusOK || st["version"] != "3.7.3" || st["leader"] != strconv.FormatUint(c.Members[li].ID, 10) {
		t.Fatalf("status: %d %v", code, st)
	}

	// Auth as an etcd with auth disabled answers it.
	code, as := post(follower, "/v3/auth/status", map[string]any{})
	if code != http.StatusOK || as["enabled"] != nil || as["authRevision"] != "1" {
		t.Fatalf("auth status: %d %v, want 200, not enabled, auth revision 1", code, as)
	}
	code, au := post(li, "/v3/auth/authenticate", map[string]string{"name": "root", "password": "x"})
	if code != http.StatusBadRequest || au["code"] != float64(9) || au["message"] != "etcdserver: authentication is not enabled" {
		t.Fatalf("authenticate: %d %v, want 400 with code 9 (FailedPrecondition) and etcd's message", code, au)
	}

	// A watch from the first put's revision streams both versions of the
	// key, one JSON object per response.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"create_request": map[string]any{"key": b64("gw/a"), "start_revision": rev}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Members[follower].ClientURL+"/v3/watch", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	var values []string
	for len(values) < 2 {
		var msg gwWatchMessage
		if err := dec.Decode(&msg); err != nil {
			t.Fatalf("watch stream after %v: %v", values, err)
		}
		values = append(values, msg.values(t)...)
	}
	if fmt.Sprint(values) != "[one two]" {
		t.Fatalf("watch from revision %s: values %v, want [one two]", rev, values)
	}

	// The same watch over a websocket, as a browser makes it (etcd's
	// gateway turns the upgrade into a POST stream): the history first,
	// then a put made after the watch was created, through another member.
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, "ws"+strings.TrimPrefix(c.Members[follower].ClientURL, "http")+"/v3/watch", nil)
	if err != nil {
		t.Fatalf("websocket to /v3/watch: %v", err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, body); err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	values = nil
	for len(values) < 3 {
		var msg gwWatchMessage
		if err := ws.ReadJSON(&msg); err != nil {
			t.Fatalf("websocket watch after %v: %v", values, err)
		}
		if msg.Result.Created {
			code, put := post(li, "/v3/kv/put", map[string]string{"key": b64("gw/a"), "value": b64("three")})
			if code != http.StatusOK {
				t.Fatalf("put after the websocket watch was created: %d %v", code, put)
			}
		}
		values = append(values, msg.values(t)...)
	}
	if fmt.Sprint(values) != "[one two three]" {
		t.Fatalf("websocket watch from revision %s: values %v, want [one two three]", rev, values)
	}
}

// gwWatchMessage is one message of the gateway's watch stream: a watch
// response as JSON, or an error.
type gwWatchMessage struct {
	Result struct {
		Created bool
		Events  []struct {
			KV struct{ Value string } `json:"kv"`
		}
	}
	Error any
}

// values fails the test on an error message and returns the values of the
// events, decoded from base64.
func (m gwWatchMessage) values(t *testing.T) []string {
	t.Helper()
	if m.Error != nil {
		t.Fatalf("watch stream: error %v", m.Error)
	}
	var out []string
	for _, ev := range m.Result.Events {
		v, err := base64.StdEncoding.DecodeString(ev.KV.Value)
		if err != nil {
			t.Fatalf("watch stream: value %q: %v", ev.KV.Value, err)
		}
		out = append(out, string(v))
	}
	return out
}
