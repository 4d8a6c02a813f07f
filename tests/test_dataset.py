"""Tests for the RLDS/TFDS dataset pipeline (data_pipeline.rlds_writer,
success_examples, generate). Uses a tiny fake dm_env environment; one
end-to-end test uses the real `fetch_reach` when `environments` provides it."""

import json
import os

import dm_env
from dm_env import specs
import numpy as np
import pytest

from data_pipeline import generate
from data_pipeline import rlds_writer
from data_pipeline import success_examples as success_lib
from tests.helpers import read_episodes


# --------------------------------------------------------------------------
# A tiny fake environment following the `environments.make` interface.


class FakeEnv(dm_env.Environment):
  """Point on a line, moved by actions; success when x > 0.5."""

  def __init__(self, seed=0, horizon=5, image=False, name="fake_reach"):
    self.horizon = horizon
    self.name = name
    self.base_task = "fake_reach"
    self._image = image
    self._rng = np.random.default_rng(seed)
    self._x = np.zeros(2, np.float32)
    self._t = 0

  def _obs(self):
    if not self._image:
      return np.array([self._x[0], self._x[1], self._t], np.float32)
    img = self._rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    img[0, 0, 0] = 255 if self.success() else 0  # Success readable from pixels.
    return img

  def success(self):
    return bool(self._x[0] > 0.5)

  def reseed(self, seed):
    self._rng = np.random.default_rng(seed)

  def reset(self):
    self._x = self._rng.uniform(-0.5, 0.5, size=2).astype(np.float32)
    self._t = 0
    return dm_env.restart(self._obs())

  def step(self, action):
    self._x = self._x + 0.3 * np.asarray(action, np.float32)
    self._t += 1
    if self._t >= self.horizon:
      return dm_env.truncation(0.0, self._obs())
    return dm_env.transition(0.0, self._obs(), 1.0)

  def observation_spec(self):
    if self._image:
      return specs.Array((64, 64, 3), np.uint8, "observation")
    return specs.Array((3,), np.float32, "observation")

  def action_spec(self):
    return specs.BoundedArray((2,), np.float32, -1.0, 1.0, "action")


def fake_policy_factory(env, competence, rng):
  noise = 3.0 * (1.0 - competence)

  def policy():
    return np.clip(np.array([0.6, 0.0]) + noise * rng.normal(size=2), -1, 1)

  return policy


def fake_mixture(task, quality):
  assert task == "fake_reach"
  return {"medium": ((0.0, 0.5), (0.9, 0.5)), "low": ((0.0, 1.0),), "expert": ((1.0, 1.0),)}[quality]


def fake_generate(out_dir, num_episodes=4, image=False, quality="medium", seed=0, **kwargs):
  return generate.generate_dataset(
    "fake_reach_image" if image else "fake_reach",
    quality,
    num_episodes,
    out_dir,
    seed,
    show_progress=False,
    env_factory=lambda name, s: FakeEnv(s, image=image, name=name),
    policy_factory=kwargs.pop("policy_factory", fake_policy_factory),
    mixture_fn=fake_mixture,
    **kwargs,
  )


def random_episode(rng, horizon, obs_spec, act_dim=2, p_success=0.5):
  if np.dtype(obs_spec.dtype) == np.uint8:
    obs = rng.integers(0, 256, size=(horizon + 1,) + obs_spec.shape, dtype=np.uint8)
  else:
    obs = rng.normal(size=(horizon + 1,) + obs_spec.shape).astype(np.float32)
  actions = rng.uniform(-1, 1, size=(horizon, act_dim)).astype(np.float32)
  success = rng.random(horizon + 1) < p_success
  return rlds_writer.make_episode(list(obs), actions, success)


STATE_SPEC = specs.Array((3,), np.float32)
IMAGE_SPEC = specs.Array((64, 64, 3), np.uint8)
ACT_SPEC = specs.BoundedArray((2,), np.float32, -1.0, 1.0)


def leftovers(parent, name):
  return [f for f in os.listdir(parent) if f.startswith(f".{name}.")]


# --------------------------------------------------------------------------
# Round trips.


@pytest.mark.parametrize("obs_spec", [STATE_SPEC, IMAGE_SPEC], ids=["state", "image"])
def test_round_trip_exact(tmp_path, obs_spec):
  rng = np.random.default_rng(1)
  episodes = [random_episode(rng, h, obs_spec) for h in (3, 1, 6)]
  out = str(tmp_path / "ds")
  meta = rlds_writer.write_rlds_dataset(
    iter(episodes), out, obs_spec, ACT_SPEC, {"env_name": "x"}, num_episodes=3, max_episodes_per_shard=2
  )
  loaded = read_episodes(out)
  assert len(loaded) == 3
  for ep, back in zip(episodes, loaded):
    assert set(back) == set(rlds_writer._STEP_KEYS)
    for key, value in ep.items():
      assert back[key].dtype == value.dtype, key
      np.testing.assert_array_equal(back[key], value, err_msg=key)
    h1 = len(ep["observation"])
    assert back["is_first"].tolist() == [True] + [False] * (h1 - 1)
    assert back["is_last"].tolist() == [False] * (h1 - 1) + [True]
    assert not back["is_terminal"].any()
    np.testing.assert_array_equal(back["action"][-1], 0.0)
  assert meta["success_rate"] == pytest.approx(np.mean([e["success"][1:].any() for e in episodes]))
  assert meta["success_rate_final_step"] == pytest.approx(np.mean([e["success"][-1] for e in episodes]))
  assert meta["observation_encoding"] == ("png" if obs_spec is IMAGE_SPEC else "tensor")
  assert "success" not in read_episodes(out, include_success=False)[0]

  # Plain TFDS / RLDS readers see the same data.
  import tensorflow_datasets as tfds

  builder = tfds.builder_from_directory(out)
  assert builder.info.splits["train"].num_examples == 3
  first = next(iter(tfds.as_numpy(builder.as_dataset(split="train", shuffle_files=False))))
  steps = list(first["steps"])
  assert len(steps) == 4
  np.testing.assert_array_equal(steps[2]["observation"], episodes[0]["observation"][2])
  assert bool(first["episode_metadata"]["success"]) == bool(episodes[0]["success"][1:].any())
  assert bool(first["episode_metadata"]["success_final_step"]) == bool(episodes[0]["success"][-1])


def test_metadata_round_trip(tmp_path):
  rng = np.random.default_rng(2)
  episodes = [random_episode(rng, 2, STATE_SPEC) for _ in range(4)]
  for ep, s in zip(episodes, [True, False, True, True]):
    ep["success"][:] = False  # Success at step 0 (before any action) does not count.
    ep["success"][0] = True
    ep["success"][-1] = s
  episodes[1]["success"][1] = True  # Succeeds midway, not at the end.
  out = str(tmp_path / "ds")
  given = {"env_name": "fetch_push", "quality": "low", "noise": 0.7, "seed": np.int64(3), "nested": {"a": [1, 2]}}
  written = rlds_writer.write_rlds_dataset(episodes, out, STATE_SPEC, ACT_SPEC, given, num_episodes=4)
  meta = rlds_writer.read_metadata(out)
  assert meta == json.loads(json.dumps(written))
  for key in ("env_name", "quality", "noise", "nested"):
    assert meta[key] == given[key]
  assert meta["seed"] == 3
  assert meta["num_episodes"] == 4 and meta["num_steps"] == 12
  assert meta["success_rate"] == 1.0 and meta["success_rate_final_step"] == 0.75
  assert "ANY step" in meta["success_convention"]


# --------------------------------------------------------------------------
# Atomicity and overwrite protection.


def test_interrupted_write_leaves_nothing(tmp_path):
  rng = np.random.default_rng(3)

  def episodes():
    yield random_episode(rng, 2, STATE_SPEC)
    yield random_episode(rng, 2, STATE_SPEC)
    raise KeyboardInterrupt("simulated crash")

  out = tmp_path / "ds"
  with pytest.raises(KeyboardInterrupt):
    rlds_writer.write_rlds_dataset(
      episodes(), str(out), STATE_SPEC, ACT_SPEC, {}, num_episodes=5, max_episodes_per_shard=1
    )
  assert not out.exists() and not leftovers(tmp_path, "ds")

  with pytest.raises(ValueError, match="expected 5"):  # Too few episodes.
    rlds_writer.write_rlds_dataset(
      [random_episode(rng, 2, STATE_SPEC)], str(out), STATE_SPEC, ACT_SPEC, {}, num_episodes=5
    )
  assert os.listdir(tmp_path) == []


def test_generation_crash_leaves_nothing(tmp_path):
  calls = {"n": 0}

  def crashing_policy_factory(env, competence, rng):
    calls["n"] += 1
    if calls["n"] == 3:
      raise RuntimeError("simulated crash mid-generation")
    return fake_policy_factory(env, competence, rng)

  with pytest.raises(RuntimeError, match="mid-generation"):
    fake_generate(str(tmp_path / "new" / "parents" / "ds"), num_episodes=5, policy_factory=crashing_policy_factory)
  assert os.listdir(tmp_path) == []  # Created parents removed as well.


def test_refuses_overwrite(tmp_path):
  out = str(tmp_path / "ds")
  first = fake_generate(out, num_episodes=2, seed=0)
  with pytest.raises(FileExistsError, match="overwrite"):
    fake_generate(out, num_episodes=3, seed=1)
  assert rlds_writer.read_metadata(out)["created_unix_time"] == (first["created_unix_time"])
  second = fake_generate(out, num_episodes=3, seed=1, overwrite=True)
  assert len(read_episodes(out)) == 3
  assert rlds_writer.read_metadata(out)["seed"] == 1 == second["seed"]
  assert sorted(os.listdir(tmp_path)) == ["ds"]

  other = tmp_path / "not_a_dataset"
  other.mkdir()
  (other / "notes.txt").write_text("keep me")
  with pytest.raises(FileExistsError, match="not a laeo dataset"):
    fake_generate(str(other), num_episodes=1, overwrite=True)
  assert (other / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------
# Success examples.


def labelled_episodes():
  """Observation = [episode, step, success] so provenance is checkable."""
  rng = np.random.default_rng(4)
  episodes = []
  for e in range(6):
    success = rng.random(8) < 0.4
    obs = np.stack([np.full(8, e), np.arange(8), success], 1).astype(np.float32)
    episodes.append({"observation": obs, "success": success})
  return episodes


def test_success_examples_seeded_and_only_successful():
  episodes = labelled_episodes()
  num_successful = sum(int(e["success"].sum()) for e in episodes)
  assert 5 < num_successful < 40
  a = success_lib.extract_success_examples(episodes, num_successful - 2, 0)
  b = success_lib.extract_success_examples(episodes, num_successful - 2, 0)
  c = success_lib.extract_success_examples(episodes, num_successful - 2, 1)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.shape == (num_successful - 2, 3) and a.dtype == np.float32
  assert (a[:, 2] == 1).all() and (c[:, 2] == 1).all()
  assert len({tuple(r) for r in a}) == len(a)  # Without replacement.

  many = success_lib.extract_success_examples(episodes, 200, seed=0)
  assert many.shape == (200, 3) and (many[:, 2] == 1).all()
  assert len({tuple(r) for r in many}) == num_successful  # With replacement.

  # Filtering out failed steps first gives the same sample.
  only = [{"observation": e["observation"][e["success"]], "success": e["success"][e["success"]]} for e in episodes]
  np.testing.assert_array_equal(
    success_lib.extract_success_examples(only, 7, seed=5), success_lib.extract_success_examples(episodes, 7, seed=5)
  )


def test_success_examples_errors_and_io(tmp_path):
  episodes = labelled_episodes()
  with pytest.raises(ValueError, match=">= 1"):
    success_lib.extract_success_examples(episodes, 0)
  failures = [{"observation": e["observation"], "success": np.zeros_like(e["success"])} for e in episodes]
  with pytest.raises(ValueError, match="No successful step"):
    success_lib.extract_success_examples(failures, 10)
  examples = success_lib.extract_success_examples(episodes, 5)
  path = success_lib.save_success_examples(str(tmp_path), examples)
  assert path == str(tmp_path / "success_examples.npy")
  np.testing.assert_array_equal(success_lib.load_success_examples(str(tmp_path)), examples)
  with pytest.raises(FileNotFoundError):
    success_lib.load_success_examples(str(tmp_path / "missing"))


# --------------------------------------------------------------------------
# generate_dataset / CLI.


@pytest.mark.parametrize("image", [False, True], ids=["state", "image"])
def test_generate_with_fake_env(tmp_path, image):
  out = str(tmp_path / "ds")
  summary = fake_generate(out, num_episodes=6, image=image, seed=7, num_success_examples=20)
  episodes = read_episodes(out)
  meta = rlds_writer.read_metadata(out)
  assert len(episodes) == 6 and all(len(e["action"]) == 6 for e in episodes)
  final = [bool(e["success"][-1]) for e in episodes]
  any_step = [bool(e["success"][1:].any()) for e in episodes]
  assert meta["success_rate"] == pytest.approx(np.mean(any_step))
  assert meta["success_rate_final_step"] == pytest.approx(np.mean(final))
  assert 0 < meta["success_rate"] <= 1
  # Exactly round(weight * episodes) episodes per checkpoint, success counted per checkpoint.
  checkpoints = meta["checkpoints"]
  assert [(c["competence"], c["episodes"]) for c in checkpoints] == [(0.0, 3), (0.9, 3)]
  assert sum(c["success_rate"] * c["episodes"] for c in checkpoints) == pytest.approx(sum(any_step))
  assert meta["env_name"] == ("fake_reach_image" if image else "fake_reach")
  assert meta["task"] == "fake_reach"
  assert meta["quality"] == "medium" and meta["seed"] == 7
  assert meta["horizon"] == 5 and meta["num_success_examples"] == 20
  assert summary["success_rate"] == meta["success_rate"]
  assert summary["env_steps_per_s"] > 0
  assert os.path.isfile(os.path.join(out, "success_examples.npy"))
  examples = success_lib.load_success_examples(out)
  np.testing.assert_array_equal(examples, success_lib.extract_success_examples(episodes, 20, seed=7))
  if image:
    assert examples.shape == (20, 64, 64, 3) and examples.dtype == np.uint8
    assert (examples[:, 0, 0, 0] == 255).all()
  else:
    assert examples.shape == (20, 3) and (examples[:, 0] > 0.5).all()
  for ep in episodes:
    assert np.abs(ep["action"]).max() <= 1.0
  # Same seed, same data.
  again = fake_generate(str(tmp_path / "again"), num_episodes=6, image=image, seed=7, num_success_examples=20)
  assert again["success_rate"] == meta["success_rate"]
  for a, b in zip(episodes, read_episodes(str(tmp_path / "again"))):
    np.testing.assert_array_equal(a["action"], b["action"])


def test_generate_no_success_writes_nothing(tmp_path):
  def backwards(env, competence, rng):
    return lambda: np.array([-1.0, 0.0])

  with pytest.raises(ValueError, match="No successful step"):
    fake_generate(str(tmp_path / "ds"), num_episodes=2, policy_factory=backwards)
  assert os.listdir(tmp_path) == []


def test_generate_errors(tmp_path):
  out = str(tmp_path / "ds")
  with pytest.raises(ValueError, match="episodes"):
    fake_generate(out, num_episodes=0)
  with pytest.raises(ValueError, match="quality"):
    fake_generate(out, quality="expertish")
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(ValueError, match="not a directory"):
    fake_generate(str(blocker / "sub" / "ds"))
  with pytest.raises(ValueError, match="not a directory"):
    fake_generate(str(blocker))

  def unknown(name, seed):
    raise ValueError(f"Unknown environment {name!r}")

  with pytest.raises(ValueError, match="Unknown environment"):
    generate.generate_dataset("nope", "medium", 1, out, 0, env_factory=unknown, show_progress=False)
  assert sorted(os.listdir(tmp_path)) == ["file"]


def test_cli_errors_exit_nonzero(tmp_path, capsys):
  out = str(tmp_path / "ds")
  assert generate.main(["--env=fetch_reach", "--quality=bogus", "--episodes=2", f"--out={out}"]) != 0
  assert "quality" in capsys.readouterr().err
  assert generate.main(["--env=fetch_reach", "--quality=low", "--episodes=0", f"--out={out}"]) != 0
  assert "episodes" in capsys.readouterr().err
  assert not os.path.exists(out)


def test_load_errors(tmp_path):
  with pytest.raises(FileNotFoundError):
    read_episodes(str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError):
    rlds_writer.read_metadata(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="not a TFDS dataset directory"):
    read_episodes(str(tmp_path / "empty"))


# --------------------------------------------------------------------------
# Real environments.


def test_unknown_env_uses_registry_error(tmp_path, capsys):
  out = str(tmp_path / "ds")
  with pytest.raises(ValueError, match="Unknown environment"):
    generate.generate_dataset("fetch_teleport", "medium", 1, out, 0, show_progress=False)
  assert generate.main(["--env=fetch_teleport", "--quality=medium", "--episodes=1", f"--out={out}"]) != 0
  assert "fetch_teleport" in capsys.readouterr().err
  assert os.listdir(tmp_path) == []


def test_real_fetch_reach_end_to_end(tmp_path):
  import environments  # pylint: disable=g-import-not-at-top

  out = str(tmp_path / "ds")
  summary = generate.generate_dataset(
    "fetch_reach", "medium", 4, out, 0, num_success_examples=10, show_progress=False, workers=2
  )
  episodes = read_episodes(out)
  env = environments.make("fetch_reach", 0)
  assert len(episodes) == 4
  for ep in episodes:
    assert ep["observation"].shape == (env.horizon + 1, 10)
    assert ep["observation"].dtype == np.float32
    assert ep["action"].shape == (env.horizon + 1, 4)
  # Episode i depends on (seed, i) alone: replaying its recorded actions from
  # its seeded start gives the same data, whichever worker process made it.
  for i in (0, 3):
    env.reseed(int(np.random.SeedSequence([0, i]).generate_state(2)[0]))
    ts = env.reset()
    np.testing.assert_array_equal(ts.observation, episodes[i]["observation"][0])
    for t in range(env.horizon):
      ts = env.step(episodes[i]["action"][t])
    np.testing.assert_array_equal(ts.observation, episodes[i]["observation"][-1])
    assert env.success() == bool(episodes[i]["success"][-1])
  meta = rlds_writer.read_metadata(out)
  assert meta["env_name"] == "fetch_reach" and meta["horizon"] == env.horizon
  assert (
    meta["success_rate"]
    == summary["success_rate"]
    == pytest.approx(np.mean([e["success"][1:].any() for e in episodes]))
  )
  examples = success_lib.load_success_examples(out)
  assert examples.shape == (10, 10)
  # The same dataset from one process.
  generate.generate_dataset(
    "fetch_reach", "medium", 4, str(tmp_path / "one"), 0, num_success_examples=10, show_progress=False, workers=1
  )
  for a, b in zip(episodes, read_episodes(str(tmp_path / "one"))):
    np.testing.assert_array_equal(a["observation"], b["observation"])
    np.testing.assert_array_equal(a["action"], b["action"])


@pytest.mark.parametrize("image", [False, True], ids=["state", "image"])
def test_with_success_examples_equals_generating_with_that_count(tmp_path, image):
  """Fig. 6's datasets differ only in their success examples: redrawing them from a generated dataset's
  successful steps gives what generating again with that count gives, episodes shared."""
  source = str(tmp_path / "n20")
  fake_generate(source, num_episodes=6, image=image, seed=3, num_success_examples=20)
  fake_generate(str(tmp_path / "n5"), num_episodes=6, image=image, seed=3, num_success_examples=5)
  meta = generate.with_success_examples(source, str(tmp_path / "derived"), 5)
  np.testing.assert_array_equal(
    success_lib.load_success_examples(str(tmp_path / "derived")),
    success_lib.load_success_examples(str(tmp_path / "n5")),
  )
  generated = rlds_writer.read_metadata(str(tmp_path / "n5"))
  assert meta == rlds_writer.read_metadata(str(tmp_path / "derived"))
  for name in set(generated) - {"created_unix_time"}:
    assert meta[name] == generated[name], name
  for a, b in zip(read_episodes(str(tmp_path / "derived")), read_episodes(source)):
    np.testing.assert_array_equal(a["observation"], b["observation"])
  with pytest.raises(FileExistsError):
    generate.with_success_examples(source, str(tmp_path / "derived"), 5)
  assert sorted(os.listdir(tmp_path)) == ["derived", "n20", "n5"]  # No leftovers.
