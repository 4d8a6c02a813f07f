"""A user's own RLDS data (written by TFDS's builder API, not laeo's writer) trains, and its policy acts."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipeline import action_scaling
from data_pipeline import batches
from data_pipeline import rlds_reader
from launch import evaluate
from tests.helpers import make_tiny_run_config
from tests.programs import foreign_robot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_LAEO = ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "batch_size=16"]
TINY_TD3 = ["policy_hidden_sizes=(32,)", "critic_hidden_sizes=(32,)", "classifier_hidden_sizes=(32,)", "batch_size=16"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS data_dir holding foreign_robot's two configs."""
  root = str(tmp_path_factory.mktemp("tfds"))
  for config in ("unit", "wide"):
    foreign_robot.prepare(root, config)
  return root


def unit_dir(data_dir):
  return os.path.join(data_dir, "foreign_robot", "unit", "1.1.0")


def raw_episodes(wide=False):
  return foreign_robot.generate_episodes(wide, foreign_robot.ForeignRobot.NUM_EPISODES)


def make_config(dataset_dir, workdir, **kwargs):
  """test_launch's tiny BC run config, on foreign_robot's state and success flag, with no environment."""
  defaults = {"env": None, "dataset_episodes": 0, "num_evaluators": 0}
  defaults.update(observation_key="observation/state", success_key="is_success")
  return make_tiny_run_config(dataset_dir, workdir, **{**defaults, **kwargs})


def test_describe_reads_shapes_from_the_features_and_lengths_and_action_range_from_the_episodes(data_dir):
  raw = raw_episodes(wide=True)
  kept = [e for e in raw if len(e) >= 2]
  spec = rlds_reader.describe([os.path.join(data_dir, "foreign_robot", "wide", "1.1.0")], "observation/state")
  taken = np.concatenate([[s["action"] for s in e[:-1]] for e in kept])
  assert (spec.num_episodes, spec.num_skipped_episodes) == (len(kept), len(raw) - len(kept))
  assert spec.max_episode_length == max(len(e) for e in raw) and len({len(e) for e in kept}) > 3
  assert (spec.observation_shape, spec.observation_dtype, spec.action_shape) == ((5,), "float32", (2,))
  np.testing.assert_allclose(spec.action_min, taken.min(axis=0))
  np.testing.assert_allclose(spec.action_max, taken.max(axis=0))
  assert spec.action_max[1] > 1.5  # The wide dimension leaves [-1, 1].
  image = rlds_reader.describe([os.path.join(data_dir, "foreign_robot", "wide", "1.1.0")], "observation/camera")
  assert (image.observation_shape, image.observation_dtype, image.is_image) == ((8, 8, 3), "uint8", True)
  # Two directories are shards of one dataset.
  assert rlds_reader.describe(
    [unit_dir(data_dir), os.path.join(data_dir, "foreign_robot", "wide", "1.1.0")], "observation/state"
  ).num_episodes == 2 * len(kept)


def test_episodes_come_as_float32_with_terminal_steps_and_rescaled_actions(data_dir):
  wide_dir = os.path.join(data_dir, "foreign_robot", "wide", "1.1.0")
  spec = rlds_reader.describe([wide_dir], "observation/state")
  scaling = action_scaling.resolve("auto", spec.action_min, spec.action_max)
  episodes = list(rlds_reader.iter_episodes([wide_dir], "observation/state", scaling, flag_key="is_success"))
  by_start = {e[0]["observation"]["state"].astype(np.float32).tobytes(): e for e in raw_episodes(wide=True)}
  assert len(episodes) == spec.num_episodes
  for episode in episodes:
    raw = by_start[episode["observation"][0].tobytes()]
    assert episode["observation"].dtype == np.float32 and episode["action"].dtype == np.float32
    np.testing.assert_allclose(episode["observation"], [s["observation"]["state"] for s in raw], rtol=1e-6)
    np.testing.assert_array_equal(episode["is_terminal"], [s["is_terminal"] for s in raw])
    np.testing.assert_array_equal(episode["flag"], [s["is_success"] for s in raw])
    taken = np.array([s["action"] for s in raw[:-1]])
    np.testing.assert_allclose(scaling.unnormalise(episode["action"][:-1]), taken, rtol=1e-5, atol=1e-5)
    assert np.all(np.abs(episode["action"]) <= 1.0 + 1e-6)
  assert any(e["is_terminal"][-1] for e in episodes) and not all(e["is_terminal"][-1] for e in episodes)


def test_transition_batches_of_variable_length_data_have_zero_discount_exactly_into_terminal_states(data_dir):
  episodes = list(rlds_reader.iter_episodes([unit_dir(data_dir)], "observation/state"))
  terminal = {e["observation"][-1].tobytes() for e in episodes if e["is_terminal"][-1]}
  last = {e["observation"][-1].tobytes() for e in episodes}
  batch = next(batches.make_in_memory_iterator(episodes, "transition", 512, 0.99, seed=0))
  into_terminal = np.array([o.tobytes() in terminal for o in batch["next_observation"]])
  np.testing.assert_array_equal(batch["discount"] == 0.0, into_terminal)
  assert into_terminal.any() and not into_terminal.all()
  # A state that ends its episode is never the start of a transition.
  assert not any(o.tobytes() in last for o in batch["observation"])


def test_action_scaling_maps_to_the_unit_box_and_back_and_never_clips():
  scaling = action_scaling.resolve("auto", [-1.0, 0.0, 2.0], [1.0, 4.0, 2.0])
  actions = np.array([[-1.0, 0.0, 2.0], [1.0, 4.0, 2.0], [0.5, 3.0, 2.0]], np.float32)
  unit = scaling.normalise(actions)
  np.testing.assert_allclose(unit, [[-1, -1, 0], [1, 1, 0], [0.5, 0.5, 0]], atol=1e-6)
  np.testing.assert_allclose(scaling.unnormalise(unit), actions, atol=1e-6)
  assert action_scaling.resolve("auto", [-1.0, -0.5], [1.0, 0.9]) is None  # Already in [-1, 1]: left alone.
  np.testing.assert_allclose(action_scaling.resolve("data", [-0.5], [0.5]).high, [0.5])
  given = action_scaling.resolve("[-2, 0],[2, 8]", [-1.0, 1.0], [1.0, 4.0])
  np.testing.assert_allclose((given.low, given.high), ([-2, 0], [2, 8]))
  with pytest.raises(ValueError, match="dimension 1 spans .* never clipped"):
    action_scaling.resolve("-1,1", [-1.0, 0.0], [1.0, 4.0])
  with pytest.raises(ValueError, match="is not 'auto'"):
    action_scaling.resolve("wide", [-1.0], [1.0])


def test_a_tfds_name_resolves_to_its_newest_prepared_version(data_dir, tmp_path):
  assert rlds_reader.tfds_name_dir("foreign_robot/unit", data_dir) == unit_dir(data_dir)
  assert rlds_reader.tfds_name_dir("foreign_robot/unit:1.1.0", data_dir) == unit_dir(data_dir)
  with pytest.raises(FileNotFoundError, match=r"no version 9.9.9 .* \['1.1.0'\]"):
    rlds_reader.tfds_name_dir("foreign_robot/unit:9.9.9", data_dir)
  with pytest.raises(FileNotFoundError, match="No prepared TFDS dataset 'robosuite'"):
    rlds_reader.tfds_name_dir("robosuite", data_dir)


def test_bad_keys_missing_success_examples_and_mismatched_shapes_are_refused_leaving_nothing(data_dir, tmp_path):
  np.save(tmp_path / "wrong_shape.npy", np.zeros((4, 7)))
  refusals = [
    ({"observation_key": "observation/gripper"}, ValueError, r"No step field 'observation/gripper'.*'observation/state'"),
    ({"observation_key": "observation"}, ValueError, r"is a dict; name the fields to use with --observation_key .* e.g. --observation_key=observation/camera,observation/state\."),
    ({"observation_key": "observation/camera", "config": ["torso_padding='VALID'"]}, ValueError, r"\(8, 8, 3\) images; the conv torso .* at least 36x36"),
    ({"success_key": None}, ValueError, "No success examples: .* --success_examples=FILE.npy .* or --success_key=FIELD"),
    ({"success_key": "is_collision"}, ValueError, "'is_collision' is never true"),
    ({"success_key": "is_grasped"}, ValueError, "No step field 'is_grasped'"),
    ({"success_key": None, "success_examples": str(tmp_path / "wrong_shape.npy")}, ValueError, r"\(4, 7\).*\(N >= 1, 5\)"),
    ({"num_evaluators": 1}, ValueError, "No environment to evaluate in"),
    ({"env": "fetch_reach", "num_evaluators": 1}, ValueError, "fetch_reach cannot evaluate .* no field 'state'"),
    ({"env": "no_such_package.env:make", "num_evaluators": 1}, ValueError, "no module 'no_such_package.env'"),
    ({"action_bounds": "-1,1", "dataset_dir": None, "tfds_name": "foreign_robot/wide", "tfds_data_dir": data_dir}, ValueError, "never clipped"),
    ({"dataset_dir": None, "tfds_name": "foreign_robot/other", "tfds_data_dir": data_dir}, FileNotFoundError, "No prepared TFDS dataset"),
  ]  # fmt: skip
  for i, (kwargs, error, message) in enumerate(refusals):
    with pytest.raises(error, match=message):
      make_config(kwargs.pop("dataset_dir", unit_dir(data_dir)), tmp_path / f"refused{i}", **kwargs)
    assert not (tmp_path / f"refused{i}").exists(), kwargs  # Nothing written for a refused run.
  config = make_config(unit_dir(data_dir), tmp_path / "good")
  assert config.env is None and config.action_scaling is None and config.dataset_spec["observation_shape"] == [5]
  assert np.load(config.success_examples).shape == (200, 5)


def launch(workdir, *flags):
  return subprocess.run(
    [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--workdir={workdir}", "--seed=0", *flags],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
    env={**os.environ, "MUJOCO_GL": "egl"},
  )


def act_in_fresh_process(workdir):
  """load_policy in a process of its own: its actions on a flat and a nested observation, and the modules it
  imported."""
  script = f"""
import json, sys
import numpy as np
from launch.policy import load_policy
policy = load_policy({str(workdir)!r})
rng = np.random.default_rng(0)
flat = policy(rng.normal(size=(64, 5)))
nested = policy({{"state": rng.normal(size=5), "camera": np.zeros((8, 8, 3), np.uint8)}})
heavy = [m for m in ("tensorflow", "reverb", "launchpad") if m in sys.modules]
print(json.dumps({{"flat": flat.tolist(), "nested": nested.tolist(), "heavy": heavy, "step": policy.step}}))
"""
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_tfds_builder_dataset_trains_without_an_environment_and_its_policy_acts(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = launch(
    workdir,
    "--agent=laeo",
    f"--dataset_dir={unit_dir(data_dir)}",
    "--observation_key=observation/state",
    "--success_key=is_success",
    "--num_evaluators=0",
    "--num_steps=40",
    "--checkpoint_every=20",
    "--log_every=20",
    *[f"--config={c}" for c in TINY_LAEO],
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "Run finished: 40 learner steps" in proc.stdout
  acted = act_in_fresh_process(workdir)
  assert acted["heavy"] == [] and acted["step"] == 40
  flat = np.array(acted["flat"])
  assert flat.shape == (64, 2) and np.all(np.abs(flat) <= 1.0) and np.array(acted["nested"]).shape == (2,)
  with pytest.raises(ValueError, match="trained without an environment: name one to evaluate in with --env"):
    evaluate.evaluate_latest_checkpoint(str(workdir), episodes=1, seed=0)


@pytest.mark.slow
def test_rescaled_actions_train_by_name_and_evaluate_in_a_users_gymnasium_env(data_dir, tmp_path):
  workdir = tmp_path / "run"
  proc = launch(
    workdir,
    "--agent=oril",
    "--tfds_name=foreign_robot/wide",
    f"--tfds_data_dir={data_dir}",
    "--observation_key=observation/state",
    "--success_key=is_success",
    "--env=tests.programs.foreign_robot:make_env",
    "--num_evaluators=1",
    "--episodes_per_eval=2",
    "--eval_every=20",
    "--num_steps=40",
    "--checkpoint_every=20",
    "--log_every=20",
    *[f"--config={c}" for c in TINY_TD3],
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  stored = json.loads((workdir / "run_config.json").read_text())
  low, high = np.array(stored["action_scaling"]["low"]), np.array(stored["action_scaling"]["high"])
  assert low[1] >= 0.0 and high[1] > 1.5  # Measured from the data: the wide dimension's own range.
  with open(workdir / "logs" / "evaluator_0" / "logs.csv") as f:
    rows = f.read().splitlines()
  assert len(rows) >= 2 and "success_rate" in rows[0]  # The env refuses actions outside its space: none came.
  flat = np.array(act_in_fresh_process(workdir)["flat"])
  assert flat.shape == (64, 2) and np.all(flat >= low - 1e-6) and np.all(flat <= high + 1e-6)
  assert evaluate.evaluate_latest_checkpoint(str(workdir), episodes=3, seed=1)["episodes"] == 3
