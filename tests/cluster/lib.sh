# Shared helpers for the up/stop/down scripts (sourced, not executed).

# is_running DIR: the control plane process recorded in DIR is alive. The
# command line is checked too, so a recycled pid is not mistaken for it.
is_running() {
	local pidfile="$1/testcluster.pid" pid
	[[ -f $pidfile ]] || return 1
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "testcluster run $1" || return 1
}

# stop_cluster DIR: SIGTERM the process, SIGKILL it if it has not exited
# after a grace period, and wait until it is gone.
stop_cluster() {
	local dir=$1 pid i
	if ! is_running "$dir"; then
		rm -f "$dir/testcluster.pid"
		return 0
	fi
	pid=$(<"$dir/testcluster.pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 150; i++)); do # 15s
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "testcluster: pid $pid did not exit after SIGTERM, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$dir/testcluster.pid"
}

# abs_dir DIR: absolute path of an existing directory.
abs_dir() { (cd "$1" && pwd -P); }
