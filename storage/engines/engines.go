// Package engines names the storage engines metcd can run on, for the
// --engine flag.
package engines

import (
	"fmt"
	"sort"
	"strings"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/bolt"
	"github.com/metcd/metcd/storage/leveldb"
	"github.com/metcd/metcd/storage/memory"
	"github.com/metcd/metcd/storage/pebble"
)

// Default is the engine used when --engine is not given.
const Default = "pebble"

// pebbleMemTableSize is the memtable size metcd gives Pebble instead of its
// 4 MiB default. A put writes three small records and most of them are
// overwritten soon (the key's current record, the revision counters); with
// 4 MiB a member flushes and compacts several times a second under load, and
// those bursts of writes and fsyncs show in the cluster's tail latency
// (3 members, 100 clients: p99 68-84 ms at 4 MiB, 51-56 ms at 32 MiB, same
// throughput). The cost is up to two memtables of memory and a longer WAL
// replay on restart.
const pebbleMemTableSize = 32 << 20

// pebbleCacheSize is Pebble's block cache in metcd, instead of the engine
// package's 64 MiB. Blocks are cached only as they are read, so a small data
// set does not pay for it. With 1M keys (3 members, 256-byte values, 100
// clients) 64 -> 256 MiB took the prefill from 48-50 s to 32-34 s and
// linearizable ranges from 11.5-11.7 k/s to 14.3 k/s, for about 200 MiB more
// RSS per member (465 -> 670 MiB; etcd 3.7.3 holds about 750 MiB there).
const pebbleCacheSize = 256 << 20

// openers maps an engine name to the function that opens it in a dir.
var openers = map[string]func(dir string) (storage.Engine, error){
	"memory": func(string) (storage.Engine, error) { return memory.New(), nil },
	"bolt":   func(dir string) (storage.Engine, error) { return engine(bolt.Open(dir, nil)) },
	"pebble": func(dir string) (storage.Engine, error) {
		return engine(pebble.Open(dir, &pebble.Options{MemTableSize: pebbleMemTableSize, CacheSize: pebbleCacheSize}))
	},
	"leveldb": func(dir string) (storage.Engine, error) {
		return engine(leveldb.Open(dir, nil))
	},
}

// engine converts an implementation's Open result, keeping a failed Open
// from turning into a non-nil interface that holds a nil pointer.
func engine[E storage.Engine](e E, err error) (storage.Engine, error) {
	if err != nil {
		return nil, err
	}
	return e, nil
}

// Names lists the engines, sorted.
func Names() []string {
	names := make([]string, 0, len(openers))
	for n := range openers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the opener of the named engine.
func Lookup(name string) (func(dir string) (storage.Engine, error), error) {
	open, ok := openers[name]
	if !ok {
		return nil, fmt.Errorf("unknown engine %q: choose one of %s", name, strings.Join(Names(), ", "))
	}
	return open, nil
}
