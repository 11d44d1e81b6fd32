#!/usr/bin/env bash
# A SLURM batch job running one roots_jax command over GPU nodes: one process per GPU (default)
# or one per node driving all of its GPUs. JAX's distributed runtime configures itself from the
# SLURM environment of each task (coordinator: the step's first node, at port
# JAX_COORDINATOR_PORT or one derived from the job id; process count and index).
#
#   sbatch [SBATCH_OPTIONS] launch/slurm.sh [-p gpu|node] [-m MODULE] -- ARGS...
#   sbatch --nodes=4 launch/slurm.sh -- --config configs/gpt2.py:medium --workdir /shared/run
#
# Edit the #SBATCH defaults below or override them on the sbatch command line (the account and
# partition, if the cluster needs them, too). Activate the Python environment that has roots_jax
# before sbatch: the job inherits it (PYTHON picks another interpreter). Output goes to
# roots_jax-JOBID.out in the submitting directory, each line prefixed with its task's index.
#
# The time limit and preemption: 120 s before the limit SLURM signals this script, which passes
# SIGTERM on to every task; a preempted job's tasks get SIGTERM from SLURM itself. Either way the
# trainer checkpoints its current step and exits, this script requeues the job, and the job
# resumes from that checkpoint when it runs again. --workdir must be on storage every node shares.
#SBATCH --job-name=roots_jax
#SBATCH --nodes=2
#SBATCH --gpus-per-node=8
#SBATCH --ntasks-per-node=8
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -euo pipefail

per=gpu
module=roots_jax.train
usage="usage: sbatch launch/slurm.sh [-p gpu|node] [-m MODULE] -- ARGS..."
fail() {
  echo "error: $*" >&2
  exit 2
}
while getopts ":p:m:h" option; do
  case "${option}" in
    p) per="${OPTARG}" ;;
    m) module="${OPTARG}" ;;
    h) echo "${usage}"; exit 0 ;;
    :) fail "-${OPTARG} needs a value; ${usage}" ;;
    *) fail "unknown option -${OPTARG}; ${usage}" ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
[[ "${per}" == gpu || "${per}" == node ]] || fail "-p takes gpu (a process per GPU) or node" \
  "(a process per node); got '${per}'"
(($# > 0)) || fail "give the command's arguments after --, e.g. -- --config" \
  "configs/gpt2.py:medium --workdir /shared/run"
[[ -n "${SLURM_JOB_ID:-}" ]] || fail "submit this script with sbatch (or run it in salloc)"
gpus="${SLURM_GPUS_ON_NODE:-0}"
((gpus > 0)) || fail "the job has no GPUs: ask for them with --gpus-per-node=N"
nodes="${SLURM_JOB_NUM_NODES:-1}"

# Which GPUs a process uses: when it finds itself in a SLURM step, jax.distributed.initialize
# takes GPU number SLURM_LOCALID (local_device_ids=[SLURM_LOCALID]) unless JAX_LOCAL_DEVICE_IDS
# says otherwise. Every task sees all of its node's GPUs (--gpu-bind=none: no per-task binding,
# so GPUs talk to each other directly), so a process per GPU takes GPU SLURM_LOCALID, and a
# process per node is given all of them.
if [[ "${per}" == gpu ]]; then
  tasks="${gpus}"
  unset JAX_LOCAL_DEVICE_IDS
else
  tasks=1
  JAX_LOCAL_DEVICE_IDS="$(seq -s , 0 $((gpus - 1)))"
  export JAX_LOCAL_DEVICE_IDS
fi
step=(srun "--nodes=${nodes}" "--ntasks=$((nodes * tasks))" "--ntasks-per-node=${tasks}")
# Each task gets its share of the node's CPUs (its data pipeline runs there); srun does not
# always inherit the job's --cpus-per-task.
[[ -z "${SLURM_CPUS_ON_NODE:-}" ]] \
  || step+=("--cpus-per-task=$((SLURM_CPUS_ON_NODE / tasks))")
step+=(--gpu-bind=none --label --kill-on-bad-exit=1 "${PYTHON:-python}" -u -m "${module}" "$@")
echo "slurm.sh: job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}), ${nodes} nodes of" \
  "${gpus} GPUs, a process per ${per}: ${step[*]}"

# SIGTERM to srun itself would kill the tasks at once, so the signal goes to the job's steps
# through scancel (which leaves this script alone); the job is requeued once srun returns.
stopping=""
trap '[[ -n "${stopping}" ]] || { stopping=1; scancel --signal=TERM "${SLURM_JOB_ID}" || true; }' \
  TERM
"${step[@]}" &
pid=$!
wait "${pid}" || true  # returns early when the trap runs
while kill -0 "${pid}" 2> /dev/null; do wait "${pid}" || true; done
status=0
wait "${pid}" || status=$?  # srun's own status (bash keeps it)
# A preempted job has a PreemptTime; one that ends during its grace time would not be requeued.
if [[ -n "${stopping}" ]] \
  || [[ "$(scontrol show job "${SLURM_JOB_ID}" 2> /dev/null || true)" =~ PreemptTime=[0-9] ]]; then
  echo "slurm.sh: stopped (status ${status}); requeueing job ${SLURM_JOB_ID} to resume"
  scontrol requeue "${SLURM_JOB_ID}" || true
fi
exit "${status}"
