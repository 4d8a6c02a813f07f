"""One evaluation episode of a policy, shared by the evaluator workers, scripts and tests."""

from typing import Callable, List, Optional, Tuple

import jax
import numpy as np


def video_frame(env, observation) -> np.ndarray:
  """The task's camera frame; for image tasks the agent's own observation, enlarged, beside it."""
  frame = env.render_frame()
  if getattr(env, "image_obs", False):
    scale = frame.shape[0] // observation.shape[0]
    frame = np.concatenate([frame, np.kron(observation, np.ones((scale, scale, 1), np.uint8))], axis=1)
  return frame


def run_episode(
  env, policy: Callable, params, key, frames: Optional[List[np.ndarray]] = None
) -> Tuple[bool, bool, jax.Array]:
  """Rolls `policy(params, key, observation, evaluation=True)` out for one episode of `env`.

  Returns (success at any step after the first action, success at the final step, the next random key).
  With `frames`, appends a video frame of every state of the episode to it.
  """
  timestep = env.reset()
  any_step = False
  while True:
    if frames is not None:
      frames.append(video_frame(env, timestep.observation))
    if timestep.last():
      break
    key, sub = jax.random.split(key)
    timestep = env.step(np.asarray(policy(params, sub, timestep.observation, evaluation=True)))
    any_step = any_step or env.success()
  return bool(any_step), bool(env.success()), key
