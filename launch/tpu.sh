#!/usr/bin/env bash
# Runs one roots_jax command on every worker of a Cloud TPU VM or pod slice, through
# `gcloud compute tpus tpu-vm`. Rerun `run` to resume from the run's newest checkpoint.
#
#   launch/tpu.sh create -n NAME -a ACCELERATOR_TYPE [-v VERSION] [-s] [-z ZONE] [-p PROJECT]
#   launch/tpu.sh setup  -n NAME [-g GIT_URL [-b REF]] [-c SETUP_COMMAND] [-z ZONE] [-p PROJECT]
#   launch/tpu.sh run    -n NAME [-m MODULE] [-r RETRIES -a TYPE [-v -s -g -b -c]] -- ARGS...
#   launch/tpu.sh stop   -n NAME      (SIGTERM to the run on every worker: it checkpoints, exits)
#   launch/tpu.sh delete -n NAME
#
# create: the TPU VM (-s: a Spot VM, cheaper and preemptible); the runtime version defaults by
#   accelerator family (v2, v3, v4, v5litepod, v5p, v6e). Without -z/-p, gcloud's configured
#   zone and project are used.
# setup: runs SETUP_COMMAND on every worker (e.g. mounting the shared workdir), puts this
#   checkout's files (tracked and untracked, not ignored) or a clone of -g URL in ~/roots_jax
#   there, and installs it (pip install -e, with jax[tpu]) into a Python 3.12 environment
#   ~/roots_jax_venv made by uv. Rerun it after changing the code.
# run: `python -m MODULE --config.distributed.initialize=yes ARGS...` on every worker at once
#   (MODULE: roots_jax.train by default; JAX reads the slice's workers from the TPU metadata),
#   each line of output prefixed with its worker's index ("[3] ..."). --workdir must be shared
#   by the workers and outlive the VM (an NFS mount such as Filestore), and data files must be
#   readable on every worker. With -r RETRIES, a VM that was preempted (or is gone) is deleted,
#   created again (-a, -v, -s as for create), set up again (-g, -b, -c as for setup) and the run
#   resumed, at most RETRIES times. A run whose VM is shutting down exits with status 75.
# worker: what `run` starts on each worker: the command in the background (its pid in
#   ~/.roots_jax.pid, for `stop`), its output prefixed.
set -euo pipefail

usage="usage: launch/tpu.sh create|setup|run|stop|delete -n NAME [-z ZONE] [-p PROJECT]\
 [-a ACCELERATOR_TYPE] [-v VERSION] [-s] [-g GIT_URL] [-b REF] [-c SETUP_COMMAND] [-m MODULE]\
 [-r RETRIES] [-- ARGS...]"
fail() {
  echo "error: $*" >&2
  exit 2
}
command="${1:-}"
case "${command}" in
  create | setup | run | stop | delete | worker) shift ;;
  -h) echo "${usage}"; exit 0 ;;
  *) echo "${usage}" >&2; exit 2 ;;
esac
name=""
zone=""
project=""
accelerator=""
version=""
spot=""
git_url=""
git_ref=""
init=""
module=roots_jax.train
retries=0
while getopts ":n:z:p:a:v:sg:b:c:m:r:h" option; do
  case "${option}" in
    n) name="${OPTARG}" ;;
    z) zone="${OPTARG}" ;;
    p) project="${OPTARG}" ;;
    a) accelerator="${OPTARG}" ;;
    v) version="${OPTARG}" ;;
    s) spot=1 ;;
    g) git_url="${OPTARG}" ;;
    b) git_ref="${OPTARG}" ;;
    c) init="${OPTARG}" ;;
    m) module="${OPTARG}" ;;
    r) retries="${OPTARG}" ;;
    h) echo "${usage}"; exit 0 ;;
    :) fail "-${OPTARG} needs a value; ${usage}" ;;
    *) fail "unknown option -${OPTARG}; ${usage}" ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift

if [[ "${command}" == run || "${command}" == worker ]]; then
  (($# > 0)) || fail "give the command's arguments after --, e.g. -- --config" \
    "configs/gpt2.py:small --workdir /mnt/shared/run"
elif (($# > 0)); then
  fail "${command} takes no arguments after the options; got '$1'"
fi
[[ "${command}" == worker || -n "${name}" ]] || fail "give the TPU VM's name with -n NAME"
[[ "${retries}" =~ ^[0-9]+$ ]] || fail "-r takes a number of retries; got '${retries}'"
if [[ "${command}" == create ]] || ((retries > 0)); then
  [[ -n "${accelerator}" ]] || fail "give the TPU's accelerator type with -a, e.g. -a v4-32" \
    "($([[ "${command}" == create ]] && echo "to create it" || echo "-r creates it again"))"
  if [[ -z "${version}" ]]; then
    case "${accelerator}" in
      v2-* | v3-* | v4-*) version=tpu-ubuntu2204-base ;;
      v5litepod-*) version=v2-alpha-tpuv5-lite ;;
      v5p-*) version=v2-alpha-tpuv5 ;;
      v6e-*) version=v2-alpha-tpuv6e ;;
      *) fail "no default runtime version for '${accelerator}': give one with -v VERSION" ;;
    esac
  fi
fi
[[ -z "${git_ref}" || -n "${git_url}" ]] || fail "-b REF is the branch or tag of -g GIT_URL"

where=()
[[ -z "${zone}" ]] || where+=("--zone=${zone}")
[[ -z "${project}" ]] || where+=("--project=${project}")
# (The empty-array form works in the bash 3.2 of macOS too.)
tpu_vm() { gcloud compute tpus tpu-vm "$@" ${where[@]+"${where[@]}"}; }

create_vm() {
  local flags=("--accelerator-type=${accelerator}" "--version=${version}")
  [[ -z "${spot}" ]] || flags+=(--spot)
  tpu_vm create "${name}" "${flags[@]}"
}

# The code goes to ~/roots_jax (replaced), the environment is made once and updated.
setup_vm() {
  local fetch tmp root status=0
  if [[ -n "${git_url}" ]]; then
    fetch="git clone --depth 1 ${git_ref:+--branch $(printf %q "${git_ref}") }$(printf %q \
      "${git_url}") ~/roots_jax"
  else
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    tmp="$(mktemp -d)"
    (cd "${root}" && git ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' file; do
          if [[ -e "${file}" ]]; then printf '%s\0' "${file}"; fi  # not deleted
        done | tar --null -T - -czf "${tmp}/roots_jax.tar.gz") \
      && tpu_vm scp "${tmp}/roots_jax.tar.gz" "${name}:" --worker=all || status=$?
    rm -rf "${tmp}"
    ((status == 0)) || return "${status}"
    fetch="mkdir ~/roots_jax && tar -xzf ~/roots_jax.tar.gz -C ~/roots_jax && rm ~/roots_jax.tar.gz"
  fi
  local steps=("rm -rf ~/roots_jax" "${fetch}" "export PATH=\"\$HOME/.local/bin:\$PATH\""
    "{ command -v uv > /dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh; }"
    "{ [ -x ~/roots_jax_venv/bin/python ] || uv venv --python 3.12 ~/roots_jax_venv; }"
    "uv pip install --python ~/roots_jax_venv/bin/python -e ~/roots_jax 'jax[tpu]'") script
  [[ -z "${init}" ]] || steps=("(${init})" "${steps[@]}")
  printf -v script '%s && ' "${steps[@]}"
  tpu_vm ssh "${name}" --worker=all --command="${script% && }"
}

run_on_workers() {
  tpu_vm ssh "${name}" --worker=all --command="cd ~/roots_jax && bash launch/tpu.sh worker -m\
 $(printf %q "${module}") -- $(printf '%q ' "$@")"
}

vm_state() { tpu_vm describe "${name}" --format='value(state)' 2> /dev/null || true; }

# After a failed run: the VM's state once it has had a minute to leave READY (a preempted VM
# keeps answering READY for a little while); empty when it is gone.
state_after_failure() {
  local state i
  for ((i = 0; i < 6; i++)); do
    state="$(vm_state)"
    [[ "${state}" == READY ]] || break
    sleep 10
  done
  echo "${state}"
}

# Runs, and while retries are left, a run that failed because its VM went away (or that was
# told to shut down) is run again, on a VM created and set up again if needed.
run() {
  local attempt=0 status state=READY next
  while true; do
    status=0
    if [[ "${state}" == READY ]]; then
      run_on_workers "$@" || status=$?
    else
      { [[ -z "${state}" ]] || tpu_vm delete "${name}" --quiet; } && create_vm && setup_vm \
        && run_on_workers "$@" || status=$?
    fi
    ((status != 0 && attempt < retries)) || return "${status}"
    echo "tpu.sh: the run on ${name} exited with status ${status}; checking the VM" >&2
    state="$(state_after_failure)"
    if [[ "${state}" == READY ]] && ((status != 75)); then
      return "${status}"  # the run itself failed: rerunning would fail the same way
    fi
    attempt=$((attempt + 1))
    if [[ "${state}" == READY ]]; then next="resuming the run"; else
      next="deleting it, creating it again, setting it up and resuming the run"
    fi
    echo "tpu.sh: ${name} is ${state:-gone}; retry ${attempt} of ${retries}: ${next}" >&2
  done
}

worker() {
  local python="${PYTHON:-${HOME}/roots_jax_venv/bin/python}" pidfile="${HOME}/.roots_jax.pid"
  local index="${TPU_WORKER_ID:-}" pid status=0 shutdown=""
  if [[ -z "${index}" ]]; then
    index="$(curl -sf -m 10 -H Metadata-Flavor:Google "http://metadata.google.internal/\
computeMetadata/v1/instance/attributes/agent-worker-number" || hostname)"
  fi
  if [[ -f "${pidfile}" ]] && kill -0 "$(< "${pidfile}")" 2> /dev/null; then
    echo "[${index}] error: a run (pid $(< "${pidfile}")) is still going on this worker; stop" \
      "it first (launch/tpu.sh stop -n NAME)"
    exit 1
  fi
  # SIGTERM reaching this script too means the VM itself is shutting down (systemd signals
  # every process): the trainer checkpoints and exits, and the status says "preempted". The
  # prefixing filter ignores SIGTERM so that the trainer's last lines still come out.
  trap 'shutdown=1' TERM
  "${python}" -u -m "${module}" --config.distributed.initialize=yes "$@" \
    > >(trap '' TERM; exec sed -u "s/^/[${index}] /") 2>&1 &
  pid=$!
  echo "${pid}" > "${pidfile}"
  wait "${pid}" || true  # returns early when the trap runs
  while kill -0 "${pid}" 2> /dev/null; do wait "${pid}" || true; done
  wait "${pid}" || status=$?  # the command's own status (bash keeps it)
  rm -f "${pidfile}"
  wait  # the output filter
  [[ -z "${shutdown}" ]] || exit 75
  exit "${status}"
}

case "${command}" in
  create) create_vm ;;
  setup) setup_vm ;;
  run) run "$@" ;;
  stop)
    tpu_vm ssh "${name}" --worker=all --command="kill -TERM \"\$(cat ~/.roots_jax.pid)\"\
 2> /dev/null || echo \"no run to stop on \$(hostname)\""
    ;;
  delete) tpu_vm delete "${name}" ;;
  worker) worker "$@" ;;
esac
