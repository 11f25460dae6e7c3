package failpoint

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// EnvVar is the environment variable read at init.
const EnvVar = "METCD_FAILPOINTS"

// The failpoints metcd has; see doc.go for where each one sits.
const (
	WALSave      = "wal-save"
	SnapSave     = "snap-save"
	StateSave    = "state-save"
	EngineCommit = "engine-commit"
)

// Names lists every failpoint, sorted.
func Names() []string {
	return []string{EngineCommit, SnapSave, StateSave, WALSave}
}

func known(name string) bool {
	for _, n := range Names() {
		if n == name {
			return true
		}
	}
	return false
}

var errnos = map[string]syscall.Errno{
	"ENOSPC": syscall.ENOSPC,
	"EIO":    syscall.EIO,
	"EROFS":  syscall.EROFS,
	"EDQUOT": syscall.EDQUOT,
}

// Error is an injected failure. It unwraps to its errno.
type Error struct {
	Name      string
	Errno     syscall.Errno
	errnoName string
}

func (e *Error) Error() string {
	return fmt.Sprintf("failpoint %s: injected I/O error (%s)", e.Name, e.errnoName)
}

// Unwrap returns the errno, so errors.Is(err, syscall.ENOSPC) works.
func (e *Error) Unwrap() error { return e.Errno }

// IsInjected reports whether err is (or wraps) an injected failure.
func IsInjected(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// point is one armed failpoint.
type point struct {
	spec      string
	after     int64  // evaluations to let pass first
	times     int64  // most failures; 0: unbounded
	file      string // act only while it exists; "": always
	errno     syscall.Errno
	errnoName string
	off       bool

	mu    sync.Mutex
	evals int64 // counted evaluations
	fired int64
}

func (p *point) eval(name string) error {
	if p.off {
		return nil
	}
	if p.file != "" {
		if _, err := os.Stat(p.file); err != nil {
			return nil
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evals++
	if p.evals <= p.after || (p.times > 0 && p.fired >= p.times) {
		return nil
	}
	p.fired++
	return &Error{Name: name, Errno: p.errno, errnoName: p.errnoName}
}

var (
	armed  atomic.Bool
	points atomic.Pointer[map[string]*point]
)

func init() {
	v, ok := os.LookupEnv(EnvVar)
	if !ok || strings.TrimSpace(v) == "" {
		return
	}
	m, err := parse(v)
	if err != nil {
		panic(fmt.Sprintf("%s=%q: %v", EnvVar, v, err))
	}
	install(m)
	if len(m) > 0 {
		fmt.Fprintf(os.Stderr, "metcd: failpoints armed from %s: %s\n", EnvVar, describe(m))
	}
}

func install(m map[string]*point) {
	if len(m) == 0 {
		points.Store(nil)
		armed.Store(false)
		return
	}
	points.Store(&m)
	armed.Store(true)
}

func describe(m map[string]*point) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = n + "=" + m[n].spec
	}
	return strings.Join(names, ";")
}

// Inject evaluates failpoint name: nil unless it is armed and its term says
// to fail now.
func Inject(name string) error {
	if !armed.Load() {
		return nil
	}
	return inject(name)
}

func inject(name string) error {
	m := points.Load()
	if m == nil {
		return nil
	}
	p, ok := (*m)[name]
	if !ok {
		return nil
	}
	return p.eval(name)
}

// Enable arms failpoints from a value in METCD_FAILPOINTS syntax in place
// of the current ones, for unit tests; restore puts the previous ones back.
// Counters start from zero.
func Enable(value string) (restore func(), err error) {
	m, err := parse(value)
	if err != nil {
		return nil, err
	}
	prev := points.Load()
	install(m)
	return func() {
		if prev == nil {
			install(nil)
			return
		}
		install(*prev)
	}, nil
}

// parse checks a METCD_FAILPOINTS value and returns its failpoints by name.
func parse(value string) (map[string]*point, error) {
	m := map[string]*point{}
	for _, item := range strings.Split(value, ";") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, term, ok := strings.Cut(item, "=")
		name, term = strings.TrimSpace(name), strings.TrimSpace(term)
		if !ok || name == "" || term == "" {
			return nil, fmt.Errorf("%q: want <name>=<term>", item)
		}
		if !known(name) {
			return nil, fmt.Errorf("unknown failpoint %q (known: %s)", name, strings.Join(Names(), ", "))
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("failpoint %q given twice", name)
		}
		p, err := parseTerm(term)
		if err != nil {
			return nil, fmt.Errorf("failpoint %s: %q: %w", name, term, err)
		}
		m[name] = p
	}
	return m, nil
}

func parseTerm(term string) (*point, error) {
	p := &point{spec: term}
	rest := term
	var seenAfter, seenTimes, seenFile bool
	for {
		switch {
		case strings.HasPrefix(rest, "after("):
			arg, r, err := parenArg(rest[len("after"):])
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseInt(arg, 10, 64)
			if err != nil || n < 0 || seenAfter {
				return nil, fmt.Errorf("after(%s): want one after(<n>) with n >= 0", arg)
			}
			p.after, seenAfter, rest = n, true, r
			continue
		case strings.HasPrefix(rest, "file("):
			arg, r, err := parenArg(rest[len("file"):])
			if err != nil {
				return nil, err
			}
			if arg == "" || seenFile {
				return nil, errors.New("file(): want one file(<path>) with a path")
			}
			p.file, seenFile, rest = arg, true, r
			continue
		}
		if i := strings.IndexByte(rest, '*'); i > 0 && isDigits(rest[:i]) {
			n, err := strconv.ParseInt(rest[:i], 10, 64)
			if err != nil || n <= 0 || seenTimes {
				return nil, fmt.Errorf("%s*: want one <n>* with n > 0", rest[:i])
			}
			p.times, seenTimes, rest = n, true, rest[i+1:]
			continue
		}
		break
	}
	switch {
	case rest == "off":
		p.off = true
	case rest == "error":
		p.errno, p.errnoName = syscall.ENOSPC, "ENOSPC"
	case strings.HasPrefix(rest, "error("):
		arg, r, err := parenArg(rest[len("error"):])
		if err != nil {
			return nil, err
		}
		e, ok := errnos[arg]
		if !ok || r != "" {
			return nil, fmt.Errorf("error(%s): want ENOSPC, EIO, EROFS or EDQUOT", arg)
		}
		p.errno, p.errnoName = e, arg
	default:
		return nil, fmt.Errorf("action %q: want error, error(<errno>) or off, after any of after(<n>), <n>*, file(<path>)", rest)
	}
	return p, nil
}

// parenArg splits "(arg)rest".
func parenArg(s string) (arg, rest string, err error) {
	if !strings.HasPrefix(s, "(") {
		return "", "", fmt.Errorf("missing ( in %q", s)
	}
	i := strings.IndexByte(s, ')')
	if i < 0 {
		return "", "", fmt.Errorf("missing ) in %q", s)
	}
	return strings.TrimSpace(s[1:i]), s[i+1:], nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
