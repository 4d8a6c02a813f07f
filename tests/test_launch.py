"""Full local launches: every agent end to end through Reverb and Launchpad, resumption, and bad flags."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import generate
from launch import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "laeo": ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "batch_size=32"],
    "oril": ["policy_hidden_sizes=(32,)", "critic_hidden_sizes=(32,)", "classifier_hidden_sizes=(32,)",
             "batch_size=32"],
    "purl": ["policy_hidden_sizes=(32,)", "critic_hidden_sizes=(32,)", "classifier_hidden_sizes=(32,)",
             "batch_size=32"],
    # BC's tiny update is so fast that 200 steps could end before the evaluator's first round: a larger batch
    # keeps the run long enough to be evaluated.
    "bc": ["policy_hidden_sizes=(256, 256)", "batch_size=2048"],
}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("data") / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 12, out, seed=0, num_success_examples=20,
                            show_progress=False)
  return out


def launch(agent, dataset_dir, workdir, num_steps, extra=()):
  command = [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--agent={agent}", "--env=fetch_reach",
             f"--dataset_dir={dataset_dir}", f"--workdir={workdir}", f"--num_steps={num_steps}",
             "--num_evaluators=1", "--episodes_per_eval=2", "--eval_every=100", "--checkpoint_every=100",
             "--log_every=50", "--seed=0", *[f"--config={c}" for c in TINY[agent]], *extra]
  # Every node process inherits the tag, so leftovers can be found afterwards.
  return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                        env={**os.environ, "MUJOCO_GL": "egl", "LAEO_TEST_TAG": str(workdir)})


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def assert_no_node_left(workdir):
  tag = f"LAEO_TEST_TAG={workdir}".encode()
  leftovers = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        if tag in f.read().split(b"\0"):
          leftovers.append(pid)
    except OSError:  # The process ended meanwhile, or is not ours to read.
      continue
  assert not leftovers, f"node processes still running: {leftovers}"


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["laeo", "oril", "purl", "bc"])
def test_local_launch_trains_evaluates_checkpoints_and_exits(agent, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = launch(agent, dataset_dir, workdir, num_steps=200)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  learner_rows = read_csv(workdir / "logs" / "learner" / "logs.csv")
  assert [int(float(r["learner_steps"])) for r in learner_rows] == [50, 100, 150, 200]
  assert all(r[k] not in ("nan", "") for r in learner_rows for k in r)
  evaluator_rows = read_csv(workdir / "logs" / "evaluator_0" / "logs.csv")
  assert evaluator_rows and all(0.0 <= float(r["success_rate"]) <= 1.0 for r in evaluator_rows)
  assert sorted(os.listdir(workdir / "checkpoints")) == ["ckpt_0000000100.pkl", "ckpt_0000000200.pkl"]
  assert os.listdir(workdir / "tb" / "learner")
  assert json.loads((workdir / "run_config.json").read_text())["agent"] == agent
  assert_no_node_left(workdir)


@pytest.mark.slow
def test_restarted_run_resumes_from_its_last_checkpoint(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  assert launch("laeo", dataset_dir, workdir, num_steps=100).returncode == 0
  proc = launch("laeo", dataset_dir, workdir, num_steps=200)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "resumed from step 100" in proc.stdout + proc.stderr
  steps = [int(float(r["learner_steps"])) for r in read_csv(workdir / "logs" / "learner" / "logs.csv")]
  assert steps == [50, 100, 150, 200]  # Counting went on from the checkpoint instead of restarting.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["ckpt_0000000100.pkl", "ckpt_0000000200.pkl"]
  assert_no_node_left(workdir)
  result = evaluate.evaluate_latest_checkpoint(str(workdir), episodes=2, seed=0)
  assert result["learner_steps"] == 200 and 0.0 <= result["success_rate"] <= 1.0
  rows = read_csv(workdir / "logs" / "checkpoint_eval" / "logs.csv")
  assert [(int(float(r["learner_steps"])), int(r["episodes"])) for r in rows] == [(200, 2)]


def test_bad_flags_fail_fast_with_a_clear_message(dataset_dir, tmp_path):
  cases = [
      (["--agent=sac"], "Unknown agent 'sac'"),
      (["--env=cartpole"], "cartpole"),
      ([f"--dataset_dir={tmp_path / 'missing'}"], "does not exist"),
      (["--config=not_a_field=1"], "not_a_field"),
      (["--preset=huge"], "Unknown preset"),
  ]
  for flags, message in cases:
    base = [f"--dataset_dir={dataset_dir}"] if not any(f.startswith("--dataset_dir") for f in flags) else []
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--workdir={tmp_path / 'w'}", *base, *flags],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr[-2000:])
  assert not (tmp_path / "w").exists()  # Nothing was written for a refused run.


def test_bad_success_examples_are_refused_before_launch(dataset_dir, tmp_path):
  broken = tmp_path / "data"
  shutil.copytree(dataset_dir, broken)
  np.save(broken / "success_examples.npy", np.zeros((5, 3), np.float32))  # fetch_reach states are 10-d.
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--workdir={tmp_path / 'w'}",
       f"--dataset_dir={broken}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert proc.returncode != 0 and "success examples" in proc.stderr and "(5, 3)" in proc.stderr


@pytest.mark.slow
def test_a_failing_node_stops_the_whole_program_with_an_error(dataset_dir, tmp_path):
  broken = tmp_path / "data"
  shutil.copytree(dataset_dir, broken)
  shard = next(p for p in broken.iterdir() if ".tfrecord" in p.name)
  shard.write_bytes(shard.read_bytes()[:-200])  # The first episode still reads; the loader fails later.
  workdir = tmp_path / "run"
  # Raw observations: the launcher reads only the first episode, so the loader node meets the damage.
  proc = launch("bc", str(broken), workdir, num_steps=200, extra=["--nonormalize_observations"])
  assert proc.returncode != 0
  assert "[dataset_loader]" in proc.stderr and "node_failures.txt" in proc.stderr
  assert f"shard {shard.name} is truncated or corrupt" in proc.stderr
  assert (workdir / "node_failures.txt").exists()
  assert_no_node_left(workdir)


def test_a_damaged_dataset_is_refused_before_launch_naming_the_shard(dataset_dir, tmp_path):
  broken = tmp_path / "data"
  shutil.copytree(dataset_dir, broken)
  shard = sorted(p for p in broken.iterdir() if ".tfrecord" in p.name)[-1]
  shard.write_bytes(shard.read_bytes()[:-200])
  proc = launch("bc", str(broken), tmp_path / "run", num_steps=200)
  assert proc.returncode == 1
  assert f"shard {shard.name} is truncated or corrupt" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_workdir_refuses_a_different_run(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "run_config.json").write_text(json.dumps({"agent": "bc", "env": "fetch_reach"}))
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "launch", "local.py"), "--agent=laeo", f"--workdir={workdir}",
       f"--dataset_dir={dataset_dir}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert proc.returncode != 0 and "holds a different run" in proc.stderr
  assert json.loads((workdir / "run_config.json").read_text())["agent"] == "bc"  # Left untouched.


def test_run_config_holds_the_dataset_observation_stats_and_a_resumed_run_keeps_them(dataset_dir, tmp_path):
  from data_pipeline import rlds_io
  from launch import run

  def make(workdir, normalize=True):
    return run.make_run_config(
        agent="bc", env="fetch_reach", dataset_dir=dataset_dir, quality="medium", dataset_episodes=12,
        num_evaluators=1, num_steps=10, seed=0, workdir=str(workdir), episodes_per_eval=1, eval_every=5,
        checkpoint_every=5, log_every=5, preset="laptop", config_overrides=[], normalize_observations=normalize)

  observations = np.concatenate([e["observation"] for e in rlds_io.load_episodes(dataset_dir)])
  stats = make(tmp_path / "a").observation_stats
  np.testing.assert_allclose(stats["mean"], observations.mean(axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats["std"], observations.std(axis=0) + rlds_io.OBSERVATION_STD_EPS, rtol=1e-4)
  assert make(tmp_path / "b", normalize=False).observation_stats is None
  # A restart keeps the statistics the run started with (its networks were trained with them).
  stored = json.loads((tmp_path / "a" / "run_config.json").read_text())
  stored["observation_stats"]["mean"][0] += 1.0
  (tmp_path / "a" / "run_config.json").write_text(json.dumps(stored))
  assert make(tmp_path / "a").observation_stats == stored["observation_stats"]
  with pytest.raises(ValueError, match="normalize_observations"):
    make(tmp_path / "a", normalize=False)
