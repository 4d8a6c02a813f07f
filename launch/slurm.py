"""Submits a run to a SLURM cluster as one heterogeneous job: replay nodes, the learner's node, evaluator nodes.

  python launch/slurm.py --agent=laeo --env=fetch_reach --num_replay_shards=2 --learner_gres=gpu:1 --wait

Takes every flag of launch/local.py (the run is prepared exactly as there: dataset generated if needed, run config
written to the workdir) and the scheduler's. Components: `--num_replay_shards` replay nodes (one Reverb server
each, the first also the run's counter; by default they also run the evaluators), the learner (its node to
itself: `--learner_cpus`, `--learner_gres`), and with `--evaluator_nodes=N` N nodes of evaluators. Inside the job
launch/slurm_job.py starts the roles; they serve on free ports and find each other through the workdir, which
(with the dataset and the .venv) must be on a file system every node shares.

Without --wait it prints the job id and how to follow it. With --wait it blocks (looking at the job every
--poll_s seconds) until the job ends, through its requeues, and exits with the run's outcome: 0 finished, 1 a node
died or the learner diverged, 143 stopped (scancel), 2 bad flags or a refused submission. --dry_run prints the
batch script (the run is prepared; nothing is submitted).
"""

import math
import os
import shlex
import shutil
import subprocess
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from launch import checkpointing  # noqa: E402
from launch import local  # noqa: E402  (defines every flag of local.py)
from launch import run_config as run_config_lib  # noqa: E402
from launch import job_outcome  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("partition", None, "SLURM partition of every component (default: the cluster's default).")
flags.DEFINE_string("time", None, "Time limit of each allocation (sbatch --time); the job requeues itself near it.")
flags.DEFINE_string("learner_gres", None, "Generic resources of the learner's node, e.g. gpu:1.")
flags.DEFINE_integer("learner_cpus", 4, "CPUs of the learner's node (its input pipeline and XLA).")
flags.DEFINE_integer("replay_cpus", 2, "CPUs of each replay node for its Reverb server and dataset loading.")
flags.DEFINE_integer("evaluator_cpus", 1, "CPUs per evaluator.")
flags.DEFINE_integer(
  "evaluator_nodes", 0, "Nodes of their own for the evaluators (0: they run on the replay nodes, on their CPUs)."
)
flags.DEFINE_multi_string(
  "sbatch_arg", [], "Any other sbatch option for every component, repeatable, e.g. --sbatch_arg=--account=rl."
)
flags.DEFINE_integer(
  "requeue_before_s", 300, "Seconds before the time limit at which the job checkpoints and requeues itself."
)
flags.DEFINE_bool("dry_run", False, "Print the batch script and exit without submitting.")
flags.DEFINE_bool("wait", False, "Block until the job ends (through requeues) and exit with the run's outcome.")
flags.DEFINE_float("poll_s", 10.0, "--wait: seconds between looks at the job (scontrol), sleeping in between.")

ENDED = (
  "COMPLETED",
  "FAILED",
  "CANCELLED",
  "TIMEOUT",
  "NODE_FAIL",
  "OUT_OF_MEMORY",
  "BOOT_FAIL",
  "DEADLINE",
  "PREEMPTED",
)


class SubmitError(Exception):
  """The cluster refused the job, or cannot be reached; the message says why."""


def _component(lines, nodes, ntasks_per_node=None, ntasks=None, cpus=1, gres=None):
  opts = [f"--nodes={nodes}"]
  opts += [f"--ntasks-per-node={ntasks_per_node}"] if ntasks_per_node else []
  opts += [f"--ntasks={ntasks}"] if ntasks else []
  opts += [f"--cpus-per-task={cpus}"]
  opts += [f"--gres={gres}"] if gres else []
  opts += [f"--partition={FLAGS.partition}"] if FLAGS.partition else []
  opts += [f"--time={FLAGS.time}"] if FLAGS.time else []
  opts += list(FLAGS.sbatch_arg)
  lines += [f"#SBATCH {o}" for o in opts]


def batch_script(config: run_config_lib.RunConfig) -> str:
  """The heterogeneous batch script of the run: replay (+ evaluators), learner [, evaluators]."""
  k, e = config.num_replay_shards, config.num_evaluators
  own_evaluator_nodes = FLAGS.evaluator_nodes > 0 and e > 0
  slurm_dir = os.path.join(config.workdir, "slurm")
  lines = [
    "#!/bin/bash",
    f"#SBATCH --job-name=laeo_{os.path.basename(config.workdir)}",
    f"#SBATCH --output={slurm_dir}/job_%j.out",
    "#SBATCH --open-mode=append",
    "#SBATCH --requeue",
    f"#SBATCH --signal=B:USR1@{FLAGS.requeue_before_s}",
  ]
  # One task per replay node, with the CPUs of the evaluators it also runs.
  evaluators_here = 0 if own_evaluator_nodes else math.ceil(e / k)
  _component(lines, k, ntasks_per_node=1, cpus=FLAGS.replay_cpus + evaluators_here * FLAGS.evaluator_cpus)
  lines.append("#SBATCH hetjob")
  _component(lines, 1, ntasks=1, cpus=FLAGS.learner_cpus, gres=FLAGS.learner_gres)
  if own_evaluator_nodes:
    lines.append("#SBATCH hetjob")
    _component(lines, FLAGS.evaluator_nodes, ntasks=e, cpus=FLAGS.evaluator_cpus)
  driver = [
    sys.executable,
    os.path.join(_ROOT, "launch", "slurm_job.py"),
    f"--run_config={run_config_lib.run_config_path(config.workdir)}",
    f"--evaluator_group={2 if own_evaluator_nodes else 0}",
  ]
  lines += [
    "# The run's driver (launch/slurm_job.py) starts every role with srun and reports how the run ended.",
    f"export PYTHONPATH={shlex.quote(_ROOT)}${{PYTHONPATH:+:$PYTHONPATH}}",
    "export MUJOCO_GL=${MUJOCO_GL:-egl}",
    f"cd {shlex.quote(_ROOT)}",
    "exec " + " ".join(shlex.quote(a) for a in driver),
  ]
  return "\n".join(lines) + "\n"


def _slurm(*command: str) -> subprocess.CompletedProcess:
  return subprocess.run(command, capture_output=True, text=True, timeout=120)


def check_cluster() -> None:
  """sbatch is here and the partition exists, or a SubmitError that says what to do."""
  if shutil.which("sbatch") is None:
    raise SubmitError(
      "sbatch is not on PATH: launch/slurm.py submits from a machine of a SLURM cluster (a login node with "
      "slurm-wlm's client commands). On one machine, run launch/local.py with the same flags."
    )
  if FLAGS.partition:
    proc = _slurm("sinfo", "-h", "-o", "%R")
    partitions = sorted(set(proc.stdout.split()))
    if proc.returncode != 0:
      raise SubmitError(f"sinfo cannot reach the cluster: {proc.stderr.strip()}")
    if FLAGS.partition not in partitions:
      raise SubmitError(f"No partition {FLAGS.partition!r} on this cluster; its partitions: {', '.join(partitions)}.")


def submit(script_path: str) -> str:
  proc = _slurm("sbatch", "--parsable", script_path)
  if proc.returncode != 0:
    raise SubmitError(f"sbatch refused the job ({script_path}): {proc.stderr.strip()}")
  return proc.stdout.strip().split(";")[0]


def job_state(job_id: str):
  """(state, restarts) of the job's first component, or (None, 0) once SLURM has forgotten it."""
  proc = _slurm("scontrol", "show", "job", "-o", job_id)
  if proc.returncode != 0 or "JobState=" not in proc.stdout:
    return None, 0
  fields = dict(f.split("=", 1) for f in proc.stdout.splitlines()[0].split() if "=" in f)
  return fields.get("JobState"), int(fields.get("Restarts", 0))


def wait_for(job_id: str, config: run_config_lib.RunConfig) -> int:
  """Blocks until the job has ended (through requeues), prints how the run ended, returns its exit code."""
  seen_restarts, state = 0, None
  while True:
    state, restarts = job_state(job_id)
    if restarts > seen_restarts:
      print(f"Job {job_id} was requeued (restart {restarts}); it resumes from its last checkpoint.", flush=True)
      seen_restarts = restarts
    if state is None or state in ENDED:
      break
    time.sleep(FLAGS.poll_s)
  outcome = job_outcome.read_outcome(config.workdir, job_id)
  if outcome is None:
    step = checkpointing.for_run(config.workdir).latest_step()
    code = 143 if state == "CANCELLED" else 1
    message = (
      f"Job {job_id} ended ({state or 'no longer known to SLURM'}) before the run said how it ended; its last "
      f"checkpoint is learner step {step} of {config.num_steps}. See {config.workdir}/slurm/job_{job_id}.out."
    )
  else:
    code, message = outcome["exit_code"], outcome["message"]
  print(("" if code == 0 else "error: ") + message, file=sys.stdout if code == 0 else sys.stderr, flush=True)
  return code


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.verbose:
    logging.set_verbosity(logging.ERROR)
  try:
    if FLAGS.max_restarts:
      raise ValueError("--max_restarts is local.py's; on SLURM a stopped job is requeued and resumes instead.")
    if FLAGS.evaluator_nodes < 0:
      raise ValueError(f"--evaluator_nodes must be >= 0, got {FLAGS.evaluator_nodes}.")
    if not FLAGS.dry_run and not FLAGS.prepare_only:
      check_cluster()
    config = local.config_from_flags(shards_per_machine=1)  # Each replay node holds one shard.
  except (ValueError, FileNotFoundError, SubmitError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.prepare_only:
    print(f"Prepared {config.workdir}/run_config.json (dataset: {config.dataset_dir})")
    return
  script = batch_script(config)
  if FLAGS.dry_run:
    print(script, end="")
    return
  os.makedirs(os.path.join(config.workdir, "slurm"), exist_ok=True)
  script_path = os.path.join(config.workdir, "slurm", "run.sbatch")
  with open(script_path, "w") as f:
    f.write(script)
  try:
    job_id = submit(script_path)
  except SubmitError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  print(
    f"Submitted job {job_id} ({script_path}). Follow it with:\n"
    f"  squeue -j {job_id}\n"
    f"  tail -f {config.workdir}/slurm/job_{job_id}.out {config.workdir}/logs/nodes/*.log\n"
    f"  scancel {job_id}   # stops it; the learner checkpoints the step it reached",
    flush=True,
  )
  if FLAGS.wait:
    try:
      sys.exit(wait_for(job_id, config))
    except KeyboardInterrupt:
      print(f"\nStopped waiting; job {job_id} goes on (scancel {job_id} stops it).", file=sys.stderr)
      sys.exit(130)


if __name__ == "__main__":
  app.run(main)
