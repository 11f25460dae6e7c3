package freeport

import (
	"fmt"
	"net"
	"sync"
)

// reserved are never handed out: a real etcd may be using them.
var reserved = map[int]bool{2379: true, 2380: true}

var (
	mu     sync.Mutex
	handed = map[int]bool{} // every port this process was given
)

// Take returns n distinct free ports, none handed out before by this
// process. Its listeners are held until all n are found, so the kernel
// cannot offer one twice within a call, and the record of earlier calls
// keeps a later member from getting the port of an earlier one whose
// listener was closed (two members of one cluster once got the same peer
// port that way).
func Take(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > n+100 {
			return nil, fmt.Errorf("freeport: could not find %d free ports", n)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; !reserved[p] && !handed[p] {
			handed[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// URLs returns n distinct http://127.0.0.1:<port> URLs on ports from Take,
// for members' peer and client URLs.
func URLs(n int) ([]string, error) {
	ports, err := Take(n)
	if err != nil {
		return nil, err
	}
	urls := make([]string, n)
	for i, p := range ports {
		urls[i] = URL(p)
	}
	return urls, nil
}

// URL is the loopback http URL of port, as URLs writes it.
func URL(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }
