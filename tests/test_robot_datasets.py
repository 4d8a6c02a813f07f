"""Robot datasets in the Open X-Embodiment layout (tests/programs/oxe_robot.py, written by TFDS's own builder):
dict actions, two cameras of their own sizes beside a state vector, success examples from solved last steps."""

import json
import os
import subprocess
import sys

import haiku as hk
import jax
import numpy as np
import pytest

from agents.common import networks as common_networks
from data_pipeline import rlds_reader
from data_pipeline import step_format
from tests.programs import oxe_robot
from tests.helpers import make_tiny_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAMERAS_AND_STATE = "observation/image,observation/wrist_image,observation/state"
ARM_AND_GRIPPER = "action/world_vector,action/gripper_closedness_action"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return oxe_robot.prepare(str(tmp_path_factory.mktemp("tfds")))


def test_area_resize_averages_whole_blocks_and_keeps_flat_images_flat():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 3, 48, 80, 3)).astype(np.uint8)
  halved = step_format.resize_images(images, (24, 40))
  blocks = images.reshape(2, 3, 24, 2, 40, 2, 3).astype(np.float64).mean(axis=(3, 5))
  np.testing.assert_array_equal(halved, np.rint(blocks).astype(np.uint8))
  flat = np.full((30, 50, 3), 77, np.uint8)
  for size in ((64, 64), (7, 9), (30, 50)):
    resized = step_format.resize_images(flat, size)
    assert resized.shape == (*size, 3) and np.all(resized == 77)
  assert step_format.resize_images(images, (48, 80)) is images


def test_packed_observations_unpack_to_their_fields_and_the_encoder_joins_one_torso_per_image():
  rng = np.random.default_rng(1)
  layout = step_format.ObservationLayout(
    (
      step_format.Field("observation/image", "image", (16, 16, 3)),
      step_format.Field("observation/state", "vector", (4,)),
      step_format.Field("observation/wrist", "image", (8, 8, 1)),
    )
  )
  values = {
    "observation/image": rng.integers(0, 256, (5, 32, 48, 3)).astype(np.uint8),
    "observation/state": rng.normal(size=(5, 4)),
    "observation/wrist": rng.integers(0, 256, (5, 8, 8, 1)).astype(np.uint8),
  }
  packed = layout.convert(values)
  assert packed.shape == (5, 16 * 16 * 3 + 16 + 64) == (5, *layout.shape) and packed.dtype == np.uint8
  unpacked = dict((f.path, np.asarray(v)) for f, v in step_format.unpack(jax.numpy.asarray(packed), layout))
  np.testing.assert_array_equal(
    unpacked["observation/image"], step_format.resize_images(values["observation/image"], (16, 16))
  )
  np.testing.assert_array_equal(unpacked["observation/state"], values["observation/state"].astype(np.float32))
  np.testing.assert_array_equal(unpacked["observation/wrist"], values["observation/wrist"])

  stats = {"mean": [0.5, -1.0, 2.0, 0.0], "std": [2.0, 0.5, 1.0, 4.0]}
  encode = hk.without_apply_rng(
    hk.transform(lambda x: common_networks.Encoder(layout.spec(), torso_channels=(4, 8, 8), observation_stats=stats)(x))
  )
  params = encode.init(jax.random.PRNGKey(0), packed)
  assert (
    sorted(name.split("/")[-2] for name in params if "conv" in name) == ["atari_torso_0"] * 3 + ["atari_torso_1"] * 3
  )
  features = np.asarray(encode.apply(params, packed))
  standardised = (values["observation/state"].astype(np.float32) - stats["mean"]) / np.float32(stats["std"])
  np.testing.assert_allclose(features[:, -4:], standardised, rtol=1e-6)
  assert features.shape == (5, 2 * 2 * 8 + 1 * 1 * 8 + 4)  # SAME padding: 16 -> 4 -> 2 -> 2; 8 -> 2 -> 1 -> 1.


def test_dict_actions_join_in_the_order_named_and_split_back_to_the_datasets_structure():
  layout = step_format.ActionLayout(("action/world_vector", "action/gripper/closedness"), ((3,), ()))
  joined = layout.join({"action/world_vector": np.ones((2, 3)), "action/gripper/closedness": np.array([5.0, 6.0])})
  np.testing.assert_array_equal(joined, [[1, 1, 1, 5], [1, 1, 1, 6]])
  split = layout.split(joined)
  assert split["world_vector"].shape == (2, 3) and split["gripper"]["closedness"].tolist() == [5.0, 6.0]


def test_an_oxe_dataset_reads_dict_actions_resized_cameras_and_state_as_the_data_holds_them(dataset):
  raw = {tuple(e[0]["observation"]["state"]): e for e in oxe_robot.generate_episodes(oxe_robot.OxeRobot.NUM_EPISODES)}
  measured = rlds_reader.measure([dataset], CAMERAS_AND_STATE, ARM_AND_GRIPPER, (64, 64))
  spec = measured.spec
  layout = spec.layout()
  assert [(f.path, f.kind, f.shape) for f in layout.fields] == [
    ("observation/image", "image", (64, 64, 3)),
    ("observation/wrist_image", "image", (64, 64, 3)),
    ("observation/state", "vector", (4,)),
  ]
  assert spec.action_shape == (4,) and spec.action_layout["paths"] == ARM_AND_GRIPPER.split(",")
  assert spec.action_max[0] > 1.5  # world_vector in its own units, [-2, 2].
  episodes = list(
    rlds_reader.iter_episodes([dataset], CAMERAS_AND_STATE, action_key=ARM_AND_GRIPPER, image_size=(64, 64))
  )
  assert len(episodes) == len(raw) == spec.num_episodes
  states = []
  for episode in episodes:
    fields = dict(
      (f.path, np.asarray(v)) for f, v in step_format.unpack(jax.numpy.asarray(episode["observation"]), layout)
    )
    steps = raw[tuple(fields["observation/state"][0])]
    states.append(fields["observation/state"])
    scene = np.stack([s["observation"]["image"] for s in steps])
    np.testing.assert_array_equal(fields["observation/image"], step_format.resize_images(scene, (64, 64)))
    wrist = np.stack([s["observation"]["wrist_image"] for s in steps])
    np.testing.assert_array_equal(fields["observation/wrist_image"], step_format.resize_images(wrist, (64, 64)))
    actions = [np.concatenate([s["action"]["world_vector"], s["action"]["gripper_closedness_action"]]) for s in steps]
    np.testing.assert_array_equal(episode["action"], actions)
  states = np.concatenate(states)
  np.testing.assert_allclose(measured.observation_stats["mean"], states.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_success_examples_are_the_last_observations_of_the_solved_episodes(dataset, tmp_path):
  raw = oxe_robot.generate_episodes(oxe_robot.OxeRobot.NUM_EPISODES)
  solved = {tuple(e[-1]["observation"]["state"]) for e in raw if e[-1]["reward"] > 0}
  assert 0 < len(solved) < len(raw)

  def last_steps(workdir, **success_key):
    options = {"env": None, "num_evaluators": 0, "dataset_episodes": 0, "observation_key": "observation/state"}
    config = make_tiny_run_config(
      dataset, workdir, action_key=ARM_AND_GRIPPER, success_from="last_step", **options, **success_key
    )
    return np.load(config.success_examples)

  examples = last_steps(tmp_path / "run", success_key="reward")
  assert examples.shape == (200, 4) and {tuple(e) for e in examples} == solved
  every_end = last_steps(tmp_path / "every_end")
  assert {tuple(e) for e in every_end} == {tuple(e[-1]["observation"]["state"]) for e in raw}


def test_bad_robot_dataset_keys_are_refused_naming_the_fields_that_exist_leaving_nothing(dataset, tmp_path):
  good = {
    "observation_key": CAMERAS_AND_STATE,
    "action_key": ARM_AND_GRIPPER,
    "success_from": "last_step",
    "image_size": "64",
  }
  refusals = [
    ({"action_key": "action"}, r"'action' .* is a dict; name the fields to use with --action_key .* --action_key=action/gripper_closedness_action,action/rotation_delta,action/terminate_episode,action/world_vector"),
    ({"action_key": "action/gripper"}, r"No step field 'action/gripper'.*'action/gripper_closedness_action'"),
    ({"action_key": "language_instruction"}, r"action field 'language_instruction' .* is text; laeo needs numeric"),
    ({"observation_key": "observation/image,observation/depth"}, r"No step field 'observation/depth'.*'observation/wrist_image'"),
    ({"observation_key": "language_instruction"}, r"'language_instruction' .* is text: laeo's networks take vectors and uint8"),
    ({"observation_key": "observation/state,observation/state"}, "names a field twice"),
    ({"image_size": "64x"}, r"--image_size must be N or HxW"),
    ({"image_size": "16", "config": ["torso_padding='VALID'"]}, r"'observation/image' holds \(16, 16, 3\) images; .* at least 36x36"),
    ({"success_key": "is_first"}, "'is_first' is never true on any episode's last step"),
    ({"success_from": "first_step"}, "--success_from must be one of flagged_steps, last_step"),
  ]  # fmt: skip
  for i, (kwargs, message) in enumerate(refusals):
    workdir = tmp_path / f"refused{i}"
    with pytest.raises(ValueError, match=message):
      make_tiny_run_config(dataset, workdir, env=None, num_evaluators=0, dataset_episodes=0, **{**good, **kwargs})
    assert not workdir.exists(), kwargs  # Nothing written for a refused run.


def act_on_raw_observations(workdir, tmp_path):
  """load_policy in a process of its own on the dataset's raw step observation dicts (one, and a batch of two)."""
  rng = np.random.default_rng(3)
  one = oxe_robot.raw_observation(rng.uniform(-1, 1, 3).astype(np.float32), 0.0)
  np.savez(tmp_path / "raw.npz", **one)
  script = f"""
import json, sys
import numpy as np
from launch.policy import load_policy
policy = load_policy({str(workdir)!r})
raw = dict(np.load({str(tmp_path / "raw.npz")!r}))
one = policy(raw)
two = policy({{k: np.stack([v, v]) for k, v in raw.items()}})
heavy = [m for m in ("tensorflow", "reverb", "launchpad") if m in sys.modules]
print(json.dumps({{"one": {{k: v.tolist() for k, v in one.items()}}, "two": {{k: np.shape(v) for k, v in two.items()}},
                  "heavy": heavy, "step": policy.step}}))
"""
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize(
  "agent,config",
  [
    ("laeo", ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "batch_size=8", "torso_channels=(4, 8, 8)"]),
    ("bc", ["policy_hidden_sizes=(32,)", "batch_size=8", "torso_channels=(4, 8, 8)"]),
  ],
)  # fmt: skip
def test_an_oxe_dataset_trains_on_cameras_and_state_and_its_policy_returns_the_action_dict(
  dataset, tmp_path, agent, config
):
  workdir = tmp_path / "run"
  proc = subprocess.run(
    [
      sys.executable,
      os.path.join(ROOT, "launch", "local.py"),
      f"--agent={agent}",
      f"--dataset_dir={dataset}",
      f"--observation_key={CAMERAS_AND_STATE}",
      f"--action_key={ARM_AND_GRIPPER}",
      "--success_from=last_step",
      "--success_key=reward",
      "--num_evaluators=0",
      "--num_steps=20",
      "--checkpoint_every=10",
      "--log_every=10",
      f"--workdir={workdir}",
      *[f"--config={c}" for c in config],
    ],
    capture_output=True,
    text=True,
    timeout=600,
    cwd=ROOT,
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  assert "Run finished: 20 learner steps" in proc.stdout
  stored = json.loads((workdir / "run_config.json").read_text())
  assert stored["image_size"] == [64, 64] and stored["dataset_spec"]["observation_shape"] == [2 * 64 * 64 * 3 + 16]
  acted = act_on_raw_observations(workdir, tmp_path)
  assert acted["heavy"] == [] and acted["step"] == 20
  assert {k: np.shape(v) for k, v in acted["one"].items()} == {"world_vector": (3,), "gripper_closedness_action": (1,)}
  assert acted["two"] == {"world_vector": [2, 3], "gripper_closedness_action": [2, 1]}
  low, high = stored["action_scaling"]["low"], stored["action_scaling"]["high"]  # The data's own range.
  assert low[0] < -1.5 and high[0] > 1.5
  assert np.all(np.abs(acted["one"]["world_vector"]) <= high[0] + 1e-6)


def test_an_environment_with_dict_observations_is_seen_through_the_runs_packed_fields(tmp_path):
  from launch import rollout
  from tests.programs import foreign_robot

  dataset = foreign_robot.prepare(str(tmp_path / "tfds"), "wide")
  config = make_tiny_run_config(
    dataset,
    tmp_path / "run",
    env="tests.programs.foreign_robot:make_env",
    dataset_episodes=0,
    observation_key="observation/camera,observation/state",
    image_size="16",
    success_key="is_success",
  )  # Refused unless the environment's observations pack to the dataset's shape.
  env = rollout.make_evaluation_env(config, seed=0)
  try:
    observation = env.reset().observation
    raw = env._env._env._observation()  # The gymnasium env's own dict, under laeo's dm_env adapter.
  finally:
    env.close()
  layout = config.observation_layout()
  assert observation.shape == (16 * 16 * 3 + 5 * 4,) == layout.shape
  expected = layout.convert({"observation/camera": raw["camera"], "observation/state": raw["state"]})
  np.testing.assert_array_equal(observation, expected)
