#!/usr/bin/env bash
# Opt-in check that run_folds' SLURM job array really runs (tools/run_tests.sh --slurm):
# starts a one-node Slurm cluster on this machine (localhost only, its own ports, state and
# logs in a temporary folder, munge for authentication), runs tests/test_slurm.py against it
# (submit the array for a smoke-size run, wait, predict, report; cancel a task and submit
# again), then stops the daemons it started.
#
# Needs root (slurmd starts jobs as their user) and Debian 12's Slurm 22.05:
#   apt-get install slurmctld slurmd slurm-client munge
# Arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/header_help.sh
. "$ROOT/tools/header_help.sh"
die() { echo "check_slurm: $*" >&2; exit 2; }
case "${1:-}" in -h|--help) header_help "$0"; exit 0 ;; esac

[ "$(id -u)" = 0 ] || die "needs root (slurmd runs the jobs as their user); run it with sudo"
for b in slurmctld slurmd sbatch squeue scancel munged munge; do
  command -v "$b" >/dev/null || die "no $b: install Slurm and munge first (Debian 12: apt-get install slurmctld slurmd slurm-client munge)"
done
[ -s /etc/munge/munge.key ] || die "no /etc/munge/munge.key: the munge package makes it (or: mungekey --create)"

WORK=$(mktemp -d /tmp/psn-slurm.XXXXXX)
HOST=$(hostname)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$WORK"/{state,spool,log}
cat > "$WORK/slurm.conf" <<CONF
ClusterName=psncheck
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$WORK/slurm.conf"

STARTED_MUNGE=0
# shellcheck disable=SC2329  # run by the EXIT trap below
stop() {
  for d in slurmd slurmctld; do
    [ -s "$WORK/$d.pid" ] && kill "$(cat "$WORK/$d.pid")" 2>/dev/null || true
  done
  [ "$STARTED_MUNGE" = 1 ] && pkill -x munged 2>/dev/null || true
  sleep 1
  rm -rf "$WORK"
}
trap stop EXIT

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
  munged --force 2>/dev/null || die "munged does not start (see /var/log/munge/munged.log)"
  STARTED_MUNGE=1
fi
slurmctld -f "$SLURM_CONF" || die "slurmctld does not start: $(tail -3 "$WORK/log/slurmctld.log")"
slurmd -f "$SLURM_CONF" || die "slurmd does not start: $(tail -3 "$WORK/log/slurmd.log")"
for _ in $(seq 30); do
  sinfo -h -o %t 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo -h -o %t | grep -q idle || die "the node did not come up: $(tail -3 "$WORK/log/slurmctld.log")"
echo "[check_slurm] one-node cluster up ($HOST, $(nproc) CPUs, conf $SLURM_CONF)" >&2

cd "$ROOT"
t0=$(date +%s)
set +e
PSN_SLURM_CHECK=1 "${PSN_VENV:-$ROOT/.venv}/bin/python" -m pytest tests/test_slurm.py -q -rs "$@"
rc=$?
set -e
echo "[check_slurm] $(( $(date +%s) - t0 )) s" >&2
exit $rc
