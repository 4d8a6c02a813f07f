"""Common interface of every example-based control environment in this project.

An :class:`ExampleControlEnv` is a ``dm_env.Environment`` with a *fixed* task
(fixed goal, fixed or nearly fixed start), no reward and a fixed horizon:

* ``reset()`` returns ``dm_env.restart(obs)``.
* ``step(action)`` returns ``dm_env.transition(reward=0.0, obs, discount=1.0)``
  for the first ``horizon - 1`` steps and ``dm_env.truncation(0.0, obs, 1.0)``
  at step ``horizon``. The reward is always 0.0: example-based methods learn
  from success examples, never from environment rewards. Calling ``step`` after
  the last step (or before the first ``reset``) starts a new episode, as the
  dm_env contract asks.
* ``success()`` says whether the *current* state solves the task.
* ``privileged_state()`` returns simulator quantities (gripper/object/goal
  positions, ...) that scripted policies and analysis code may read. They are
  never part of the observations the agents see.

Episode success: the headline metric, as in the authors' code, counts an
episode as successful iff ``success()`` holds at ANY of its steps after the
first action; the stricter FINAL-step rate (after the ``horizon``-th action) is
recorded beside it by dataset generation and evaluation alike.

Randomness: every source of randomness inside an environment comes from the
``seed`` given to its constructor, so ``make(name, seed)`` followed by the same
action sequence reproduces the same observations.
"""

from __future__ import annotations

import abc
from typing import Dict

import dm_env
from dm_env import specs
import numpy as np

IMAGE_SIZE = 64
VIDEO_SIZE = 128  # Pixels of the frames that evaluation videos show (launch/video.py).
GOAL_COLORS = {False: (1.0, 0.1, 0.1, 0.4), True: (0.1, 0.9, 0.1, 0.4)}  # The videos' goal marker, by success().


def draw_goal_marker(scene, position, radius: float, solved: bool) -> None:
  """Adds a translucent sphere at `position` to a MuJoCo scene after update_scene (only that frame shows it)."""
  import mujoco  # pylint: disable=import-outside-toplevel

  if scene.ngeom >= scene.maxgeom:
    return
  geom = scene.geoms[scene.ngeom]
  scene.ngeom += 1
  mujoco.mjv_initGeom(
    geom,
    mujoco.mjtGeom.mjGEOM_SPHERE,
    np.array([radius, 0.0, 0.0]),
    np.asarray(position, np.float64),
    np.eye(3).flatten(),
    np.asarray(GOAL_COLORS[bool(solved)], np.float32),
  )


ACTION_DIM = 4


class ExampleControlEnv(dm_env.Environment, abc.ABC):
  """Fixed-task, reward-free, fixed-horizon environment (see module docstring).

  Attributes:
    name: registered name, e.g. ``"fetch_push_image"``.
    base_task: name of the underlying state task, e.g. ``"fetch_push"`` for
      ``"fetch_push_image_occluded"``. Image variants share the state variant's
      scripted policy and data-quality noise levels.
    horizon: number of steps of every episode.
    image_obs: whether observations are 64x64x3 uint8 images (else a float32
      state vector).
  """

  name: str
  base_task: str
  horizon: int
  image_obs: bool = False

  def __init__(self, seed: int = 0):
    self._seed = int(seed)
    self._rng = np.random.default_rng(self._seed)
    self._t = 0
    self._needs_reset = True

  def render_frame(self, size: int = VIDEO_SIZE) -> np.ndarray:
    """A size x size RGB frame for evaluation videos: a camera that shows the whole arm and the task, with the goal
    drawn (GOAL_COLORS: red, green while the task is solved); the agent's own camera never shows the marker."""
    raise NotImplementedError(f"{type(self).__name__} cannot render video frames.")

  # --------------------------------------------------------------- dm_env API
  def reset(self) -> dm_env.TimeStep:
    self._t = 0
    self._needs_reset = False
    self._reset_sim()
    return dm_env.restart(self._observation())

  def step(self, action) -> dm_env.TimeStep:
    if self._needs_reset:
      return self.reset()
    spec = self.action_spec()
    action = np.asarray(action, dtype=np.float32).reshape(spec.shape)
    action = np.clip(action, spec.minimum, spec.maximum)
    self._step_sim(action)
    self._t += 1
    obs = self._observation()
    if self._t >= self.horizon:
      self._needs_reset = True
      return dm_env.truncation(reward=0.0, observation=obs, discount=1.0)
    return dm_env.transition(reward=0.0, observation=obs, discount=1.0)

  def observation_spec(self) -> specs.Array:
    if self.image_obs:
      return specs.Array((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8, name="image")
    return specs.Array((self._state_dim(),), np.float32, name="state")

  def action_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray((ACTION_DIM,), np.float32, minimum=-1.0, maximum=1.0, name="action")

  def reward_spec(self) -> specs.Array:
    return specs.Array((), np.float64, name="reward")

  def discount_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray((), np.float64, minimum=0.0, maximum=1.0, name="discount")

  def reseed(self, seed: int) -> None:
    """Restarts the generator behind every start-state draw (e.g. one seed per dataset episode)."""
    self._seed = int(seed)
    self._rng = np.random.default_rng(self._seed)

  # ------------------------------------------------------- task-specific part
  @abc.abstractmethod
  def success(self) -> bool:
    """Whether the current state solves the task."""

  @abc.abstractmethod
  def privileged_state(self) -> Dict[str, np.ndarray]:
    """Simulator quantities for scripted policies; never part of observations."""

  @abc.abstractmethod
  def _state_dim(self) -> int:
    """Size of the state observation vector."""

  @abc.abstractmethod
  def _reset_sim(self) -> None:
    """Puts the simulator in the (seeded) start state of a new episode."""

  @abc.abstractmethod
  def _step_sim(self, action: np.ndarray) -> None:
    """Applies one clipped float32 action of shape (4,)."""

  @abc.abstractmethod
  def _observation(self) -> np.ndarray:
    """Current observation, matching ``observation_spec()``."""

  def close(self) -> None:  # pragma: no cover - trivial
    pass

  def __repr__(self) -> str:
    return f"{type(self).__name__}(name={self.name!r}, seed={self._seed})"
