"""Fixed-task Meta-World (v3) Sawyer environments.

* ``sawyer_window_open`` (``window-open-v3``): slide the window handle +0.2 m
  along x. Window at metaworld's default ``obj_init_pos`` (-0.1, 0.785, 0.16).
* ``sawyer_drawer_close`` (``drawer-close-v3``): push the (fully open) drawer
  closed. Drawer at metaworld's default ``obj_init_pos`` (0.0, 0.9, 0.0).

The task is fixed: the env's random-reset vector is frozen to the default
``obj_init_pos`` from the environment's ``init_config``. Only the hand's start
varies: seeded uniform noise of ``HAND_START_NOISE`` (5 cm) per axis around
metaworld's ``hand_init_pos`` (without it every episode would be identical and
evaluation all-or-nothing). Horizon 150 (below metaworld's
own ``max_path_length`` of 500, which is never reached). Success is metaworld's
own ``info['success']`` of the latest step (``False`` right after reset).

State observation (36-d float32): metaworld's 39-d observation is
``[hand xyz, gripper opening, 14 object dims, same 18 dims of the previous
frame, goal xyz]``. Metaworld environments are partially observable by default,
so the goal part is all zeros; it carries no information and is dropped, keeping
the first 36 entries. No image variants are provided.
"""

from __future__ import annotations

import os
from typing import Dict

os.environ.setdefault("MUJOCO_GL", "egl")

import metaworld  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from environments import base  # noqa: E402

HORIZON = 150
STATE_DIM = 36
HAND_START_NOISE = 0.05

TASKS = {
  "sawyer_window_open": "window-open-v3",
  "sawyer_drawer_close": "drawer-close-v3",
}


class SawyerEnv(base.ExampleControlEnv):
  """A fixed Meta-World v3 task; see the module docstring."""

  horizon = HORIZON
  image_obs = False

  def __init__(self, name: str, seed: int = 0):
    super().__init__(seed)
    if name not in TASKS:
      raise ValueError(f"unknown Meta-World task {name!r}")
    self.name = name
    self.base_task = name
    env = metaworld.ALL_V3_ENVIRONMENTS[TASKS[name]]()
    assert env._partially_observable  # pylint: disable=protected-access
    # A fixed task: freeze the reset vector to the default object position.
    env._set_task_called = True  # pylint: disable=protected-access
    env._freeze_rand_vec = True  # pylint: disable=protected-access
    env._last_rand_vec = np.asarray(  # pylint: disable=protected-access
      env.init_config["obj_init_pos"], dtype=np.float64
    ).copy()
    env.max_path_length = max(env.max_path_length, HORIZON)
    self._env = env
    self._hand_init_pos = np.array(env.hand_init_pos, dtype=np.float64)
    self._obs = None
    self._success = False
    self._renderer = None  # Made on first use, on the thread that renders.

  def _state_dim(self) -> int:
    return STATE_DIM

  def _reset_sim(self) -> None:
    noise = self._rng.uniform(-HAND_START_NOISE, HAND_START_NOISE, 3)
    self._env.hand_init_pos = self._hand_init_pos + noise
    obs, _ = self._env.reset()
    self._obs = obs
    self._success = False

  def _step_sim(self, action: np.ndarray) -> None:
    obs, _, _, _, info = self._env.step(action.astype(np.float32))
    self._obs = obs
    self._success = bool(info["success"])

  def _observation(self) -> np.ndarray:
    return np.asarray(self._obs[:STATE_DIM], dtype=np.float32)

  def success(self) -> bool:
    return self._success

  def privileged_state(self) -> Dict[str, np.ndarray]:
    env = self._env
    return {
      "hand_pos": np.array(env.tcp_center, dtype=np.float64),
      "object_pos": np.array(env._get_pos_objects(), dtype=np.float64),  # pylint: disable=protected-access
      "goal_pos": np.array(env._target_pos, dtype=np.float64),  # pylint: disable=protected-access
    }

  def render_frame(self, size: int = base.VIDEO_SIZE) -> np.ndarray:
    if self._renderer is None:
      self._renderer = mujoco.Renderer(self._env.model, height=size, width=size)
    self._renderer.update_scene(self._env.data, camera="corner")
    base.draw_goal_marker(self._renderer.scene, self.privileged_state()["goal_pos"], 0.05, self.success())
    # Meta-World's corner cameras are mounted upside down (its own renderer flips their images too).
    return np.array(self._renderer.render()[::-1], dtype=np.uint8, copy=True)

  def close(self) -> None:
    if self._renderer is not None:
      self._renderer.close()
      self._renderer = None
    self._env.close()
