#!/usr/bin/env bash
# Bring up a real single-node SLURM cluster for the tests (tests/test_slurm.py), from Debian's packages, without
# systemd: munge, MariaDB, slurmdbd, slurmctld, slurmd; returns once `sinfo` shows the node up.
#
# Idempotent: a daemon whose pid file names a live process is left running; packages already installed are not
# fetched again. Stop everything with tests/slurm/down.sh (by pid file).
# Exit status: 0 the node is up; 3 SLURM cannot be brought up here (not root, no apt-get, a foreign SLURM config):
# the tests skip with this script's message; anything else is a failure (the daemons' logs are printed).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
marker="lenet5-test-cluster"   # in the configs this script writes; a config without it is someone else's
started=$SECONDS

cannot() { echo "tests/slurm/up.sh: $*" >&2; exit 3; }
fail() {
  echo "tests/slurm/up.sh: $*" >&2
  for f in /var/log/slurm/*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
# wait_for <seconds> <what> <command...>: poll a command every 0.2 s, fail after the timeout
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "timed out after ${timeout} s waiting for $what"
    sleep 0.2
  done
}
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(id -u) -eq 0 ]] || cannot "needs root (daemons, packages); run as root or skip the SLURM tests"
command -v apt-get >/dev/null || cannot "needs apt-get (Debian's SLURM packages)"
# two callers at once (CI and a test session, two test sessions) would start each daemon twice; the daemons are
# started with fd 9 closed (9>&-), or they would hold the lock for as long as they run
exec 9>/run/lenet5-test-slurm.lock
flock -w 300 9 || fail "another tests/slurm/up.sh or down.sh held /run/lenet5-test-slurm.lock for 5 minutes"
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
  if [[ -f $conf ]] && ! grep -q "$marker" "$conf"; then
    cannot "$conf exists and was not written by this script: not touching a real cluster's configuration"
  fi
done

# -- packages: SLURM 22.05, munge, MariaDB (a fresh machine has no package lists yet) --------------------------------
packages=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  t=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || cannot "apt-get update failed (no package mirror reachable?)"
  # the packages' own service starts are refused without an init system: the daemons are started below
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
    || cannot "apt-get install ${packages[*]} failed"
  echo "tests/slurm/up.sh: installed ${missing[*]} in $((SECONDS - t)) s"
fi

# -- folders and configuration ---------------------------------------------------------------------------------------
mkdir -p /run/munge /run/mysqld /run/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /etc/slurm
chown munge:munge /run/munge
chown mysql:mysql /run/mysqld
[[ -s /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key

# this machine's cores and memory; RealMemory stays below what slurmd measures or the node is drained
read -r cpus memory < <(slurmd -C | tr ' ' '\n' | awk -F= '$1=="CPUs"{c=$2} $1=="RealMemory"{m=$2} END{print c, m}')
[[ -n $cpus && -n $memory ]] || fail "slurmd -C did not report CPUs and RealMemory"
memory=$((memory - (memory / 10 > 1024 ? memory / 10 : 1024)))
sed -e "s/@CPUS@/$cpus/" -e "s/@MEMORY_MB@/$memory/" -e "s/@MARKER@/$marker/" "$here/slurm.conf.in" >/etc/slurm/slurm.conf
sed -e "s/@MARKER@/$marker/" "$here/slurmdbd.conf.in" >/etc/slurm/slurmdbd.conf
chmod 600 /etc/slurm/slurmdbd.conf   # slurmdbd refuses a config others can read (it holds the database password)

# -- daemons, each started only if its pid file names no live process --------------------------------------------------
# Their output goes to log files: a daemon holding the caller's stdout open would keep a captured subprocess open.
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid </dev/null >>/var/log/slurm/munged.out 2>&1 9>&-
fi
wait_for 10 "munge" munge -n

if ! alive /run/mysqld/mysqld.pid; then
  [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
  setsid -f /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
    </dev/null >>/var/log/slurm/mariadb.log 2>&1 9>&-
fi
wait_for 30 "MariaDB" mariadb-admin ping
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

alive /run/slurm/slurmdbd.pid || /usr/sbin/slurmdbd </dev/null >>/var/log/slurm/slurmdbd.out 2>&1 9>&-
wait_for 30 "slurmdbd" sacctmgr -n show cluster
sacctmgr -n -P show cluster format=cluster | grep -qx lenet5ci || sacctmgr -i add cluster lenet5ci >/dev/null

alive /run/slurm/slurmctld.pid || /usr/sbin/slurmctld </dev/null >>/var/log/slurm/slurmctld.out 2>&1 9>&-
wait_for 30 "slurmctld" scontrol ping
alive /run/slurm/slurmd.pid || /usr/sbin/slurmd -N localhost </dev/null >>/var/log/slurm/slurmd.out 2>&1 9>&-

node_up() { sinfo -h -n localhost -o %T | grep -Eqx 'idle|mixed|allocated|completing'; }
deadline=$((SECONDS + 60))
until node_up; do
  # a node left down or drained by an earlier run (e.g. its memory changed) is put back into service
  if sinfo -h -n localhost -o %T | grep -Eq 'down|drain'; then
    scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
  fi
  ((SECONDS < deadline)) || fail "the node did not come up within 60 s: $(sinfo -h -N -o '%N %T %E' 2>&1)"
  sleep 0.2
done
# A job SLURM's saved state calls running, with no slurmstepd of it on this (only) node, died with daemons killed
# mid-job (a session's processes killed at its end): slurmctld recovers it as RUNNING and, in 22.05, never notices it
# is gone, so it holds its CPUs for good and a job that needs the whole node (the DDP test's) waits behind it for ever.
# (Looked at twice, 3 s apart: a job being started this instant has no slurmstepd yet either.)
no_process() { for job in "$@"; do pgrep -f "^slurmstepd: \[$job\." >/dev/null || echo "$job"; done; }
# shellcheck disable=SC2046
lost=$(no_process $(squeue -h -t RUNNING,COMPLETING -o %A | sort -u))
if [[ -n $lost ]]; then
  sleep 3
  # shellcheck disable=SC2086
  for job in $(no_process $lost); do
    scancel "$job"
    echo "tests/slurm/up.sh: cancelled job $job: running in SLURM's saved state, but no process of it on the node"
  done
fi
echo "tests/slurm/up.sh: $(sinfo --version) up in $((SECONDS - started)) s, node localhost" \
  "$(sinfo -h -n localhost -o %T) ($cpus CPUs, $memory MB)"
