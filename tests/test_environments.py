"""Environment API, determinism, rendering and scripted-policy reachability."""

import threading
import time

import dm_env
import mujoco
import numpy as np
import pytest

import environments
from data_pipeline import scripted

STATE_DIMS = {
  "fetch_reach": 10,
  "fetch_push": 25,
  "sawyer_window_open": 36,
  "sawyer_drawer_close": 36,
}
HORIZONS = {"fetch_reach": 50, "fetch_push": 50, "sawyer_window_open": 150, "sawyer_drawer_close": 150}
IMAGE_NAMES = [n for n in environments.ENV_NAMES if "_image" in n]
STATE_NAMES = [n for n in environments.ENV_NAMES if "_image" not in n]


def test_env_names():
  assert set(environments.ENV_NAMES) == {
    "fetch_reach",
    "fetch_push",
    "fetch_reach_image",
    "fetch_push_image",
    "fetch_push_image_occluded",
    "sawyer_window_open",
    "sawyer_drawer_close",
  }
  assert set(STATE_DIMS) == {environments.base_task(n) for n in environments.ENV_NAMES}
  assert set(scripted.QUALITY_BETA) == set(STATE_DIMS) == set(scripted.WRONG_TARGET)
  for task, levels in scripted.QUALITY_BETA.items():
    assert levels["low"] < levels["medium"]  # 'low' leans towards the weaker checkpoints.
    for quality in ("medium", "low"):
      mixture = scripted.checkpoint_mixture(task, quality)
      assert [c for c, _ in mixture] == list(scripted.CHECKPOINTS)
      assert sum(w for _, w in mixture) == pytest.approx(1.0)
  assert scripted.checkpoint_mixture("fetch_push", "expert") == ((1.0, 1.0),)
  with pytest.raises(ValueError, match="quality"):
    scripted.checkpoint_mixture("fetch_push", "great")


def test_unknown_name_lists_valid_names():
  with pytest.raises(environments.UnknownEnvironmentError) as info:
    environments.make("fetch_pick")
  assert isinstance(info.value, ValueError)
  for name in environments.ENV_NAMES:
    assert name in str(info.value)


@pytest.mark.parametrize("name", STATE_NAMES)
def test_state_env_specs_shapes_and_time_limit(name):
  env = environments.make(name, seed=0)
  assert isinstance(env, environments.ExampleControlEnv)
  assert isinstance(env, dm_env.Environment)
  assert env.name == name and env.horizon == HORIZONS[name]
  obs_spec, act_spec = env.observation_spec(), env.action_spec()
  assert obs_spec.shape == (STATE_DIMS[name],) and obs_spec.dtype == np.float32
  assert isinstance(act_spec, dm_env.specs.BoundedArray)
  assert act_spec.shape == (4,) and act_spec.dtype == np.float32
  np.testing.assert_array_equal(act_spec.minimum, -1.0)
  np.testing.assert_array_equal(act_spec.maximum, 1.0)

  ts = env.reset()
  assert ts.first()
  obs_spec.validate(ts.observation)
  assert not env.success()
  privileged = env.privileged_state()
  assert "goal_pos" in privileged and privileged["goal_pos"].shape == (3,)
  rng = np.random.default_rng(0)
  for t in range(1, env.horizon + 1):
    ts = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
    obs_spec.validate(ts.observation)
    assert ts.reward == 0.0 and ts.discount == 1.0
    assert ts.last() == (t == env.horizon)
    assert ts.mid() == (t < env.horizon)
  # Stepping after the last step starts a new episode (dm_env contract).
  assert env.step(np.zeros(4, np.float32)).first()
  env.close()


@pytest.mark.parametrize("name", STATE_NAMES)
def test_clean_scripted_policy_succeeds_at_final_step(name):
  env = environments.make(name, seed=0)
  policy = scripted.make_checkpoint_policy(env, 1.0, np.random.default_rng(0))
  ts = env.reset()
  steps = 0
  while not ts.last():
    action = policy()
    assert action.shape == (4,) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 1.0)
    ts = env.step(action)
    steps += 1
  assert steps == env.horizon
  assert env.success()
  env.close()


@pytest.mark.parametrize("name", STATE_NAMES)
def test_same_seed_same_rollout(name):
  def rollout(env_seed, policy_seed, steps=30):
    env = environments.make(name, seed=env_seed)
    policy = scripted.make_checkpoint_policy(env, 0.5, np.random.default_rng(policy_seed))
    observations = []
    for _ in range(2):  # Two episodes: the second reset must be reproducible too.
      observations.append(env.reset().observation)
      for _ in range(steps):
        observations.append(env.step(policy()).observation)
    env.close()
    return np.stack(observations)

  first = rollout(3, 7)
  np.testing.assert_array_equal(first, rollout(3, 7))
  assert not np.array_equal(first, rollout(3, 8))


def test_fetch_push_block_starts_like_the_authors_task():
  from environments import fetch  # pylint: disable=import-outside-toplevel

  env = environments.make("fetch_push", seed=0)
  starts = []
  for _ in range(40):
    env.reset()
    state = env.privileged_state()
    np.testing.assert_allclose(state["goal_pos"], [1.40, 0.90, 0.4247], atol=1e-3)
    gripper, block = state["gripper_pos"][:2], state["object_pos"][:2]
    assert np.all(np.abs(block - gripper) <= fetch.PUSH_OBJECT_RANGE + 0.01)
    assert np.linalg.norm(block - gripper) >= fetch.PUSH_MIN_GRIPPER_DISTANCE - 0.01
    assert not env.success()  # No episode starts solved.
    starts.append(block)
  env.close()
  spread = np.ptp(np.stack(starts), axis=0)
  assert np.all(spread > 0.15)  # Spread over the +-15 cm square, not around one point.


def test_stratified_assignment_counts_and_seeding():
  rng = np.random.default_rng
  first = scripted.stratified_assignment([0.5, 0.3, 0.2], 11, rng(0))
  np.testing.assert_array_equal(np.bincount(first, minlength=3), [6, 3, 2])
  np.testing.assert_array_equal(first, scripted.stratified_assignment([0.5, 0.3, 0.2], 11, rng(0)))
  assert not np.array_equal(first, scripted.stratified_assignment([0.5, 0.3, 0.2], 11, rng(1)))


@pytest.mark.parametrize("name", STATE_NAMES)
def test_checkpoints_are_graded(name):
  """The clean checkpoint solves the task; the weakest one mostly fails, and coherently (a wrong target)."""
  env = environments.make(name, seed=0)
  rates = {}
  for competence in (0.0, 1.0):
    wins = []
    for episode in range(6):
      env.reseed(episode)
      policy = scripted.make_checkpoint_policy(env, competence, np.random.default_rng(episode))
      ts, hit = env.reset(), False
      while not ts.last():
        ts = env.step(policy())
        hit = hit or env.success()
      wins.append(hit)
    rates[competence] = np.mean(wins)
  env.close()
  assert rates[1.0] == 1.0 and rates[0.0] <= 0.5


def test_push_expert_survives_centimetre_noise_and_holds_the_goal():
  """A learner reads positions only to within about a centimetre: the push controller's action averaged over 1 cm of
  noise on its inputs must still solve the task. Once the block is at the goal the clean controller stops (no
  chatter for a learner to imitate): the block stays there and the last steps' actions are near zero."""
  env = environments.make("fetch_push", seed=5)
  averaged = scripted.noise_averaged(scripted.CONTROLLERS["fetch_push"], 0.01, 8, np.random.default_rng(5))
  for controller, episodes, bar in ((averaged, 20, 0.9), (scripted.CONTROLLERS["fetch_push"], 10, 1.0)):
    wins, last_actions = [], []
    for _ in range(episodes):
      env.reset()
      for t in range(env.horizon):
        action = controller(env.privileged_state())
        if t >= env.horizon - 10:
          last_actions.append(np.abs(action[:3]).mean())
        env.step(action.astype(np.float32))
      wins.append(env.success())  # At the final step.
    assert np.mean(wins) >= bar, np.mean(wins)
  assert np.mean(last_actions) < 0.02, np.mean(last_actions)
  env.close()


def test_push_expert_is_continuous_in_its_inputs():
  """A millimetre anywhere changes the push controller's action by little (the old 3-phase controller jumped by
  up to 2 when a position crossed a band's edge)."""
  rng = np.random.default_rng(0)
  goal = np.array([1.40, 0.90, 0.4247])
  worst = 0.0
  for _ in range(3000):
    obj = np.r_[goal[:2] + rng.uniform(-0.3, 0.3, 2), goal[2]]
    state = {"gripper_pos": obj + rng.uniform([-0.15, -0.15, -0.03], [0.15, 0.15, 0.12]), "object_pos": obj}
    state["goal_pos"] = goal
    nudged = {k: v + (rng.normal(0.0, 0.001, 3) if k != "goal_pos" else 0.0) for k, v in state.items()}
    change = np.abs(scripted.CONTROLLERS["fetch_push"](nudged) - scripted.CONTROLLERS["fetch_push"](state)).max()
    worst = max(worst, change)
  assert worst < 0.5, worst


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_envs(name):
  env = environments.make(name, seed=0)
  state_env = environments.make(environments.base_task(name), seed=0)
  spec = env.observation_spec()
  assert spec.shape == (64, 64, 3) and spec.dtype == np.uint8
  assert env.horizon == state_env.horizon == 50
  ts = env.reset()
  state_env.reset()
  spec.validate(ts.observation)
  assert ts.observation.std() > 5.0  # not a constant image
  policy = scripted.make_checkpoint_policy(env, 1.0, np.random.default_rng(0))
  state_policy = scripted.make_checkpoint_policy(state_env, 1.0, np.random.default_rng(0))
  frames = [ts.observation]
  for _ in range(12):
    ts = env.step(policy())
    state_env.step(state_policy())
    spec.validate(ts.observation)
    frames.append(ts.observation)
  # The image variant simulates exactly the same task as its state variant.
  for key, value in state_env.privileged_state().items():
    np.testing.assert_allclose(env.privileged_state()[key], value)
  assert not np.array_equal(frames[0], frames[-1])  # the arm moved
  # No pure-red goal marker anywhere in the image.
  red = (frames[0][..., 0] > 200) & (frames[0][..., 1] < 60) & (frames[0][..., 2] < 60)
  assert not red.any()
  env.close()
  state_env.close()


def _finger_pixels(env, camera):
  """Pixels of the gripper's fingers in `camera`'s view: those that change when the fingers are hidden."""
  model = env._model  # pylint: disable=protected-access
  fingers = np.isin(model.geom_bodyid, [model.body(f"robot0:{s}_gripper_finger_link").id for s in "lr"])
  rgba = model.geom_rgba[fingers].copy()
  shown = env.render(camera)
  model.geom_rgba[fingers, 3] = 0.0
  hidden = env.render(camera)
  model.geom_rgba[fingers] = rgba
  return np.any(shown != hidden, axis=-1)


def test_reach_camera_keeps_the_whole_gripper_in_frame():
  """FetchReach-image's camera sees the fingers well inside the frame from the highest starts to the goal (the
  push task's front camera had them at the top edge, rows 0-10, for high starts)."""
  env = environments.make("fetch_reach_image", seed=0)
  rows = {"reach": [], "front": []}
  for episode in range(4):
    env.reseed(episode)
    env.reset()
    policy = scripted.make_checkpoint_policy(env, 0.4, np.random.default_rng(episode))
    for t in range(env.horizon):
      if t in (0, 5, 49):
        for camera in rows:
          mask = _finger_pixels(env, camera)
          rows[camera].append(np.nonzero(mask.any(axis=1))[0].min() if mask.sum() >= 5 else -1)
      env.step(policy())
  env.close()
  assert min(rows["reach"]) >= 12, rows
  assert min(rows["front"]) < 12, rows  # What the new camera fixes.


def test_occluded_camera_hides_block_while_pushing():
  """The side camera always sees the block; the occluded one loses it under the arm, but not for good."""
  visible = {}
  for name in ("fetch_push_image", "fetch_push_image_occluded"):
    counts = []
    for seed in range(4):
      env = environments.make(name, seed=seed)
      policy = scripted.make_checkpoint_policy(env, 1.0, np.random.default_rng(0))
      ts = env.reset()
      model = env._model  # pylint: disable=protected-access
      geoms = model.geom_bodyid == model.body("object0").id
      for t in range(40):
        if t % 5 == 0:  # Pixels that change when the block is hidden are its visible pixels.
          rgba = model.geom_rgba[geoms].copy()
          model.geom_rgba[geoms, 3] = 0.0
          without_block = env.render("occluded" if name.endswith("occluded") else "front")
          model.geom_rgba[geoms] = rgba
          counts.append(int(np.any(ts.observation != without_block, axis=-1).sum()))
        ts = env.step(policy())
      env.close()
    visible[name] = np.array(counts).reshape(4, -1)
  # The side camera sees the block in every frame (at least 10 pixels, when the hand stands right beside it).
  assert (visible["fetch_push_image"] >= 10).all()
  # Hidden in 7 of these 32 frames with push controller version 2 (at least 8 with version 1).
  assert (visible["fetch_push_image_occluded"] == 0).mean() >= 0.2
  assert (visible["fetch_push_image_occluded"].max(axis=1) >= 15).all()


def test_exit_handler_leaves_cameras_of_running_threads_to_their_owners():
  """At interpreter exit, `_close_live_cameras` frees the cameras of the exiting thread and of finished threads,
  but not one a still-running thread may be rendering with (freeing its GL context under it segfaults)."""
  from environments import fetch  # pylint: disable=import-outside-toplevel

  model = environments.make("fetch_reach", seed=0)._env.model  # pylint: disable=protected-access
  made, release, done = {}, threading.Event(), threading.Event()

  def own_camera(key, wait):
    made[key] = fetch.OffscreenCamera(model, **fetch.CAMERAS["front"])
    made[key].render(mujoco.MjData(model))
    if wait:
      release.wait(30)
      made[key].render(mujoco.MjData(model))  # still usable after the handler ran
      made[key].close()
      done.set()

  running = threading.Thread(target=own_camera, args=("running", True))
  running.start()
  finished = threading.Thread(target=own_camera, args=("finished", False))
  finished.start()
  finished.join()
  own_camera("main", False)
  while "running" not in made:
    time.sleep(0.01)
  fetch._close_live_cameras()  # pylint: disable=protected-access
  live = set(fetch._LIVE_CAMERAS)  # pylint: disable=protected-access
  assert made["running"] in live
  assert made["main"] not in live and made["finished"] not in live
  release.set()
  running.join(30)
  assert done.is_set() and made["running"] not in set(fetch._LIVE_CAMERAS)  # pylint: disable=protected-access
