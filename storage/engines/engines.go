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

// openers maps an engine name to the function that opens it in a dir.
var openers = map[string]func(dir string) (storage.Engine, error){
	"memory": func(string) (storage.Engine, error) { return memory.New(), nil },
	"bolt":   func(dir string) (storage.Engine, error) { return engine(bolt.Open(dir, nil)) },
	"pebble": func(dir string) (storage.Engine, error) { return engine(pebble.Open(dir, nil)) },
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
