package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// health serves /health as etcd does: unhealthy with a raised alarm
// (unless ?exclude= names its type), without a leader, or when a read
// fails. ?serializable=true skips the leader check and reads this
// member's own state, which is what liveness probes ask for: a member cut
// off from the quorum is alive, not broken.
func (h *Handler) health(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	serializable := q.Get("serializable") == "true"
	// etcd's body, byte for byte: {"health":"true","reason":""}.
	type body struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	unhealthy := func(reason string) {
		writeCompactJSON(w, http.StatusServiceUnavailable, body{"false", reason})
	}
	st := h.b.MemberStatus()
	for _, a := range st.Alarms {
		if !slices.Contains(q["exclude"], a) {
			unhealthy("ALARM " + a)
			return
		}
	}
	if !serializable && st.LeaderID == 0 {
		unhealthy("RAFT NO LEADER")
		return
	}
	if err := h.b.ReadCheck(r.Context(), !serializable); err != nil {
		unhealthy("RANGE ERROR:" + err.Error())
		return
	}
	writeCompactJSON(w, http.StatusOK, body{"true", ""})
}

// probeCheck is one named check of /livez or /readyz.
type probeCheck struct {
	name  string
	check func(h *Handler, r *http.Request) error
}

// The checks of etcd 3.7's /livez and /readyz, under its names, in a fixed
// order (etcd lists them in map order).
var (
	livezChecks = []probeCheck{
		{"serializable_read", func(h *Handler, r *http.Request) error { return h.b.ReadCheck(r.Context(), false) }},
	}
	readyzChecks = []probeCheck{
		{"data_corruption", func(h *Handler, r *http.Request) error {
			if slices.Contains(h.b.MemberStatus().Alarms, "CORRUPT") {
				return errors.New("alarm activated: CORRUPT")
			}
			return nil
		}},
		livezChecks[0],
		{"linearizable_read", func(h *Handler, r *http.Request) error { return h.b.ReadCheck(r.Context(), true) }},
		{"non_learner", func(h *Handler, r *http.Request) error {
			id := h.b.MemberStatus().MemberID
			for _, m := range h.b.Members() {
				if m.ID == id && m.IsLearner {
					return errors.New("not supported for learner")
				}
			}
			return nil
		}},
	}
)

// handleProbes serves /livez and /readyz (Kubernetes-style probes, as
// etcd 3.6+ serves them) and each of their checks on its own path, e.g.
// /readyz/linearizable_read. A probe answers 200 "ok", with each check's
// line first under ?verbose; 503 with every check's line when one fails.
// ?exclude=<check> skips a check; an unknown name is ignored, as in etcd.
func (h *Handler) handleProbes() {
	for _, p := range []struct {
		path   string
		checks []probeCheck
	}{{"/livez", livezChecks}, {"/readyz", readyzChecks}} {
		h.mux.HandleFunc("GET "+p.path, func(w http.ResponseWriter, r *http.Request) {
			excluded := r.URL.Query()["exclude"]
			var run []probeCheck
			for _, c := range p.checks {
				if !slices.Contains(excluded, c.name) {
					run = append(run, c)
				}
			}
			h.probe(w, r, run)
		})
		for _, c := range p.checks {
			h.mux.HandleFunc("GET "+p.path+"/"+c.name, func(w http.ResponseWriter, r *http.Request) {
				h.probe(w, r, []probeCheck{c})
			})
		}
	}
}

func (h *Handler) probe(w http.ResponseWriter, r *http.Request, checks []probeCheck) {
	var out strings.Builder
	failed := false
	for _, c := range checks {
		if err := c.check(h, r); err != nil {
			failed = true
			fmt.Fprintf(&out, "[-]%s failed: %v\n", c.name, err)
		} else {
			fmt.Fprintf(&out, "[+]%s ok\n", c.name)
		}
	}
	if failed {
		httpError(w, http.StatusServiceUnavailable, strings.TrimSuffix(out.String(), "\n"))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		fmt.Fprint(w, out.String())
	}
	fmt.Fprint(w, "ok\n")
}
