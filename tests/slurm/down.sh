#!/usr/bin/env bash
# Stop the test cluster tests/slurm/up.sh started: cancel its jobs, then each daemon by its pid file (never by name),
# checking that the pid still belongs to that daemon. The packages, the job database and the state stay.
set -uo pipefail

[[ -w /run ]] && { exec 9>/run/lenet5-test-slurm.lock; flock -w 120 9; }   # not while up.sh is starting daemons

if command -v squeue >/dev/null && scontrol ping >/dev/null 2>&1; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u)
  if [[ -n $jobs ]]; then
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 100); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2; done
  fi
fi

# stop <pid file> <process name>: SIGTERM, up to 20 s to exit, then SIGKILL
stop() {
  local pidfile=$1 name=$2 pid
  [[ -s $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if [[ $(cat "/proc/$pid/comm" 2>/dev/null) != "$name" ]]; then
    rm -f "$pidfile"   # stale: that process is gone (or the pid now belongs to another program)
    return 0
  fi
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "tests/slurm/down.sh: $name ($pid) ignored SIGTERM for 20 s: SIGKILL" >&2
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

stop /run/slurm/slurmd.pid slurmd
stop /run/slurm/slurmctld.pid slurmctld
stop /run/slurm/slurmdbd.pid slurmdbd
stop /run/mysqld/mysqld.pid mariadbd
stop /run/munge/munged.pid munged
rm -f /run/slurm/started-by-tests   # tests/test_slurm.py's note that a test session started it
echo "tests/slurm/down.sh: test cluster stopped"
