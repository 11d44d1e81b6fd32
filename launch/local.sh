#!/usr/bin/env bash
# Runs one roots_jax command as several processes on this machine, coordinated over 127.0.0.1:
# the multi-host code path (jax.distributed, per-process data shards, one checkpoint) on a CPU,
# without a cluster. Rerun the same command to resume from the run's last checkpoint.
#
#   launch/local.sh [-n PROCESSES] [-d DEVICES_PER_PROCESS] [-m MODULE] [-p PORT] -- ARGS...
#   launch/local.sh -n 2 -d 4 -- --config configs/gpt2.py:tiny --workdir /tmp/run
#
# Defaults: 2 processes of 4 CPU devices each, module roots_jax.train, a free port. Every line a
# process prints comes out prefixed with its index ("[1] ..."). If one process fails, the others
# are stopped and the script exits with the failing status; Ctrl-C or SIGTERM is passed on to
# every process (the trainer checkpoints its current step before exiting). Needs bash >= 5.1.
set -euo pipefail

processes=2
devices=4
module=roots_jax.train
port=""
usage="usage: launch/local.sh [-n PROCESSES] [-d DEVICES_PER_PROCESS] [-m MODULE] [-p PORT] -- ARGS..."
while getopts ":n:d:m:p:h" option; do
  case "${option}" in
    n) processes="${OPTARG}" ;;
    d) devices="${OPTARG}" ;;
    m) module="${OPTARG}" ;;
    p) port="${OPTARG}" ;;
    h) echo "${usage}"; exit 0 ;;
    :) echo "error: -${OPTARG} needs a value; ${usage}" >&2; exit 2 ;;
    *) echo "error: unknown option -${OPTARG}; ${usage}" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ "${1:-}" == "--" ]] && shift
for value in "${processes}" "${devices}"; do
  if ! [[ "${value}" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: -n and -d take a positive number of processes and devices; got '${value}'" >&2
    exit 2
  fi
done
if [[ $# -eq 0 ]]; then
  echo "error: give the command's arguments after --, e.g. -- --config configs/gpt2.py:tiny" \
    "--workdir /tmp/run" >&2
  exit 2
fi
python="${PYTHON:-python}"
if [[ -z "${port}" ]]; then
  port="$("${python}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi

# Each process gets its own CPU devices (JAX_NUM_CPU_DEVICES); a device count forced through
# XLA_FLAGS would override it, so that one flag is dropped.
XLA_FLAGS="$(sed -E 's/--xla_force_host_platform_device_count=[0-9]+//g; s/^ +//; s/ +$//' \
  <<< "${XLA_FLAGS:-}")"
if [[ -n "${XLA_FLAGS}" ]]; then export XLA_FLAGS; else unset XLA_FLAGS; fi
export JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES="${devices}"

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap stop INT TERM
for ((i = 0; i < processes; i++)); do
  "${python}" -u -m "${module}" "$@" \
    "--config.distributed.coordinator_address=127.0.0.1:${port}" \
    "--config.distributed.num_processes=${processes}" \
    "--config.distributed.process_id=${i}" > >(sed -u "s/^/[${i}] /") 2>&1 &
  pids+=("$!")
done

# The status is the first failing process's, else 0 (a run stopped by SIGTERM that saved its
# checkpoint exits 0: rerun to resume).
status=0
left="${processes}"
while ((left > 0)); do
  finished=""
  wait -n -p finished "${pids[@]}" && code=0 || code=$?
  if [[ -z "${finished:-}" ]]; then  # a signal interrupted `wait`; the processes run on
    ((code == 127)) && break
    continue
  fi
  left=$((left - 1))
  if ((code != 0 && status == 0)); then  # the first failure stops the others
    status="${code}"
    stop
  fi
done
wait  # the output filters
exit "${status}"
