package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// target is one client's view of the system under test: the two calls
// every protocol has. A target that also implements txnTarget can run the
// txn workload, and one that implements batchPutter prefills in batches.
//
// Get reports a missing key with errNotFound; any other error is counted as
// a failed request, classified by errorKind. Implementations must be safe
// for concurrent use. If a target is also an io.Closer it is closed at the
// end of the run.
type target interface {
	Put(ctx context.Context, key, value []byte) error
	Get(ctx context.Context, key []byte) error
}

// casCompare is the condition of a compare-and-swap: the key's mod revision
// equals modRev (0: the key does not exist), or with byValue, the key's
// value equals value.
type casCompare struct {
	byValue bool
	modRev  int64
	value   []byte
}

// casResult is the outcome of a compare-and-swap: whether the put was made,
// and the key's mod revision after it (the put's revision, or the current
// one if the compare failed; 0 for an absent key).
type casResult struct {
	Swapped bool
	ModRev  int64
}

// txnTarget can do a compare-and-swap in one request: if c holds, put value
// at key, else read key.
type txnTarget interface {
	CAS(ctx context.Context, key, value []byte, c casCompare) (casResult, error)
}

// batchPutter puts many keys (all with the same value) in one request.
type batchPutter interface {
	PutBatch(ctx context.Context, keys [][]byte, value []byte) error
}

// errNotFound is what Get returns for an absent key (not a failure).
var errNotFound = errors.New("key not found")

// statusError is an unexpected HTTP status.
type statusError struct {
	Code int
	Body string // start of the response body, for the error sample
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Code, http.StatusText(e.Code), e.Body)
}

// errorKind names the class of err for the report: "http 503", "timeout",
// "etcdserver: request timed out", "grpc Unavailable", "connection
// refused", ... A small fixed set, so the report stays short.
func errorKind(err error) string {
	var se *statusError
	var ne net.Error
	var ee rpctypes.EtcdError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("http %d", se.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &ee):
		return ee.Error() // etcd's fixed error descriptions
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		if st.Code() == codes.DeadlineExceeded {
			return "timeout"
		}
		return "grpc " + st.Code().String()
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	return "other"
}

// httpTarget speaks metcd's HTTP API to one endpoint: PUT /<key> with the
// value as body (204 expected), GET /<key> (200, or 404 for absent keys).
type httpTarget struct {
	client   *http.Client
	base     string // endpoint URL without trailing '/'
	getQuery string // "" or "?consistency=serializable"
}

// newHTTPTransport returns the transport shared by all HTTP targets: at most
// conns connections per endpoint (0: no limit, which in practice means one
// per concurrent client), with enough idle connections kept that a client
// reuses its connection rather than dialing per request.
func newHTTPTransport(conns, clients int) *http.Transport {
	idle := clients
	if conns > 0 && conns < idle {
		idle = conns
	}
	if idle < 2 {
		idle = 2
	}
	return &http.Transport{
		Proxy:               nil, // a benchmark must not go through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:     conns,
		MaxIdleConns:        0, // no global limit; the per-host one applies
		MaxIdleConnsPerHost: idle,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

func newHTTPTarget(client *http.Client, endpoint string, serializable bool) (*httpTarget, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %v", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q: want a URL like http://127.0.0.1:12380", endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("endpoint %q: must not have a query or fragment", endpoint)
	}
	t := &httpTarget{client: client, base: strings.TrimSuffix(u.String(), "/")}
	if serializable {
		t.getQuery = "?consistency=serializable"
	}
	return t, nil
}

// keyURL is the request URL for key. Keys are escaped as a path (so '/'
// stays a separator, as in the API).
func (t *httpTarget) keyURL(key []byte) string {
	return t.base + (&url.URL{Path: "/" + string(key)}).EscapedPath()
}

func (t *httpTarget) Put(ctx context.Context, key, value []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.keyURL(key), bytes.NewReader(value))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	return finish(resp, false)
}

func (t *httpTarget) Get(ctx context.Context, key []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.keyURL(key)+t.getQuery, nil)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	return finish(resp, true)
}

// finish reads the whole body (the value, for a GET: the request is not done
// until it has arrived, and the connection can only be reused after) and
// maps the status to an error.
func finish(resp *http.Response, get bool) error {
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, err := io.Copy(io.Discard, resp.Body)
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if get && resp.StatusCode == http.StatusNotFound {
		return errNotFound
	}
	return &statusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
}
