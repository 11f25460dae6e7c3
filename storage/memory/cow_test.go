package memory_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/metcd/metcd/storage"
	"github.com/metcd/metcd/storage/memory"
)

// genKey is written by every batch with the batch's generation, so a
// snapshot tells which model state it must equal.
var genKey = []byte("\xff\xffgen")

// TestCOWRandom: one writer commits random batches of puts and deletes
// (runs within key families, as mvcc writes, to exercise path hints, plus
// mass deletes and refills to split, merge and collapse nodes), while
// readers take snapshots and iterators (both directions, random bounds,
// some paused half-way across later commits, some snapshots kept open
// for many commits) and check each reads exactly the model state of its
// generation.
func TestCOWRandom(t *testing.T) {
	dur := 2 * time.Second
	if s := os.Getenv("COW_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatal(err)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	// Key space: 8 families of 400 keys each.
	fams := []string{"a/", "b/", "k\x00", "k\x01", "rev/", "idx/", "\x00\x00", "zz"}
	perFam, maxGen := 400, 1<<62
	if s := os.Getenv("COW_PERFAM"); s != "" {
		perFam, _ = strconv.Atoi(s)
	}
	if s := os.Getenv("COW_MAXGEN"); s != "" {
		maxGen, _ = strconv.Atoi(s)
	}
	var keys [][]byte
	for _, f := range fams {
		for i := range perFam {
			keys = append(keys, fmt.Appendf(nil, "%s%05d", f, i*3))
		}
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	nk := len(keys)

	e := memory.New()
	defer e.Close()

	// models[g] is the value of each key (index into keys) after
	// generation g; "" is absent. Written only by the writer, appended
	// before the commit that makes it visible.
	var mu sync.RWMutex
	models := [][]string{make([]string, nk)}
	model := func(g int) []string {
		mu.RLock()
		defer mu.RUnlock()
		if g >= len(models) {
			return nil
		}
		return models[g]
	}
	{
		b := e.NewBatch()
		b.Put(genKey, []byte("0"))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}

	stop := make(chan struct{})
	var failed atomic.Bool
	var fails sync.Mutex
	fail := func(format string, args ...any) {
		fails.Lock()
		defer fails.Unlock()
		if !failed.Swap(true) {
			t.Errorf(format, args...)
		}
	}

	var wg sync.WaitGroup
	var gens atomic.Int64
	wg.Add(1)
	go func() { // writer
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		cur := make([]string, nk)
		for g := 1; ; g++ {
			select {
			case <-stop:
				return
			default:
			}
			if g > maxGen {
				<-stop
				return
			}
			b := e.NewBatch()
			next := slices.Clone(cur)
			switch r := rng.IntN(20); {
			case r == 0: // mass delete of a contiguous range
				lo := rng.IntN(nk)
				hi := min(nk, lo+rng.IntN(nk/2)+1)
				for i := lo; i < hi; i++ {
					b.Delete(keys[i])
					next[i] = ""
				}
			case r == 1: // mass fill
				for i := range nk {
					if rng.IntN(2) == 0 {
						v := fmt.Sprintf("g%d-%d", g, i)
						b.Put(keys[i], []byte(v))
						next[i] = v
					}
				}
			default: // runs within families, in random directions
				for range rng.IntN(6) + 1 {
					i := rng.IntN(nk)
					n := rng.IntN(40) + 1
					step := 1
					if rng.IntN(4) == 0 {
						step = -1
					}
					for ; n > 0 && i >= 0 && i < nk; n, i = n-1, i+step {
						if rng.IntN(3) == 0 {
							b.Delete(keys[i])
							next[i] = ""
						} else {
							v := fmt.Sprintf("g%d-%d", g, i)
							b.Put(keys[i], []byte(v))
							next[i] = v
						}
					}
				}
			}
			b.Put(genKey, []byte(strconv.Itoa(g)))
			mu.Lock()
			models = append(models, next)
			mu.Unlock()
			if err := b.Commit(false); err != nil {
				fail("commit: %v", err)
				return
			}
			cur = next
			gens.Store(int64(g))
			if g%64 == 0 {
				time.Sleep(time.Microsecond)
			}
		}
	}()

	randKey := func(rng *rand.Rand) []byte {
		switch rng.IntN(10) {
		case 0:
			return nil
		case 1: // between keys
			return append(slices.Clone(keys[rng.IntN(nk)]), 0)
		case 2: // a family prefix
			return []byte(fams[rng.IntN(len(fams))])
		case 3:
			return []byte{}
		case 4:
			return []byte("\xff\xff\xff")
		default:
			return keys[rng.IntN(nk)]
		}
	}
	want := func(m []string, opts storage.IterOptions) []string {
		var out []string
		for i, k := range keys {
			if m[i] == "" ||
				(opts.Lower != nil && bytes.Compare(k, opts.Lower) < 0) ||
				(opts.Upper != nil && bytes.Compare(k, opts.Upper) >= 0) {
				continue
			}
			out = append(out, string(k)+"="+m[i])
		}
		if opts.Reverse {
			slices.Reverse(out)
		}
		return out
	}
	// scan reads it fully; pause, if set, is called half-way.
	scan := func(it storage.Iterator, pause func()) ([]string, error) {
		defer it.Close()
		var out []string
		n := 0
		for it.Next() {
			n++
			if n == 20 && pause != nil {
				pause()
			}
			if bytes.Equal(it.Key(), genKey) {
				continue
			}
			out = append(out, string(it.Key())+"="+string(it.Value()))
		}
		return out, it.Err()
	}
	randOpts := func(rng *rand.Rand) storage.IterOptions {
		return storage.IterOptions{Lower: randKey(rng), Upper: randKey(rng), Reverse: rng.IntN(2) == 0}
	}
	waitGens := func(n int64) {
		target := gens.Load() + n
		for gens.Load() < target && !failed.Load() {
			select {
			case <-stop:
				return
			default:
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	var checks atomic.Int64

	// checkSnap verifies snapshot s against its generation's model.
	checkSnap := func(rng *rand.Rand, s storage.Snapshot, g int, m []string, rounds int, pause bool) {
		for range rounds {
			if rng.IntN(3) == 0 {
				i := rng.IntN(nk)
				v, err := s.Get(keys[i])
				switch {
				case m[i] == "" && err != storage.ErrNotFound:
					fail("gen %d: snapshot Get(%q) = %q, %v; want not found", g, keys[i], v, err)
				case m[i] != "" && (err != nil || string(v) != m[i]):
					fail("gen %d: snapshot Get(%q) = %q, %v; want %q", g, keys[i], v, err, m[i])
				}
				continue
			}
			opts := randOpts(rng)
			it, err := s.NewIterator(opts)
			if err != nil {
				fail("snapshot iterator: %v", err)
				return
			}
			var p func()
			if pause {
				p = func() { waitGens(3) }
			}
			got, err := scan(it, p)
			if err != nil {
				fail("snapshot scan: %v", err)
				return
			}
			if exp := want(m, opts); !slices.Equal(got, exp) {
				fail("gen %d: snapshot scan %q..%q rev=%v: got %d items, want %d\n got %q\nwant %q",
					g, opts.Lower, opts.Upper, opts.Reverse, len(got), len(exp), head(got), head(exp))
			}
			checks.Add(1)
		}
	}

	readers := 8
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(r)+2))
			var kept []storage.Snapshot
			var keptGen []int
			for !failed.Load() {
				select {
				case <-stop:
					for _, s := range kept {
						s.Close()
					}
					return
				default:
				}
				switch rng.IntN(5) {
				case 0, 1: // a snapshot, checked now, maybe kept for later
					s, err := e.NewSnapshot()
					if err != nil {
						fail("snapshot: %v", err)
						return
					}
					gv, err := s.Get(genKey)
					if err != nil {
						fail("snapshot gen: %v", err)
						return
					}
					g, _ := strconv.Atoi(string(gv))
					m := model(g)
					checkSnap(rng, s, g, m, 3, rng.IntN(4) == 0)
					if len(kept) < 4 && rng.IntN(4) == 0 {
						kept, keptGen = append(kept, s), append(keptGen, g)
					} else {
						s.Close()
					}
				case 2: // a kept snapshot, checked again after later commits
					if len(kept) == 0 {
						continue
					}
					i := rng.IntN(len(kept))
					checkSnap(rng, kept[i], keptGen[i], model(keptGen[i]), 2, false)
					if rng.IntN(3) == 0 {
						kept[i].Close()
						kept = slices.Delete(kept, i, i+1)
						keptGen = slices.Delete(keptGen, i, i+1)
					}
				case 3: // an engine iterator: its state is one between two Gets
					g1 := getGen(e)
					opts := randOpts(rng)
					it, err := e.NewIterator(opts)
					if err != nil {
						fail("iterator: %v", err)
						return
					}
					g2 := getGen(e)
					var p func()
					if rng.IntN(4) == 0 {
						p = func() { waitGens(2) }
					}
					got, err := scan(it, p)
					if err != nil {
						fail("scan: %v", err)
						return
					}
					ok := false
					for g := g1; g <= g2 && !ok; g++ {
						ok = slices.Equal(got, want(model(g), opts))
					}
					if !ok {
						fail("engine iterator %q..%q rev=%v matches no generation in [%d, %d]: got %q, want (g1) %q",
							opts.Lower, opts.Upper, opts.Reverse, g1, g2, head(got), head(want(model(g1), opts)))
					}
					checks.Add(1)
				case 4: // engine Gets under RLock, against the live tree
					for range 20 {
						i := rng.IntN(nk)
						g1 := getGen(e)
						v, err := e.Get(keys[i])
						g2 := getGen(e)
						ok := false
						for g := g1; g <= g2 && !ok; g++ {
							m := model(g)
							ok = (m[i] == "" && err == storage.ErrNotFound) || (m[i] != "" && err == nil && string(v) == m[i])
						}
						if !ok {
							fail("engine Get(%q) = %q, %v: matches no generation in [%d, %d]", keys[i], v, err, g1, g2)
						}
					}
				}
			}
		}()
	}
	select {
	case <-time.After(dur):
	case <-func() chan struct{} {
		c := make(chan struct{})
		go func() {
			for !failed.Load() {
				time.Sleep(10 * time.Millisecond)
			}
			close(c)
		}()
		return c
	}():
	}
	close(stop)
	wg.Wait()
	t.Logf("%d generations, %d scans checked", gens.Load(), checks.Load())
}

func getGen(e *memory.Engine) int {
	v, err := e.Get(genKey)
	if err != nil {
		panic(err)
	}
	g, _ := strconv.Atoi(string(v))
	return g
}

func head(s []string) []string {
	if len(s) > 6 {
		return s[:6]
	}
	return s
}
