#!/usr/bin/env bash
# Starts and stops a Docker engine (Debian's docker.io: dockerd, which runs
# its own containerd and runc) where no service manager does it, as on CI
# machines and here:
#
#   hack/dockerd.sh start   # no-op when an engine already answers
#   hack/dockerd.sh stop    # stops only an engine this script started
#
# start runs dockerd in the background (overlay2; the cgroup driver it picks,
# cgroupfs on cgroup v1) with its images in the default /var/lib/docker, so
# the stand-in bases and BuildKit's cache survive between runs, and waits up
# to 60 s for its socket. Its log and pid go under
# ${MLOPS_CACHE:-$HOME/.cache/mlops}/dockerd/.
set -euo pipefail

state="${MLOPS_CACHE:-$HOME/.cache/mlops}/dockerd"
pidfile="$state/dockerd.pid"
socket=/var/run/docker.sock

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

case "${1:-}" in
start)
	if answers; then
		echo "dockerd.sh: a Docker engine already answers on $socket; using it" >&2
		exit 0
	fi
	command -v dockerd >/dev/null || { echo "dockerd.sh: dockerd is missing: apt-get install docker.io" >&2; exit 1; }
	[ "$(id -u)" = 0 ] || { echo "dockerd.sh: dockerd must run as root (got uid $(id -u))" >&2; exit 1; }
	mkdir -p "$state"
	# setsid: the engine is not in the caller's process group, so a Ctrl-C
	# there does not kill it halfway; stop ends it.
	setsid dockerd --host "unix://$socket" --storage-driver overlay2 \
		--pidfile "$state/dockerd.engine.pid" >"$state/dockerd.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 600); do
		if answers; then
			echo "dockerd.sh: dockerd $(docker version --format '{{.Server.Version}}') is up (pid $(cat "$pidfile"), log $state/dockerd.log)" >&2
			exit 0
		fi
		if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
			echo "dockerd.sh: dockerd exited at start; its log, $state/dockerd.log, ends with:" >&2
			tail -n 5 "$state/dockerd.log" >&2
			rm -f "$pidfile"
			exit 1
		fi
		sleep 0.1
	done
	echo "dockerd.sh: dockerd did not answer on $socket within 60 s; see $state/dockerd.log" >&2
	exit 1
	;;
stop)
	[ -f "$pidfile" ] || exit 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid"
		# dockerd stops its containers and its containerd first.
		for _ in $(seq 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "dockerd.sh: dockerd (pid $pid) did not stop within 30 s; killing it" >&2
			kill -KILL "$pid"
		fi
	fi
	rm -f "$pidfile"
	echo "dockerd.sh: dockerd stopped" >&2
	;;
*)
	echo "usage: hack/dockerd.sh start|stop" >&2
	exit 2
	;;
esac
