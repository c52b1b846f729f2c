#!/usr/bin/env bash
# Measures what a cold compile costs in memory and time, as a CI runner with
# little memory sees it (docs/compile-memory.md has the figures):
#
#   sudo hack/compile-memory.sh [--limit BYTES] [program|gate ...]
#
#   program  what hack/program.sh compiles: `go build .`
#   gate     what `hack/test.sh --hermetic` compiles: `go vet ./...` and the
#            test binaries of both modules (the program's and model/'s),
#            compiled and linked by `go test -exec true`, which runs none
#
# (default: both, one after the other). Each runs in a memory cgroup of its
# own limited to BYTES (default 7000000000, a 7 GB runner; no swap), with an
# empty GOCACHE of its own (a temporary directory, removed after), so every
# package is compiled. The module cache (GOMODCACHE) stays warm: the modules
# are downloaded before, outside the cgroup, as a CI cache restores them.
# The environment is passed through, so what the build would run with is
# measured with it, for example:
#
#   sudo env GOGC=50 hack/compile-memory.sh program
#   sudo env GOFLAGS=-p=1 hack/compile-memory.sh gate
#
# Prints, per part: wall time; the cgroup's peak memory (processes and page
# cache, what the limit is compared with) and its peak of anonymous memory
# (the processes' own, which reclaiming page cache cannot make room for);
# whether the kernel OOM-killed anything in it; the largest resident sets of
# single compiler (linker, vet) processes, with their packages; and the load
# average before and after (the wall time on a shared machine depends on
# it; the memory barely does).
#
# Needs root to create the cgroup (sudo on a runner), a cgroup v2 hierarchy
# with the memory controller (any systemd machine; GitHub's and GitLab's
# Linux runners) or cgroup v1's memory controller, /usr/bin/time (Debian's
# `time` package) for the per-process figure (without it that line is
# skipped), and Go. Nothing else; no network after the modules are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

limit=7000000000
parts=()
while [ $# -gt 0 ]; do
	case "$1" in
	--limit) limit=${2:?--limit needs a number of bytes}; shift 2 ;;
	--limit=*) limit=${1#--limit=}; shift ;;
	program | gate) parts+=("$1"); shift ;;
	*) echo "usage: hack/compile-memory.sh [--limit BYTES] [program|gate ...] (got \"$1\")" >&2; exit 2 ;;
	esac
done
[ ${#parts[@]} -gt 0 ] || parts=(program gate)
case "$limit" in
'' | *[!0-9]*) echo "compile-memory: --limit must be a number of bytes, got \"$limit\"" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "compile-memory: creating a memory cgroup needs root; run it with sudo" >&2
	exit 2
fi

# The cgroup's files, by version: limit, swap limit, peak, OOM-kill count.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	cgversion=2
	cgparent=/sys/fs/cgroup
	if ! grep -qw memory "$cgparent/cgroup.subtree_control"; then
		echo +memory >"$cgparent/cgroup.subtree_control" || {
			echo "compile-memory: cannot enable the memory controller in $cgparent" >&2
			exit 1
		}
	fi
elif [ -d /sys/fs/cgroup/memory ]; then
	cgversion=1
	cgparent=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
	cgparent=${cgparent%/}
else
	echo "compile-memory: no memory cgroup found under /sys/fs/cgroup (v2 or v1 memory controller)" >&2
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/compile-memory.XXXXXX")
cg=
# shellcheck disable=SC2317 # called by the traps
cleanup() {
	if [ -n "$cg" ] && [ -d "$cg" ]; then
		# Only what this script started is in it.
		while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$cg/cgroup.procs"
		remove_cgroup
	fi
	rm -rf "$tmp"
}
# A killed process leaves its cgroup only once it has exited.
# shellcheck disable=SC2317 # called by cleanup
remove_cgroup() {
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		rmdir "$cg" 2>/dev/null && return
		sleep 1
	done
	echo "compile-memory: could not remove $cg" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every compile, link and vet process runs under /usr/bin/time, which
# appends "<max RSS in KiB> <wall seconds> <tool> <package>" to a log (the package is the
# tool's -p argument; the linker's is its output file).
toolexec=()
if [ -x /usr/bin/time ]; then
	cat >"$tmp/toolexec" <<'EOF'
#!/usr/bin/env bash
tool=${1##*/}
pkg=
prev=
for arg in "$@"; do
	case "$prev" in -p | -o) pkg=$arg ;; esac
	prev=$arg
done
exec /usr/bin/time -a -o "$COMPILE_MEMORY_LOG" -f "%M %e $tool ${pkg:-?}" "$@"
EOF
	chmod +x "$tmp/toolexec"
	toolexec=(-toolexec "$tmp/toolexec")
fi

echo "compile-memory: downloading the modules first (outside the measurement)" >&2
go list -deps -test ./... >/dev/null
(cd model && go list -deps -test ./... >/dev/null)

human() { awk -v b="$1" 'BEGIN { printf "%.2f GB (%.0f bytes)", b / 1e9, b }'; }

# Samples the cgroup's anonymous memory (the processes' own, which page
# cache cannot make room for) every half second, keeping the largest, until
# the file $1.stop exists.
sample_anon() {
	local key=rss max=0 now
	[ "$cgversion" = 1 ] || key=anon
	while [ ! -e "$1.stop" ]; do
		now=$(awk -v k="$key" '$1 == k { print $2 }' "$cg/memory.stat" 2>/dev/null || echo 0)
		[ "${now:-0}" -le "$max" ] || max=$now
		echo "$max" >"$1"
		sleep 0.5
	done
}

measure() {
	local part=$1 log=$tmp/$1.log rsslog=$tmp/$1.rss
	local script
	# shellcheck disable=SC2016 # expanded by the shell inside the cgroup
	case "$part" in
	program)
		script='go build "$@" -o "$OUT/mlops" .'
		;;
	gate)
		# -exec true: every test binary is compiled and linked as
		# hack/test.sh does, none is run.
		script='go vet "$@" ./... && go test "$@" -count=1 -exec true ./... &&
			cd model && go vet "$@" ./... && go test "$@" -count=1 -exec true ./...'
		;;
	esac
	cg=$cgparent/mlops-compile-memory.$$.$part
	mkdir "$cg"
	if [ "$cgversion" = 2 ]; then
		echo "$limit" >"$cg/memory.max"
		[ ! -f "$cg/memory.swap.max" ] || echo 0 >"$cg/memory.swap.max"
	else
		echo "$limit" >"$cg/memory.limit_in_bytes"
		[ ! -f "$cg/memory.memsw.limit_in_bytes" ] || echo "$limit" >"$cg/memory.memsw.limit_in_bytes"
	fi
	mkdir -p "$tmp/$part.cache" "$tmp/$part.out"
	: >"$rsslog"
	local load_before start end status=0 sampler
	sample_anon "$tmp/$part.anon" &
	sampler=$!
	load_before=$(cut -d' ' -f1-3 /proc/loadavg)
	start=$(date +%s.%N)
	# The shell moves itself into the cgroup, then becomes the build: every
	# process the build starts is counted.
	# shellcheck disable=SC2016 # expanded by that shell
	env GOCACHE="$tmp/$part.cache" OUT="$tmp/$part.out" COMPILE_MEMORY_LOG="$rsslog" \
		COMPILE_MEMORY_SCRIPT="$script" \
		bash -c 'echo $$ >"$1/cgroup.procs" && shift && eval "$COMPILE_MEMORY_SCRIPT"' _ "$cg" "${toolexec[@]}" \
		>"$log" 2>&1 || status=$?
	end=$(date +%s.%N)
	touch "$tmp/$part.anon.stop"
	wait "$sampler" || true

	local peak oom
	if [ "$cgversion" = 2 ]; then
		peak=$(cat "$cg/memory.peak" 2>/dev/null || echo 0)
		oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.events")
	else
		peak=$(cat "$cg/memory.max_usage_in_bytes")
		oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control")
	fi
	remove_cgroup
	cg=

	echo "== $part: limit $(human "$limit"), env GOGC=${GOGC:-} GOMEMLIMIT=${GOMEMLIMIT:-} GOFLAGS=${GOFLAGS:-}"
	echo "exit status:          $status"
	awk -v s="$start" -v e="$end" 'BEGIN { printf "wall time:            %.0f s\n", e - s }'
	echo "cgroup peak memory:   $(human "$peak") (with page cache)"
	echo "peak anonymous:       $(human "$(cat "$tmp/$part.anon" 2>/dev/null || echo 0)") (the processes' own memory, sampled every 0.5 s)"
	echo "OOM kills:            ${oom:-unknown}"
	if [ -s "$rsslog" ]; then
		# Lines other than "<KiB> <s> <tool> <pkg>" are /usr/bin/time's
		# notes ("Command terminated by signal 9").
		echo "largest processes:    (max RSS, wall time, tool, package)"
		awk '$1 ~ /^[0-9]+$/ && NF == 4' "$rsslog" | sort -rn | head -6 |
			awk '{ printf "                      %.2f GB %5.0f s %s %s\n", $1 * 1024 / 1e9, $2, $3, $4 }'
		if grep -q '^Command terminated by signal' "$rsslog"; then
			echo "killed:               $(grep -c '^Command terminated by signal' "$rsslog") process(es); /usr/bin/time noted:"
			grep -A1 '^Command terminated by signal' "$rsslog" | grep -v '^--' | sed 's/^/                      /'
		fi
	fi
	echo "load average:         $load_before before, $(cut -d' ' -f1-3 /proc/loadavg) after (nproc $(nproc))"
	if [ "$status" != 0 ]; then
		echo "last lines of the build's output:"
		tail -5 "$log" | sed 's/^/    /'
	fi
	[ "$status" = 0 ] && [ "${oom:-0}" = 0 ]
}

failed=0
for part in "${parts[@]}"; do
	measure "$part" || failed=1
done
exit "$failed"
