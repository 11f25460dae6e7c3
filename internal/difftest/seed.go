package difftest

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Seed returns the seed in the environment variable env, or else one from
// the clock, and logs it with how to replay it.
func Seed(tb testing.TB, env string) uint64 {
	tb.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(env); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			tb.Fatalf("%s: %v", env, err)
		}
		seed = n
	}
	tb.Logf("seed %d (set %s to replay)", seed, env)
	return seed
}
