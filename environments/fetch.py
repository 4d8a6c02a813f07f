"""Fixed-goal Fetch tasks (gymnasium-robotics FetchReach-v4 / FetchPush-v4).

Tasks (horizon 50, 25 Hz control, action = (dx, dy, dz, gripper) in [-1, 1]):

* ``fetch_reach``: move the gripper to the fixed point ``REACH_GOAL``.
  The gripper starts at gymnasium's start point plus seeded uniform noise in
  ``[-REACH_START_NOISE, REACH_START_NOISE]`` per axis (0.08 m; without it every
  episode would be identical and evaluation all-or-nothing). Success:
  ``|gripper - goal| < 0.05``.
  State observation (10-d float32): gymnasium's ``'observation'`` entry (gripper
  position, finger positions, gripper velocity, finger velocities); the goal is
  NOT part of the observation.
* ``fetch_push``: push the block to the fixed point ``PUSH_GOAL`` (the authors'
  fixed goal). As in the authors' task (gymnasium's own sampling), the block's
  start xy is uniform within ``PUSH_OBJECT_RANGE`` (0.15 m) of the gripper's start
  xy and at least ``PUSH_MIN_GRIPPER_DISTANCE`` (0.1 m) from it; starts that
  already solve the task are redrawn (so no episode succeeds before acting).
  Success: ``|block - goal| < 0.05`` (3-d). State observation (25-d float32):
  gymnasium's ``'observation'`` entry, without the goal.
* ``*_image`` variants: 64x64x3 uint8 RGB from a close free camera: for push
  from the side of the table, across the push direction (the block stays
  visible while the gripper pushes it); for reach ("reach" camera) level with
  the gripper's workspace, so the whole gripper stays in frame. Shadows, reflections and multisampling are off for speed
  and every site (the red goal marker ``target0`` included) is hidden.
* ``fetch_push_image_occluded``: same task, seen nearly top-down (the authors'
  occluded camera pose), so the arm hides the block for much of a push
  (partially observed task).

gymnasium's own goal sampling and object randomisation run inside its reset and
are then overridden, so gymnasium's internal generator has no influence on the
episodes; only ``seed`` (gripper start noise for reach, block start for push) does, through the
environment's generator (``reseed`` restarts it).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Dict, Optional

os.environ.setdefault("MUJOCO_GL", "egl")

import farama_notifications  # noqa: E402
import gymnasium as gym  # noqa: E402

# gymnasium_robotics prints a notice about its Adroit tasks (unused here) to stderr on every import.
farama_notifications.notifications.pop("gymnasium_robotics", None)
import gymnasium_robotics  # noqa: E402
from gymnasium_robotics.utils import mujoco_utils  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from environments import base  # noqa: E402

gym.register_envs(gymnasium_robotics)

HORIZON = 50
SUCCESS_THRESHOLD = 0.05

# gymnasium's reach start: gripper at (1.3418, 0.7491, 0.5347).
REACH_GOAL = np.array([1.45, 0.65, 0.45])
# gymnasium's push start: gripper at (1.3455, 0.7490, 0.4136); table top z=0.40,
# block centre at rest z=0.4247. The goal is the authors' fixed FetchPush goal.
PUSH_GOAL = np.array([1.40, 0.90, 0.42470])
PUSH_OBJECT_RANGE = 0.15
PUSH_MIN_GRIPPER_DISTANCE = 0.1
REACH_START_NOISE = 0.08
SETTLE_STEPS = 10  # Control steps that let the arm follow a displaced start target (as gymnasium's setup does).

# Free-camera poses (MuJoCo convention: the camera sits at
# lookat - distance * (cos(el)cos(az), cos(el)sin(az), sin(el))).
CAMERAS = {
  # FetchReach-image: in front of and beside the gripper's workspace, level with it, so the whole gripper is in
  # frame from its highest start to the goal and both horizontal axes move it across the image (the front camera
  # cut the gripper off at the frame's top edge and left the lower 60% empty table).
  "reach": dict(lookat=(1.40, 0.70, 0.52), distance=0.7, azimuth=-60.0, elevation=-25.0),
  # FetchPush-image: beside the table (+y side), looking across the push direction and down: the
  # gripper and the block are side by side, so the block is always visible.
  "front": dict(lookat=(1.31, 0.75, 0.44), distance=0.6, azimuth=-90.0, elevation=-45.0),
  # Nearly top-down over the workspace (the authors' occluded pose: azimuth 180, elevation -80): the block
  # is always in frame, but the arm passes over it and hides it for much of a push.
  "occluded": dict(lookat=(1.32, 0.80, 0.42), distance=0.75, azimuth=180.0, elevation=-80.0),
  # Evaluation videos: the whole arm, the table and the goal from the front-left (no agent sees it).
  "video": dict(lookat=(1.30, 0.80, 0.50), distance=1.25, azimuth=-145.0, elevation=-40.0),
}


_LIVE_CAMERAS: "weakref.WeakSet[OffscreenCamera]" = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_live_cameras() -> None:
  # Runs before mujoco.egl's own exit handler (atexit is LIFO and this one is
  # registered after the first GL context exists), so GL contexts are freed
  # while EGL is still usable instead of erroring in __del__ at shutdown.
  # A camera whose thread still runs may be mid-render: freeing its context
  # from here would crash that thread, so its owner closes it (or the OS does).
  for camera in list(_LIVE_CAMERAS):
    if camera.owner is threading.current_thread() or not camera.owner.is_alive():
      camera.close()


class OffscreenCamera:
  """Fast 64x64 RGB rendering of a free camera (no shadows/reflections/MSAA, no sites)."""

  def __init__(self, model: mujoco.MjModel, lookat, distance, azimuth, elevation, size: int = base.IMAGE_SIZE):
    model.vis.quality.offsamples = 0  # must be set before the GL context exists
    self._renderer = mujoco.Renderer(model, height=size, width=size)
    flags = self._renderer.scene.flags
    flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
    flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
    self._camera = mujoco.MjvCamera()
    self._camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    self._camera.lookat[:] = lookat
    self._camera.distance = distance
    self._camera.azimuth = azimuth
    self._camera.elevation = elevation
    self._option = mujoco.MjvOption()
    self._option.sitegroup[:] = 0  # hide every site (goal marker included)
    self.owner = threading.current_thread()
    global _ATEXIT_REGISTERED
    _LIVE_CAMERAS.add(self)
    if not _ATEXIT_REGISTERED:
      atexit.register(_close_live_cameras)
      _ATEXIT_REGISTERED = True

  def render(self, data: mujoco.MjData, goal: Optional[np.ndarray] = None, solved: bool = False) -> np.ndarray:
    """The camera's image; with `goal`, a marker of the success region drawn there (videos only)."""
    self._renderer.update_scene(data, camera=self._camera, scene_option=self._option)
    if goal is not None:
      base.draw_goal_marker(self._renderer.scene, goal, SUCCESS_THRESHOLD, solved)
    return np.array(self._renderer.render(), dtype=np.uint8, copy=True)

  def close(self) -> None:
    self._renderer.close()
    _LIVE_CAMERAS.discard(self)


class FetchEnv(base.ExampleControlEnv):
  """Fixed-goal FetchReach / FetchPush; see the module docstring."""

  horizon = HORIZON

  def __init__(self, task: str, camera: Optional[str] = None, seed: int = 0, name: Optional[str] = None):
    super().__init__(seed)
    if task not in ("reach", "push"):
      raise ValueError(f"unknown Fetch task {task!r}")
    self._task = task
    self.base_task = f"fetch_{task}"
    self.name = name or self.base_task
    self.image_obs = camera is not None
    gym_id = "FetchReach-v4" if task == "reach" else "FetchPush-v4"
    self._env = gym.make(gym_id).unwrapped
    self._env.reset(seed=self._seed)
    model = self._env.model
    target_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "target0")
    model.site_rgba[target_id, 3] = 0.0  # goal marker invisible, whatever the renderer
    mocap_body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "robot0:mocap")
    model.geom_rgba[model.geom_bodyid == mocap_body, 3] = 0.0  # mocap cross-hair lines
    self._camera_name = camera
    self._camera = OffscreenCamera(model, **CAMERAS[camera]) if camera else None
    self._video_camera = None  # Made on first use, on the thread that renders.
    self._goal = (REACH_GOAL if task == "reach" else PUSH_GOAL).astype(np.float64).copy()
    self._obs_dict = None

  # ------------------------------------------------------------------ helpers
  @property
  def _model(self):
    return self._env.model

  @property
  def _data(self):
    return self._env.data

  def _site_pos(self, name: str) -> np.ndarray:
    return self._data.site(name).xpos.copy()

  # ----------------------------------------------------------- env interface
  def _state_dim(self) -> int:
    return 10 if self._task == "reach" else 25

  def _reset_sim(self) -> None:
    self._env.reset()
    if self._task == "reach":
      # The mocap target starts where the gripper is (as before every Fetch action), then moves by the noise.
      mujoco_utils.reset_mocap2body_xpos(self._model, self._data)
      self._data.mocap_pos[0] += self._rng.uniform(-REACH_START_NOISE, REACH_START_NOISE, 3)
      for _ in range(SETTLE_STEPS):
        mujoco.mj_step(self._model, self._data, nstep=self._env.n_substeps)
    if self._task == "push":
      gripper_xy = self._site_pos("robot0:grip")[:2]
      while True:
        xy = gripper_xy + self._rng.uniform(-PUSH_OBJECT_RANGE, PUSH_OBJECT_RANGE, 2)
        if (
          np.linalg.norm(xy - gripper_xy) >= PUSH_MIN_GRIPPER_DISTANCE
          and np.linalg.norm(np.r_[xy, PUSH_GOAL[2]] - PUSH_GOAL) >= SUCCESS_THRESHOLD
        ):
          break
      qpos = self._data.joint("object0:joint").qpos
      qpos[:2] = xy
      qpos[2] = PUSH_GOAL[2]
      qpos[3:] = (1.0, 0.0, 0.0, 0.0)
      self._data.joint("object0:joint").qvel[:] = 0.0
    self._env.goal = self._goal.copy()
    mujoco.mj_forward(self._model, self._data)
    self._obs_dict = self._env._get_obs()  # pylint: disable=protected-access

  def _step_sim(self, action: np.ndarray) -> None:
    self._obs_dict, *_ = self._env.step(action)

  def _observation(self) -> np.ndarray:
    if self._camera is not None:
      return self._camera.render(self._data)
    return np.asarray(self._obs_dict["observation"], dtype=np.float32)

  def success(self) -> bool:
    achieved = self._site_pos("robot0:grip" if self._task == "reach" else "object0")
    return bool(np.linalg.norm(achieved - self._goal) < SUCCESS_THRESHOLD)

  def privileged_state(self) -> Dict[str, np.ndarray]:
    state = {
      "gripper_pos": self._site_pos("robot0:grip"),
      "goal_pos": self._goal.copy(),
    }
    if self._task == "push":
      state["object_pos"] = self._site_pos("object0")
    return state

  def render(self, camera: str = "front") -> np.ndarray:
    """A 64x64 RGB frame of the current state from a named camera (for debugging)."""
    if self._camera is not None and camera == self._camera_name:
      return self._camera.render(self._data)
    cam = OffscreenCamera(self._model, **CAMERAS[camera])
    try:
      return cam.render(self._data)
    finally:
      cam.close()

  def render_frame(self, size: int = base.VIDEO_SIZE) -> np.ndarray:
    if self._video_camera is None:
      self._video_camera = OffscreenCamera(self._model, **CAMERAS["video"], size=size)
    return self._video_camera.render(self._data, goal=self._goal, solved=self.success())

  def close(self) -> None:
    for camera in (self._camera, self._video_camera):
      if camera is not None:
        camera.close()
    self._camera = self._video_camera = None
    self._env.close()
