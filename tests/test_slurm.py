"""Runs submitted to a real SLURM cluster (munged, slurmctld and three slurmd nodes on this machine, started here and
torn down afterwards) through launch/slurm.py: one finishes, one is requeued mid-way and completes from its
checkpoint, one is cancelled and leaves no process; a node that dies ends its job with the supervisor's message.
The cluster needs root and Debian's slurm-wlm and munge (.ci/run installs them); without them these tests skip,
which fails the session (tests/conftest.py)."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from data_pipeline import generate
from launch import checkpointing
from tests import slurm_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAN_RUN_CLUSTER = os.geteuid() == 0 and not slurm_cluster.missing_programs()
needs_cluster = pytest.mark.skipif(
  not CAN_RUN_CLUSTER,
  reason=f"a SLURM cluster needs root and slurm-wlm + munge (missing: {slurm_cluster.missing_programs()})",
)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("data") / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 12, out, seed=0, num_success_examples=20, show_progress=False)
  return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
  # A short root: slurmd's spool paths and munge's socket path have length limits.
  with slurm_cluster.running_cluster(str(tmp_path_factory.mktemp("slurm"))) as running:
    yield running


def slurm_command(dataset_dir, workdir, num_steps, extra=()):
  return [
    sys.executable,
    os.path.join(ROOT, "launch", "slurm.py"),
    "--agent=bc",
    "--env=fetch_reach",
    f"--dataset_dir={dataset_dir}",
    f"--workdir={workdir}",
    f"--num_steps={num_steps}",
    "--num_replay_shards=2",
    "--num_evaluators=1",
    "--episodes_per_eval=2",
    "--eval_every=200",
    "--checkpoint_every=100",
    "--config=policy_hidden_sizes=(32,)",
    "--config=batch_size=32",
    "--poll_s=2",
    *extra,
  ]


def run_processes(workdir):
  """PIDs of live processes whose command line names the run's workdir (its roles on every node)."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
      continue
    if f"--run_config={workdir}/" in cmdline:
      found.append((int(pid), cmdline))
  return found


def wait_for_checkpoint(workdir, step, proc, timeout_s=300):
  deadline = time.time() + timeout_s
  while checkpointing.for_run(str(workdir)).latest_step() < step:
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() < deadline, f"no checkpoint of step {step} within {timeout_s} s"
    time.sleep(1.0)


def start(cluster, command):
  return subprocess.Popen(
    command, env=cluster.env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )


def test_dry_run_prints_one_heterogeneous_job_and_a_missing_sbatch_is_a_clear_error(dataset_dir, tmp_path):
  extra = ["--dry_run", "--learner_gres=gpu:1", "--partition=gpu", "--time=1:00:00", "--sbatch_arg=--account=rl"]
  proc = subprocess.run(
    slurm_command(dataset_dir, tmp_path / "run", 400, extra), capture_output=True, text=True, cwd=ROOT, timeout=300
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  script = proc.stdout
  components = script.split("#SBATCH hetjob\n")
  assert len(components) == 2  # Replay nodes (with the evaluator) and the learner's node.
  assert "#SBATCH --nodes=2\n#SBATCH --ntasks-per-node=1" in components[0]
  assert "#SBATCH --gres=gpu:1" in components[1] and "gres" not in components[0]
  assert all("--partition=gpu" in c and "--time=1:00:00" in c and "--account=rl" in c for c in components)
  assert "#SBATCH --requeue" in script and "launch/slurm_job.py" in script
  assert not os.path.exists(tmp_path / "run" / "slurm")  # Nothing submitted.
  no_sbatch = {**os.environ, "PATH": os.path.dirname(sys.executable)}
  proc = subprocess.run(
    slurm_command(dataset_dir, tmp_path / "run", 400),
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
    env=no_sbatch,
  )
  assert proc.returncode == 2 and "sbatch is not on PATH" in proc.stderr, proc.stderr[-2000:]


@needs_cluster
def test_a_run_submitted_with_wait_finishes_over_three_nodes(cluster, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = subprocess.run(
    slurm_command(dataset_dir, workdir, 400, ["--wait"]),
    env=cluster.env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "Run finished: 400 learner steps" in proc.stdout
  assert checkpointing.for_run(str(workdir)).latest_step() == 400
  logs = os.listdir(workdir / "logs" / "nodes")
  node_of = {name.rsplit("_", 1)[0]: name.rsplit("_", 1)[1][: -len(".log")] for name in logs}
  assert {"replay_0", "replay_1", "learner_0", "evaluator_0"} <= set(node_of), logs
  assert node_of["replay_0"] != node_of["replay_1"]
  assert node_of["learner_0"] != node_of["evaluator_0"]
  assert "6 into shard 1" in (workdir / "logs" / "nodes" / f"replay_1_{node_of['replay_1']}.log").read_text()
  assert (workdir / "logs" / "evaluator_0" / "logs.csv").read_text().count("\n") >= 2
  assert not run_processes(workdir)


@needs_cluster
def test_a_requeued_run_completes_from_its_checkpoint(cluster, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start(cluster, slurm_command(dataset_dir, workdir, 10000, ["--wait", "--checkpoint_every=500"]))
  try:
    wait_for_checkpoint(workdir, 1000, proc)
    job_id = cluster.run("squeue", "-h", "-o", "%F").split()[0]
    cluster.run("scontrol", "requeue", job_id)
    output = proc.communicate(timeout=900)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, output[-4000:]
  assert f"Job {job_id} was requeued" in output and "Run finished: 10000 learner steps" in output
  learner_log = "".join(p.read_text() for p in (workdir / "logs" / "nodes").glob("learner_0_*.log"))
  stopped = int(re.search(r"stopped at step (\d+); checkpoint saved", learner_log).group(1))
  assert f"resumed from step {stopped}" in learner_log  # Nothing lost: the step it was stopped at.
  assert stopped >= 1000
  assert checkpointing.for_run(str(workdir)).latest_step() == 10000


@needs_cluster
def test_scancel_checkpoints_the_step_reached_and_leaves_no_process(cluster, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start(cluster, slurm_command(dataset_dir, workdir, 200000, ["--wait", "--checkpoint_every=500"]))
  try:
    wait_for_checkpoint(workdir, 500, proc)
    job_id = cluster.run("squeue", "-h", "-o", "%F").split()[0]
    cluster.run("scancel", job_id)
    output = proc.communicate(timeout=300)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 143, output[-4000:]
  step = checkpointing.for_run(str(workdir)).latest_step()
  assert f"Stopped by SIGTERM (scancel, a preemption or a requeue) at learner step {step} of 200000" in output
  learner_log = "".join(p.read_text() for p in (workdir / "logs" / "nodes").glob("learner_0_*.log"))
  assert f"stopped at step {step}; checkpoint saved" in learner_log
  assert not run_processes(workdir)


@needs_cluster
def test_a_node_that_dies_ends_the_job_with_the_supervisors_message(cluster, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start(cluster, slurm_command(dataset_dir, workdir, 200000, ["--wait", "--checkpoint_every=500"]))
  try:
    wait_for_checkpoint(workdir, 500, proc)
    # The second replay shard's Python process (its srun's command line holds "$SLURM_PROCID", not "1").
    victims = [
      pid
      for pid, cmdline in run_processes(workdir)
      if "distributed.py --role=replay" in cmdline and "--shard_index=1 " in cmdline
    ]
    assert len(victims) == 1, run_processes(workdir)
    os.kill(victims[0], signal.SIGKILL)
    output = proc.communicate(timeout=300)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 1, output[-4000:]
  step = checkpointing.for_run(str(workdir)).latest_step()
  assert re.search(
    rf"error: the replay step \(nodes n\[1-2\]\) was killed by SIGKILL.*, so the run stopped at its last checkpoint, "
    rf"learner step {step} of 200000\. Rerun the same command to resume from step {step}\.",
    output,
  ), output[-3000:]
  assert "The last lines of " in output and "replay_1_n2.log" in output  # The dead role's logs, as locally.
  assert not run_processes(workdir)


@needs_cluster
def test_a_partition_the_cluster_lacks_is_refused_before_anything_is_prepared(cluster, dataset_dir, tmp_path):
  proc = subprocess.run(
    slurm_command(dataset_dir, tmp_path / "run", 400, ["--partition=nope"]),
    env=cluster.env,
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "No partition 'nope' on this cluster; its partitions: debug." in proc.stderr
  assert not (tmp_path / "run").exists()
