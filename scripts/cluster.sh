#!/usr/bin/env bash
# cluster.sh runs a local metcd cluster in the background, without goreman.
#
#   scripts/cluster.sh start [N]   build bin/metcd if stale, start N members (default 3),
#                                  wait for a leader, print the client URLs
#   scripts/cluster.sh stop        SIGTERM every member, SIGKILL after STOP_GRACE seconds
#   scripts/cluster.sh status      one line per member: pid, client URL, /admin/status
#   scripts/cluster.sh endpoints   the client URLs, comma-separated (for metcd-bench --endpoints)
#   scripts/cluster.sh clean       stop, then remove cluster-data/
#
# Layout (raftexample's): member i listens for peers on BASE_PEER_PORT+(i-1)*PORT_STEP
# and for clients on BASE_CLIENT_PORT+(i-1)*PORT_STEP, i.e. by default
# 12379/12380, 22379/22380, 32379/32380. Everything lives in cluster-data/ at the
# repository root: metcd-<i>.data (data dir), metcd-<i>.log, metcd-<i>.pid, and
# members (the layout the cluster was started with; stop/status read it).
# A second `start` on existing data restarts the same members with their data.
#
# Each member runs in a session of its own (setsid), so a Ctrl-C aimed at this
# script does not reach it. Where the kernel schedules by session
# (/proc/sys/kernel/sched_autogroup_enabled is 1), a busy machine then shares
# its CPU between the members and the load generator as groups, not thread by
# thread. That is fine for comparing two metcd binaries; to compare metcd with
# another system, start both the same way (cmd/metcd-benchcompare does).
#
# Environment:
#   BASE_PEER_PORT    first peer port (default 12379)
#   BASE_CLIENT_PORT  first client port (default 12380)
#   PORT_STEP         port distance between members (default 10000)
#   METCD_BIN         use this binary instead of building bin/metcd
#   METCD_FLAGS       extra flags for every member, e.g. "--snapshot-count 100000"
#   CLUSTER_DIR       where to keep pids, logs and data (default <repo>/cluster-data)
#   LEADER_TIMEOUT    seconds `start` waits for a leader (default 30)
#   STOP_GRACE        seconds `stop` waits after SIGTERM before SIGKILL (default 10)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${CLUSTER_DIR:-$ROOT/cluster-data}
BASE_PEER_PORT=${BASE_PEER_PORT:-12379}
BASE_CLIENT_PORT=${BASE_CLIENT_PORT:-12380}
PORT_STEP=${PORT_STEP:-10000}
LEADER_TIMEOUT=${LEADER_TIMEOUT:-30}
STOP_GRACE=${STOP_GRACE:-10}
MEMBERS_FILE=$DIR/members

die() {
	echo "cluster.sh: $*" >&2
	exit 1
}

usage() {
	sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# build_binary sets BIN, building bin/metcd if it is missing or older than
# go.mod, go.sum or a (non-test) Go file of a package ./cmd/metcd is built from.
build_binary() {
	if [[ -n ${METCD_BIN:-} ]]; then
		[[ -x $METCD_BIN ]] || die "METCD_BIN=$METCD_BIN is not an executable"
		BIN=$METCD_BIN
		return
	fi
	BIN=$ROOT/bin/metcd
	local stale= newer= dirs
	if [[ ! -x $BIN ]]; then
		stale="missing"
	elif ! dirs=$(cd "$ROOT" && go list -deps -f '{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}' ./cmd/metcd 2>/dev/null); then
		stale="go list failed" # let go build report why
	else
		newer=$(
			for d in $dirs; do
				find "$d" -maxdepth 1 -name '*.go' ! -name '*_test.go' -newer "$BIN" -print
			done
			find "$ROOT/go.mod" "$ROOT/go.sum" -newer "$BIN" -print 2>/dev/null
		)
		[[ -n $newer ]] && stale="older than ${newer%%$'\n'*}"
	fi
	if [[ -n $stale ]]; then
		echo "building bin/metcd ($stale)"
		mkdir -p "$ROOT/bin"
		(cd "$ROOT" && go build -o "$BIN" ./cmd/metcd) || die "go build ./cmd/metcd failed"
	fi
}

pid_file() { echo "$DIR/metcd-$1.pid"; }

# member_pid prints the pid of member $1 if it is running (and really is the
# metcd we started: its command line names our data dir), else nothing.
member_pid() {
	local f pid
	f=$(pid_file "$1")
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	is_uint "$pid" || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	if ps -o args= -p "$pid" 2>/dev/null | grep -qF -- "$DIR/metcd-$1.data"; then
		echo "$pid"
	fi
}

# read_members loads the layout written by start into IDS, CLIENT_URLS, PEER_URLS.
read_members() {
	IDS=() CLIENT_URLS=() PEER_URLS=()
	[[ -f $MEMBERS_FILE ]] || return 1
	local id c p
	while read -r id c p; do
		[[ -z $id || $id == \#* ]] && continue
		IDS+=("$id")
		CLIENT_URLS+=("$c")
		PEER_URLS+=("$p")
	done <"$MEMBERS_FILE"
	((${#IDS[@]} > 0))
}

# leader_of prints the leader_id member $1 (client URL) reports, or nothing.
leader_of() {
	curl -fsS --max-time 1 "$1/admin/status" 2>/dev/null |
		sed -n 's/.*"leader_id": *\([0-9][0-9]*\).*/\1/p' | head -n 1
}

cmd_start() {
	local n=${1:-3}
	is_uint "$n" && ((n >= 1)) || die "start: member count must be a positive integer, not '$n'"
	is_uint "$BASE_PEER_PORT" && is_uint "$BASE_CLIENT_PORT" && is_uint "$PORT_STEP" ||
		die "BASE_PEER_PORT, BASE_CLIENT_PORT and PORT_STEP must be integers"
	local i
	local -a ids=() clients=() peers=()
	for ((i = 1; i <= n; i++)); do
		local pp=$((BASE_PEER_PORT + (i - 1) * PORT_STEP)) cp=$((BASE_CLIENT_PORT + (i - 1) * PORT_STEP))
		((pp <= 65535 && cp <= 65535)) || die "member $i would need port $((pp > cp ? pp : cp)) > 65535: lower PORT_STEP or the base ports"
		ids+=("$i")
		peers+=("http://127.0.0.1:$pp")
		clients+=("http://127.0.0.1:$cp")
	done

	if read_members; then
		for i in "${IDS[@]}"; do
			[[ -z $(member_pid "$i") ]] || die "member $i is already running; use 'stop' first (or 'status')"
		done
		if ((${#IDS[@]} != n)) || [[ ${PEER_URLS[*]} != "${peers[*]}" ]]; then
			die "$DIR holds a ${#IDS[@]}-member cluster with peers ${PEER_URLS[*]}; run 'clean' first to start a different layout"
		fi
		echo "restarting the existing ${n}-member cluster in $DIR"
	fi

	build_binary
	mkdir -p "$DIR"
	{
		echo "# id client-url peer-url (written by scripts/cluster.sh start)"
		for ((i = 0; i < n; i++)); do
			echo "${ids[i]} ${clients[i]} ${peers[i]}"
		done
	} >"$MEMBERS_FILE"

	local cluster
	cluster=$(
		IFS=,
		echo "${peers[*]}"
	)
	local -a extra=()
	# shellcheck disable=SC2206 # word splitting of METCD_FLAGS is intended
	[[ -n ${METCD_FLAGS:-} ]] && extra=(${METCD_FLAGS})
	for ((i = 0; i < n; i++)); do
		local id=${ids[i]} port=${clients[i]##*:}
		# setsid: a Ctrl-C aimed at this script must not reach the members.
		setsid "$BIN" --id "$id" --cluster "$cluster" --port "$port" \
			--data-dir "$DIR/metcd-$id.data" --log-level info "${extra[@]}" \
			>>"$DIR/metcd-$id.log" 2>&1 </dev/null &
		echo $! >"$(pid_file "$id")"
	done
	echo "started $n members (logs in $DIR/metcd-<id>.log); waiting for a leader"

	local deadline=$((SECONDS + LEADER_TIMEOUT)) leader=
	while :; do
		local agreed=1 l=
		leader=
		for ((i = 0; i < n; i++)); do
			if [[ -z $(member_pid "${ids[i]}") ]]; then
				echo "cluster.sh: member ${ids[i]} exited; last lines of its log:" >&2
				tail -n 20 "$DIR/metcd-${ids[i]}.log" >&2 || true
				cmd_stop >&2
				exit 1
			fi
			l=$(leader_of "${clients[i]}")
			if [[ -z $l || $l == 0 || (-n $leader && $l != "$leader") ]]; then
				agreed=0
			fi
			leader=$l
		done
		((agreed)) && break
		if ((SECONDS >= deadline)); then
			echo "cluster.sh: no leader agreed on by every member after ${LEADER_TIMEOUT}s; see $DIR/metcd-*.log" >&2
			cmd_status >&2 || true
			exit 1
		fi
		sleep 0.2
	done
	echo "leader: member $leader"
	echo "client URLs:"
	printf '  %s\n' "${clients[@]}"
	echo "endpoints: $(
		IFS=,
		echo "${clients[*]}"
	)"
}

cmd_stop() {
	if ! read_members; then
		echo "no cluster in $DIR"
		return 0
	fi
	local id pid
	local -a pids=()
	for id in "${IDS[@]}"; do
		pid=$(member_pid "$id")
		if [[ -n $pid ]]; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			echo "member $id (pid $pid): SIGTERM"
		fi
	done
	local deadline=$((SECONDS + STOP_GRACE)) alive
	while :; do
		alive=()
		for pid in ${pids[@]+"${pids[@]}"}; do
			kill -0 "$pid" 2>/dev/null && alive+=("$pid")
		done
		((${#alive[@]} == 0)) && break
		if ((SECONDS >= deadline)); then
			for pid in "${alive[@]}"; do
				echo "pid $pid still running after ${STOP_GRACE}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			done
			break
		fi
		sleep 0.1
	done
	for id in "${IDS[@]}"; do
		rm -f "$(pid_file "$id")"
	done
	echo "stopped"
}

cmd_status() {
	read_members || die "no cluster in $DIR (run 'start')"
	local i id pid st
	for ((i = 0; i < ${#IDS[@]}; i++)); do
		id=${IDS[i]}
		pid=$(member_pid "$id")
		if [[ -z $pid ]]; then
			echo "member $id ${CLIENT_URLS[i]} down"
			continue
		fi
		if st=$(curl -fsS --max-time 2 "${CLIENT_URLS[i]}/admin/status" 2>&1); then
			if command -v jq >/dev/null; then
				st=$(jq -c . <<<"$st" 2>/dev/null || echo "$st")
			fi
			st=$(tr -d '\n' <<<"$st" | sed 's/  */ /g')
		else
			st="unreachable: $st"
		fi
		echo "member $id ${CLIENT_URLS[i]} pid $pid $st"
	done
}

cmd_endpoints() {
	read_members || die "no cluster in $DIR (run 'start')"
	(
		IFS=,
		echo "${CLIENT_URLS[*]}"
	)
}

cmd_clean() {
	cmd_stop
	if [[ -d $DIR ]]; then
		rm -rf "$DIR"
		echo "removed $DIR"
	fi
}

case ${1:-} in
start)
	shift
	(($# <= 1)) || usage
	cmd_start "$@"
	;;
stop) cmd_stop ;;
status) cmd_status ;;
endpoints) cmd_endpoints ;;
clean) cmd_clean ;;
*) usage ;;
esac
