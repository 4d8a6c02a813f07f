"""Full local launches: every agent end to end through Reverb and Launchpad, resumption, and bad flags."""

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from data_pipeline import generate
from launch import checkpointing
from launch import evaluate
from launch import policy as policy_lib
from tests.helpers import make_tiny_run_config, read_episodes, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
  "laeo": ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "batch_size=32"],
  "oril": ["policy_hidden_sizes=(32,)", "critic_hidden_sizes=(32,)", "classifier_hidden_sizes=(32,)", "batch_size=32"],
  "purl": ["policy_hidden_sizes=(32,)", "critic_hidden_sizes=(32,)", "classifier_hidden_sizes=(32,)", "batch_size=32"],
  # BC's tiny update is so fast that 200 steps could end before the evaluator's first round: a larger batch
  # keeps the run long enough to be evaluated.
  "bc": ["policy_hidden_sizes=(256, 256)", "batch_size=2048"],
}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("data") / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 12, out, seed=0, num_success_examples=20, show_progress=False)
  return out


def launch_command(agent, dataset_dir, workdir, num_steps, extra=()):
  return [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    f"--agent={agent}",
    "--env=fetch_reach",
    f"--dataset_dir={dataset_dir}",
    f"--workdir={workdir}",
    f"--num_steps={num_steps}",
    "--num_evaluators=1",
    "--episodes_per_eval=2",
    "--eval_every=100",
    "--checkpoint_every=100",
    "--log_every=50",
    "--seed=0",
    *[f"--config={c}" for c in TINY[agent]],
    *extra,
  ]


def tagged_env(workdir):
  # Every node process inherits the tag, so its processes can be found (and leftovers detected).
  return {**os.environ, "MUJOCO_GL": "egl", "LAEO_TEST_TAG": str(workdir)}


def launch(agent, dataset_dir, workdir, num_steps, extra=()):
  return subprocess.run(
    launch_command(agent, dataset_dir, workdir, num_steps, extra),
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
    env=tagged_env(workdir),
  )


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def tagged_processes(workdir):
  """{pid: LAEO_NODE title, or None for the launcher} of the live processes started for this run."""
  tag = f"LAEO_TEST_TAG={workdir}".encode()
  found = {}
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
      with open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(") ", 1)[1].split()[0] == "Z":
          continue  # Exited, not yet reaped.
    except OSError:  # The process ended meanwhile, or is not ours to read.
      continue
    if tag in environ:
      titles = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"LAEO_NODE=")]
      found[int(pid)] = titles[0] if titles else None
  return found


def assert_no_node_left(workdir):
  leftovers = tagged_processes(workdir)
  assert not leftovers, f"processes still running: {leftovers}"


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
  assert sorted(os.listdir(workdir / "checkpoints")) == ["ckpt_0000000100", "ckpt_0000000200"]
  assert os.listdir(workdir / "tb" / "learner")
  assert json.loads((workdir / "run_config.json").read_text())["agent"] == agent
  # What a person watching sees: progress with an ETA and no library noise on the terminal (the full node logs
  # are in files), a video of the first evaluation round and the curves.
  output = proc.stdout + proc.stderr
  assert "ETA" in output and "deprecated" not in output and not re.search(r"^I\d{4} ", output, re.M)
  assert sorted(os.listdir(workdir / "logs" / "nodes"))[:2] == ["counter_0.log", "dataset_loader_0.log"]
  assert os.listdir(workdir / "videos") == ["evaluator_0_step00000000.gif"]
  assert (workdir / "curves.png").stat().st_size > 1000
  assert_no_node_left(workdir)


def adam_counts(state):
  """The update counts that optax's Adam states carry (integer scalars) in a learner state."""
  return [
    int(x)
    for x in jax.tree_util.tree_leaves(state)
    if np.ndim(x) == 0 and np.issubdtype(np.asarray(x).dtype, np.integer)
  ]


@pytest.mark.slow
def test_restarted_run_resumes_from_its_last_checkpoint(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  assert launch("laeo", dataset_dir, workdir, num_steps=100).returncode == 0
  saved = checkpointing.for_run(str(workdir)).load(100)["learner"]
  proc = launch("laeo", dataset_dir, workdir, num_steps=200)
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "resumed from step 100" in proc.stdout + proc.stderr
  steps = [int(float(r["learner_steps"])) for r in read_csv(workdir / "logs" / "learner" / "logs.csv")]
  assert steps == [50, 100, 150, 200]  # Counting went on from the checkpoint instead of restarting.
  assert sorted(os.listdir(workdir / "checkpoints")) == ["ckpt_0000000100", "ckpt_0000000200"]
  assert_no_node_left(workdir)
  # The learner restored the checkpoint, optimiser state included: Adam's update counts went on from 100
  # (a learner that started afresh would have counted 100 again).
  resumed = checkpointing.for_run(str(workdir)).load(200)["learner"]
  assert adam_counts(saved) and set(adam_counts(saved)) == {100}
  assert set(adam_counts(resumed)) == {200}
  result = evaluate.evaluate_latest_checkpoint(str(workdir), episodes=2, seed=0)
  assert result["learner_steps"] == 200 and 0.0 <= result["success_rate"] <= 1.0
  rows = read_csv(workdir / "logs" / "checkpoint_eval" / "logs.csv")
  assert [(int(float(r["learner_steps"])), int(r["episodes"])) for r in rows] == [(200, 2)]

  # The policy in two lines, in a process that never imports TensorFlow, Reverb or Launchpad.
  code = (
    "import sys; import numpy as np; from launch.policy import load_policy; "
    "policy = load_policy(sys.argv[1]); action = policy(np.zeros(10, np.float32)); "
    "batch = load_policy(sys.argv[1], step=100)(np.zeros((3, 10), np.float32)); "
    "print(policy.step, action.shape, batch.shape, bool(np.all(np.abs(action) <= 1.0)), "
    "[m for m in ('tensorflow', 'reverb', 'launchpad') if m in sys.modules])"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code, str(workdir)], capture_output=True, text=True, cwd=ROOT, timeout=300
  )
  assert proc.stdout.strip().splitlines()[-1] == "200 (4,) (3, 4) True []", proc.stderr[-3000:]
  with pytest.raises(FileNotFoundError, match="holds steps \\[100, 200\\]"):
    policy_lib.load_policy(str(workdir), step=150)
  with pytest.raises(ValueError, match="takes \\(10,\\)"):
    policy_lib.load_policy(str(workdir))(np.zeros(7, np.float32))


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
      capture_output=True,
      text=True,
      timeout=120,
      cwd=ROOT,
    )
    assert proc.returncode != 0 and message in proc.stderr, (flags, proc.stderr[-2000:])
  assert not (tmp_path / "w").exists()  # Nothing was written for a refused run.


@pytest.mark.parametrize(
  "broken, message",
  [
    (lambda e: np.zeros((5, 3), np.float32), r"success examples .*\(5, 3\)"),  # fetch_reach states are 10-d.
    (lambda e: np.where(np.arange(e.size).reshape(e.shape) == 4 * 10 + 2, np.nan, e), "example 4, dimension 2, is nan"),
  ],
)
def test_bad_success_examples_are_refused_before_launch(dataset_dir, tmp_path, broken, message):
  data = tmp_path / "data"
  shutil.copytree(dataset_dir, data)
  np.save(data / "success_examples.npy", broken(np.load(data / "success_examples.npy")))
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "launch", "local.py"),
      f"--workdir={tmp_path / 'w'}",
      f"--dataset_dir={data}",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=ROOT,
  )
  assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr[-2000:]
  assert not (tmp_path / "w").exists()  # Nothing was written for a refused run.


def rewritten(dataset_dir, out, change):
  """The dataset at `dataset_dir` written again to `out` after `change(episodes)`, with its success examples."""
  from dm_env import specs

  from data_pipeline import rlds_writer

  episodes = read_episodes(dataset_dir)
  change(episodes)
  observation_shape, action_shape = episodes[0]["observation"].shape[1:], episodes[0]["action"].shape[1:]
  rlds_writer.write_rlds_dataset(
    episodes,
    str(out),
    specs.Array(observation_shape, np.float32),
    specs.Array(action_shape, np.float32),
    None,
    len(episodes),
  )
  shutil.copy(os.path.join(dataset_dir, "success_examples.npy"), out)
  return str(out)


def test_nan_or_infinity_in_the_data_is_refused_naming_the_field_episode_and_step_before_anything_is_written(
  dataset_dir, tmp_path
):
  def set_value(field, episode, step, value):
    def change(episodes):
      episodes[episode][field][step, 1] = value

    return change

  cases = [
    (
      set_value("observation", 3, 5, np.nan),
      "the observation 'observation' of episode 3 .*, step 5, dimension 1, is nan",
    ),
    (
      set_value("observation", 0, 0, -np.inf),
      "the observation 'observation' of episode 0 .*, step 0, dimension 1, is -inf",
    ),
    (set_value("action", 7, 2, np.inf), "the action of episode 7 .*, step 2, dimension 1, is inf"),
    (set_value("action", 9, 0, np.nan), "the action of episode 9 .*, step 0, dimension 1, is nan"),
  ]
  for i, (change, message) in enumerate(cases):
    data = rewritten(dataset_dir, tmp_path / f"data{i}", change)
    with pytest.raises(ValueError, match=message):
      make_tiny_run_config(data, tmp_path / f"run{i}")
    assert not (tmp_path / f"run{i}").exists()  # Nothing was written for a refused run.
  # An episode's last action is never taken (no transition starts at the last step): it is not checked.
  data = rewritten(dataset_dir, tmp_path / "last", lambda episodes: episodes[2]["action"].__setitem__(-1, np.nan))
  assert make_tiny_run_config(data, tmp_path / "run_last").dataset_spec["num_episodes"] == 12


@pytest.mark.slow
def test_a_failing_node_stops_the_whole_program_with_an_error(dataset_dir, tmp_path):
  broken = tmp_path / "data"
  shutil.copytree(dataset_dir, broken)
  workdir = tmp_path / "run"
  # The run is created on the intact data (creating it reads every episode); the damage comes after, so the
  # loader node meets it.
  prepared = launch("bc", str(broken), workdir, num_steps=200, extra=["--prepare_only"])
  assert prepared.returncode == 0, prepared.stderr[-2000:]
  shard = next(p for p in broken.iterdir() if ".tfrecord" in p.name)
  shard.write_bytes(shard.read_bytes()[:-200])
  proc = launch("bc", str(broken), workdir, num_steps=200)
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
  assert proc.returncode == 2
  assert f"shard {shard.name} is truncated or corrupt" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_workdir_refuses_a_different_run(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "run_config.json").write_text(json.dumps({"agent": "bc", "env": "fetch_reach"}))
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "launch", "local.py"),
      "--agent=laeo",
      f"--workdir={workdir}",
      f"--dataset_dir={dataset_dir}",
    ],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=ROOT,
  )
  assert proc.returncode != 0 and "holds a different run" in proc.stderr
  assert json.loads((workdir / "run_config.json").read_text())["agent"] == "bc"  # Left untouched.


def test_run_config_holds_the_dataset_observation_stats_and_a_resumed_run_keeps_them(dataset_dir, tmp_path):
  from data_pipeline import rlds_writer

  def make(workdir, normalize=True):
    return make_tiny_run_config(dataset_dir, workdir, normalize_observations=normalize)

  observations = np.concatenate([e["observation"] for e in read_episodes(dataset_dir)])
  stats = make(tmp_path / "a").observation_stats
  np.testing.assert_allclose(stats["mean"], observations.mean(axis=0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats["std"], observations.std(axis=0) + rlds_writer.OBSERVATION_STD_EPS, rtol=1e-4)
  assert make(tmp_path / "b", normalize=False).observation_stats is None
  # A restart keeps the statistics the run started with (its networks were trained with them).
  stored = json.loads((tmp_path / "a" / "run_config.json").read_text())
  stored["observation_stats"]["mean"][0] += 1.0
  (tmp_path / "a" / "run_config.json").write_text(json.dumps(stored))
  assert make(tmp_path / "a").observation_stats == stored["observation_stats"]
  with pytest.raises(ValueError, match="normalize_observations"):
    make(tmp_path / "a", normalize=False)


def start_and_wait_for_checkpoint(dataset_dir, workdir, num_steps, extra=()):
  """Starts a BC run in the background and returns it once its first checkpoint (step 100) exists."""
  proc = subprocess.Popen(
    launch_command("bc", dataset_dir, workdir, num_steps, extra),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    cwd=ROOT,
    env=tagged_env(workdir),
  )
  wait_for(
    lambda: (workdir / "checkpoints" / "ckpt_0000000100").exists() or proc.poll() is not None,
    300,
    "the first checkpoint",
  )
  assert proc.poll() is None, proc.communicate()[1][-3000:]
  return proc


def node_pid(workdir, title):
  pids = [pid for pid, t in tagged_processes(workdir).items() if t == title]
  assert len(pids) == 1, tagged_processes(workdir)
  return pids[0]


def last_checkpoint_step(workdir):
  return checkpointing.for_run(str(workdir)).latest_step()


def learner_steps_logged(workdir):
  return [int(float(r["learner_steps"])) for r in read_csv(workdir / "logs" / "learner" / "logs.csv")]


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["learner/0", "reverb/0", "evaluator/0"])
def test_a_killed_node_stops_the_run_which_the_same_command_resumes(victim, dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start_and_wait_for_checkpoint(dataset_dir, workdir, num_steps=1_000_000)
  os.kill(node_pid(workdir, victim), signal.SIGKILL)
  killed = time.time()
  _, stderr = proc.communicate(timeout=120)
  assert time.time() - killed < 60, "the launcher took a minute or more to notice the dead node"
  assert proc.returncode == 1, stderr[-3000:]
  step = last_checkpoint_step(workdir)
  assert f"{victim} was killed by SIGKILL" in stderr
  assert f"last checkpoint, learner step {step} of 1000000" in stderr and "Rerun the same command" in stderr
  assert_no_node_left(workdir)

  # The learner stopped by SIGTERM (Reverb or an evaluator killed) checkpointed wherever it was.
  end = (step // 100 + 2) * 100
  resumed = launch("bc", dataset_dir, workdir, num_steps=end)
  assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
  assert f"resumed from step {step}" in resumed.stdout and "Run finished" in resumed.stdout
  expected = list(range(step // 50 * 50 + 50, end + 1, 50))  # The count went on from the checkpoint.
  assert learner_steps_logged(workdir)[-len(expected) :] == expected
  assert last_checkpoint_step(workdir) == end
  assert_no_node_left(workdir)


@pytest.mark.slow
def test_ctrl_c_checkpoints_the_step_reached_and_exits_130(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  # The learner also loads success examples sampled from the steps' flags into the workdir.
  proc = start_and_wait_for_checkpoint(dataset_dir, workdir, num_steps=1_000_000, extra=["--success_key=success"])
  assert np.load(workdir / "success_examples.npy").shape == (200, 10)
  proc.send_signal(signal.SIGINT)
  stdout, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-3000:]
  step = last_checkpoint_step(workdir)
  assert f"[learner] stopped at step {step}; checkpoint saved" in stdout  # Where it was, not at the period.
  assert f"Interrupted at learner step {step} of 1000000" in stderr and "Run finished" not in stdout + stderr
  assert_no_node_left(workdir)


@pytest.mark.slow
def test_max_restarts_restarts_a_killed_learner_from_its_checkpoint(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = start_and_wait_for_checkpoint(dataset_dir, workdir, num_steps=600, extra=["--max_restarts=1"])
  os.kill(node_pid(workdir, "learner/0"), signal.SIGKILL)
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-3000:]
  assert "learner/0 was killed by SIGKILL" in stdout and "restarting it from the last checkpoint" in stdout
  assert "Run finished (1 node restart)" in stdout
  resumed_from = int(re.search(r"\[learner\] resumed from step (\d+)", stdout).group(1))
  assert resumed_from >= 100 and resumed_from % 100 == 0
  # Every step logged once up to the checkpoint, then again from there to the end by the restarted learner.
  steps = learner_steps_logged(workdir)
  after = list(range(resumed_from + 50, 601, 50))
  assert steps[-len(after) :] == after and sorted(set(steps)) == list(range(50, 601, 50)), steps
  assert all(steps.count(x) == 1 for x in steps if x <= resumed_from), steps
  assert last_checkpoint_step(workdir) == 600
  # The evaluators saw the counter the restarted learner reset to its checkpoint, never beyond the run's end.
  evaluated = [int(float(r["learner_steps"])) for r in read_csv(workdir / "logs" / "evaluator_0" / "logs.csv")]
  assert evaluated and max(evaluated) <= 600
  assert_no_node_left(workdir)


def test_a_dataset_too_large_for_memory_is_refused_before_anything_is_written(dataset_dir, tmp_path, monkeypatch):
  import psutil

  from data_pipeline import batches
  from launch import prepare

  num_episodes, signature = batches.dataset_signature(dataset_dir)
  need = batches.estimated_table_bytes(num_episodes, signature)
  assert need > num_episodes * batches.padded_episode_bytes(signature)  # State data: more than raw.
  config = make_tiny_run_config(dataset_dir, tmp_path / "fits")
  prepare.check_dataset_fits_in_memory(config, available_bytes=2 * need)
  monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": need})())
  with pytest.raises(ValueError, match="would take about .* GiB in the Reverb server"):
    make_tiny_run_config(dataset_dir, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_a_dataset_is_admitted_when_its_replay_shards_fit_their_nodes(dataset_dir, tmp_path, monkeypatch):
  import psutil

  from data_pipeline import batches

  num_episodes, signature = batches.dataset_signature(dataset_dir)
  whole = batches.estimated_table_bytes(num_episodes, signature)
  # 70% of this holds half the dataset (one of two shards of 6 episodes) but not all of it.
  monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": int(whole / 0.7 * 0.75)})())
  config = make_tiny_run_config(dataset_dir, tmp_path / "two_nodes", num_replay_shards=2, shards_per_machine=1)
  assert config.num_replay_shards == 2
  # The same two shards on one machine (local.py) do not fit, nor one server holding everything.
  with pytest.raises(ValueError, match="its 12 episodes would take"):
    make_tiny_run_config(dataset_dir, tmp_path / "one_machine", num_replay_shards=2)
  with pytest.raises(ValueError, match="6 of its 12 episodes .*largest of 2 replay shards"):
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": int(whole / 0.7 * 0.3)})())
    make_tiny_run_config(dataset_dir, tmp_path / "too_few_nodes", num_replay_shards=2, shards_per_machine=1)


@pytest.mark.slow
def test_a_local_run_with_two_replay_shards_loads_each_episode_once_and_finishes(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = launch("bc", dataset_dir, workdir, num_steps=100, extra=["--num_replay_shards=2", "--num_evaluators=0"])
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  logs = os.listdir(workdir / "logs" / "nodes")
  assert {"reverb_0.log", "reverb_1.log"} <= set(logs), logs
  loader = (workdir / "logs" / "nodes" / "dataset_loader_0.log").read_text()
  assert "6 into shard 0, 6 into shard 1" in loader, loader[-2000:]
  assert "ckpt_0000000100" in os.listdir(workdir / "checkpoints")
  assert_no_node_left(workdir)


def test_success_examples_from_a_file_or_from_a_step_flag(dataset_dir, tmp_path):
  def make(workdir, **kwargs):
    return make_tiny_run_config(dataset_dir, workdir, **kwargs)

  # --success_key: a seeded sample of the flagged steps' observations, kept in the workdir.
  config = make(tmp_path / "flag", success_key="success", num_success_examples=7)
  assert config.success_examples == str(tmp_path / "flag" / "success_examples.npy") and config.success_key == "success"
  examples = np.load(config.success_examples)
  flagged = np.concatenate([e["observation"][e["success"]] for e in read_episodes(dataset_dir)])
  assert examples.shape == (7, 10) and all((flagged == x).all(axis=1).any() for x in examples)
  # --success_examples: a user's file, checked against the environment's observations.
  good = tmp_path / "good.npy"
  np.save(good, examples[:3])
  assert make(tmp_path / "file", success_examples=str(good)).success_examples == str(good)
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((5, 3), np.float32))
  refusals = [
    ({"success_examples": str(bad)}, ValueError, r"\(5, 3\)"),
    ({"success_examples": str(tmp_path / "missing.npy")}, FileNotFoundError, "No success examples file"),
    ({"success_key": "nope"}, ValueError, "No step field 'nope'.*'success'"),
    ({"success_key": "is_terminal"}, ValueError, "never true"),
    ({"success_key": "success", "success_examples": str(good)}, ValueError, "at most one"),
  ]
  for i, (kwargs, error, message) in enumerate(refusals):
    with pytest.raises(error, match=message):
      make(tmp_path / f"refused{i}", **kwargs)
    assert not (tmp_path / f"refused{i}").exists()  # Nothing written for a refused run.


# A short BC run without evaluators: what the checkpoint and divergence tests need, and nothing more.
QUICK_BC = ["--num_evaluators=0", "--config=batch_size=64"]


def truncate_newest_file(checkpoint):
  files = [os.path.join(d, n) for d, _, names in os.walk(checkpoint / "state") for n in names]
  victim = max(files, key=os.path.getsize)
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)


def flip_a_bit(checkpoint):
  files = [os.path.join(d, n) for d, _, names in os.walk(checkpoint / "state") for n in names]
  victim = max(files, key=os.path.getsize)
  data = bytearray(open(victim, "rb").read())
  data[len(data) // 3] ^= 0x01
  open(victim, "wb").write(bytes(data))


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  assert launch("bc", dataset_dir, workdir, num_steps=200, extra=QUICK_BC).returncode == 0
  for damage, newest, end in ((truncate_newest_file, 200, 300), (flip_a_bit, 300, 400)):
    damage(workdir / "checkpoints" / f"ckpt_{newest:010d}")
    proc = launch("bc", dataset_dir, workdir, num_steps=end, extra=QUICK_BC)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert f"warning: {workdir}/checkpoints/ckpt_{newest:010d} is damaged" in proc.stderr
    assert f"resumed from step {newest - 100}" in proc.stdout and f"Run finished: {end} learner steps" in proc.stdout
    assert last_checkpoint_step(workdir) == end
  # Set aside and kept, whatever the rotation dropped since.
  assert sorted(os.listdir(workdir / "checkpoints")) == [
    "ckpt_0000000200",
    "ckpt_0000000200.damaged",
    "ckpt_0000000300",
    "ckpt_0000000300.damaged",
    "ckpt_0000000400",
  ]
  assert_no_node_left(workdir)


def finite_checkpoints(workdir):
  from agents.common import learner as learner_lib

  checkpointer = checkpointing.for_run(str(workdir))
  steps = [int(n[len("ckpt_") :]) for n in os.listdir(workdir / "checkpoints") if n.startswith("ckpt_")]
  return all(not learner_lib.non_finite(checkpointer.load(step)["learner"]) for step in steps)


@pytest.mark.slow
def test_a_diverging_run_exits_1_naming_the_step_and_resumes_with_a_changed_config(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = launch("laeo", dataset_dir, workdir, num_steps=300, extra=["--config=learning_rate=1e9", "--max_restarts=1"])
  output = proc.stdout + proc.stderr
  assert proc.returncode == 1, output[-4000:]
  assert "restarting" not in output  # It would diverge again from the same checkpoint.
  # The first call of 10 updates diverged: the run stops there, never says it finished, and writes nothing after.
  assert re.search(r"error: The learner diverged at learner step 10 of 300: \w*loss is (nan|inf|-inf)", proc.stderr)
  assert "it has no checkpoint yet" in proc.stderr and "Traceback" not in proc.stderr
  assert "Run finished" not in output and not re.search(r"\[learner\] step \d+/300", output)
  assert (
    not os.path.exists(workdir / "checkpoints") and json.loads((workdir / "diverged.json").read_text())["step"] == 10
  )
  assert_no_node_left(workdir)
  # The same command with a changed config: not other networks, but another learning rate (the default).
  refused = launch("laeo", dataset_dir, workdir, num_steps=100, extra=["--config=hidden_sizes=(16,)"])
  assert (
    refused.returncode == 2
    and "not with networks of other shapes (changed: hidden_sizes, learning_rate)" in refused.stderr
  ), refused.stderr[-3000:]
  resumed = launch("laeo", dataset_dir, workdir, num_steps=100)
  assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
  assert "diverged at learner step 10: resuming from step 0 with a changed config (learning_rate: 1000000000.0 -> " in (
    resumed.stdout
  )
  assert "Run finished: 100 learner steps" in resumed.stdout and finite_checkpoints(workdir)
  assert "learning_rate" not in json.loads((workdir / "run_config.json").read_text())["overrides"]
  (change,) = [json.loads(line) for line in (workdir / "config_changes.jsonl").read_text().splitlines()]
  assert change["diverged_at_step"] == 10 and change["overrides"] == {"learning_rate": [1e9, None]}
  assert not (workdir / "diverged.json").exists()
  assert_no_node_left(workdir)


@pytest.mark.slow
def test_a_run_that_diverges_after_its_checkpoints_keeps_the_last_finite_one_as_its_latest(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  assert launch("bc", dataset_dir, workdir, num_steps=100, extra=QUICK_BC).returncode == 0
  # Parameters grown huge but still finite, as before an overflow: the next update's loss is not finite.
  checkpointer = checkpointing.for_run(str(workdir))
  saved = checkpointer.load(100)
  huge = jax.tree_util.tree_map(lambda x: x * 1e30 if np.issubdtype(x.dtype, np.floating) else x, saved["learner"])
  checkpointer.save(100, huge, saved["counts"])
  proc = launch("bc", dataset_dir, workdir, num_steps=200, extra=QUICK_BC)
  assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
  assert re.search(r"error: The learner diverged at learner step 110 of 200: \w+ is (nan|inf|-inf)", proc.stderr)
  assert "its latest, step 100, holds finite values" in proc.stderr and "Run finished" not in proc.stdout
  assert os.listdir(workdir / "checkpoints") == ["ckpt_0000000100"] and last_checkpoint_step(workdir) == 100
  assert finite_checkpoints(workdir)
  assert (
    "[learner] The learner diverged at learner step 110 of 200: bc_loss is nan"
    in (workdir / "node_failures.txt").read_text()
  )
  assert_no_node_left(workdir)


def test_a_workdir_of_pickled_checkpoints_is_refused_before_anything_is_read_or_written(dataset_dir, tmp_path):
  workdir = tmp_path / "run"
  (workdir / "checkpoints").mkdir(parents=True)
  marker = tmp_path / "code_ran"
  # Unpickling this would create the marker file.
  bomb = b"cbuiltins\nopen\n(" + pickle_string(str(marker)) + pickle_string("w") + b"tR."
  (workdir / "checkpoints" / "ckpt_0000000100.pkl").write_bytes(bomb)
  with pytest.raises(ValueError, match="pickle format .*convert_pickle_checkpoints.py"):
    make_tiny_run_config(dataset_dir, workdir)
  assert not marker.exists() and sorted(os.listdir(workdir)) == ["checkpoints"]


def pickle_string(text):
  return b"V" + text.encode() + b"\n"


class SteppingLearner:
  """A learner whose metrics or state turn non-finite at a chosen step."""

  def __init__(self, metrics_diverge_at=None, state_diverges_at=None):
    self.steps = 0
    self.metrics_diverge_at, self.state_diverges_at = metrics_diverge_at, state_diverges_at

  def step(self, updates):
    from agents.common import learner as learner_lib

    self.steps += updates
    if self.metrics_diverge_at is not None and self.steps >= self.metrics_diverge_at:
      raise learner_lib.DivergenceError(self.steps, {"critic_loss": "nan"})

  def save(self):
    diverged = self.state_diverges_at is not None and self.steps >= self.state_diverges_at
    return {"critic_params": {"w": np.full(3, np.inf if diverged else 1.0, np.float32)}}


def learner_worker(workdir, learner):
  """A LearnerWorker around `learner`, without Reverb or networks: its train loop alone."""
  from acme.utils import counting

  from launch import nodes
  from launch import run_config

  worker = object.__new__(nodes.LearnerWorker)
  worker._config = run_config.RunConfig(
    agent="bc",
    env=None,
    dataset_dir="",
    workdir=str(workdir),
    num_steps=50,
    num_evaluators=0,
    checkpoint_every=10,
    log_every=10,
    num_sgd_steps_per_step=5,
  )
  worker._counter, worker._learner = counting.Counter(), learner
  worker._checkpointer = checkpointing.for_run(str(workdir))
  worker._start_step = worker._last_checkpoint = 0
  return worker


@pytest.mark.parametrize(
  "learner, step, what",
  [
    (SteppingLearner(metrics_diverge_at=25), 25, "critic_loss is nan"),
    (SteppingLearner(state_diverges_at=25), 30, "critic_params/w is inf"),
  ],
)
def test_the_learner_stops_at_the_first_non_finite_metric_or_state_with_no_checkpoint_after_it(
  tmp_path, learner, step, what
):
  from agents.common import learner as learner_lib
  from launch import failures

  worker = learner_worker(tmp_path, learner)
  with pytest.raises(learner_lib.DivergenceError, match=f"diverged at step {step}: {what}"):
    worker.train()
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["ckpt_0000000010", "ckpt_0000000020"]
  divergence = failures.read_divergence(str(tmp_path))
  assert (divergence["step"], divergence["last_checkpoint"]) == (step, 20) and what.endswith(
    divergence["non_finite"][what.split(" is ")[0]]
  )
  message = worker.describe_divergence(learner_lib.DivergenceError(step, divergence["non_finite"]))
  assert f"diverged at learner step {step} of 50: {what}" in message and "resume from step 20" in message


def test_an_evaluator_does_not_evaluate_non_finite_parameters(capsys):
  from acme.utils import counting

  from launch import nodes

  class Variables:
    params = {"policy_mlp": {"w": np.array([1.0, np.nan], np.float32)}}

    def update_and_wait(self):
      pass

  evaluator = object.__new__(nodes.Evaluator)
  evaluator._counter, evaluator._variables, evaluator._label = counting.Counter(), Variables(), "evaluator_0"
  evaluator._env, evaluator._rounds, evaluator._video_every = type("Env", (), {"can_render": False})(), 0, 0
  evaluator.run_episode = lambda *args: pytest.fail("a diverged policy was rolled out")
  assert evaluator.evaluate_round() is None
  assert "not evaluating the diverged parameters of learner step 0: policy_mlp/w is nan" in capsys.readouterr().out


def test_a_stopped_evaluator_frees_its_environment_on_its_own_thread_before_it_exits(monkeypatch):
  """At the program's stop the evaluator's worker ends its episode and closes the environment (its GL context)
  itself, and the node waits for that: exit handlers freeing the context under a rendering thread segfaulted."""
  import threading
  import time

  from launch import nodes

  stop, events = threading.Event(), []
  monkeypatch.setattr(nodes.lp, "stop_event", lambda: stop)

  class Env:
    def close(self):
      time.sleep(0.3)  # Freeing a GL context takes a moment.
      events.append(("closed", threading.get_ident()))

  def evaluate_until(should_stop):
    evaluator._env = Env()  # Made on the thread that renders.
    events.append(("rendering", threading.get_ident()))
    threading.Timer(0.2, stop.set).start()
    while not should_stop():
      time.sleep(0.05)
    time.sleep(0.5)  # The episode under way when the stop came.

  evaluator = object.__new__(nodes.Evaluator)
  evaluator._env, evaluator._label, evaluator._workdir = None, "evaluator_0", "/nonexistent"
  evaluator.evaluate_until = evaluate_until
  evaluator.run()
  (_, worker), closed = events[0], events[1:]
  assert closed == [("closed", worker)] and worker != threading.get_ident()
  assert evaluator._env is None


def test_every_evaluation_round_acts_with_the_parameters_the_learner_holds_then(dataset_dir, tmp_path):
  """The evaluator fetches the learner's policy at the start of each round and every action of the round comes
  from those parameters (not the first ones it ever fetched, nor a mix)."""
  from acme import core
  from acme.utils import counting

  from agents.common import learner as learner_lib
  from launch import nodes

  config = make_tiny_run_config(dataset_dir, tmp_path / "run", episodes_per_eval=1, video_every=0)
  builder = config.make_builder()
  networks = builder.make_networks(*config.specs(), config.observation_stats)
  examples = config.load_success_examples()[:1]
  state = builder.make_learner(networks, iter(()), examples, jax.random.PRNGKey(0)).save()
  (initial,) = learner_lib.state_variables(state, ["policy"])

  class Learner(core.VariableSource):
    version = 0

    def get_variables(self, names):
      assert list(names) == ["policy"]
      return [jax.tree_util.tree_map(lambda x: x * (1.0 + self.version), initial)]

  learner, counter = Learner(), counting.Counter()
  evaluator = nodes.Evaluator(config, learner, counter, "evaluator_0", seed=1)
  policy, used = evaluator._policy, []

  leaf = max(
    range(len(jax.tree_util.tree_leaves(initial))), key=lambda i: abs(jax.tree_util.tree_leaves(initial)[i]).max()
  )
  marker = np.asarray(jax.tree_util.tree_leaves(initial)[leaf]).ravel()
  index = int(np.abs(marker).argmax())

  def spy(params, key, observation, evaluation):
    value = np.asarray(jax.tree_util.tree_leaves(params)[leaf]).ravel()[index]
    used.append(round(float(value / marker[index]) - 1.0))  # The version of the parameters acted with.
    return policy(params, key, observation, evaluation=evaluation)

  evaluator._policy = spy
  rounds = []
  for version in (0, 3, 7):
    learner.version = version
    counter.increment(learner_steps=5)
    before = len(used)
    assert evaluator.evaluate_round()["learner_steps"] == counter.get_counts()["learner_steps"]
    rounds.append(set(used[before:]))
  assert rounds == [{0}, {3}, {7}]


def test_every_run_option_is_a_flag_of_its_own_name_and_nothing_else_is_needed_to_add_one():
  """prepare_run takes RunConfig's fields and PREPARATION_OPTIONS by name, and local.py (so slurm.py too) passes
  each from the flag of that name: a new run option is a RunConfig field plus a flag."""
  from launch import prepare

  names = prepare.option_names()
  assert {"agent", "dataset_dir", "observation_key", "action_key", "image_size", "config", "preset"} <= set(names)
  code = "from absl import flags; from launch import local, prepare; "
  code += "print([n for n in prepare.option_names() if n not in flags.FLAGS])"
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr[-2000:]
  with pytest.raises(ValueError, match="Unknown run options \\['nonsense'\\]"):
    prepare.prepare_run(agent="bc", env=None, dataset_dir="", workdir="w", num_steps=1, nonsense=1)
