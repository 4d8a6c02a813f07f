"""One evaluation episode of a policy, shared by the evaluator workers, scripts and tests."""

from typing import Any, Callable, List, Mapping, Optional, Tuple

import dm_env
import jax
import numpy as np

import environments
from data_pipeline import action_scaling as scaling_lib


def observation_path(observation_key: str) -> List[str]:
  """The keys that lead from an environment's (possibly nested) observation to the run's observation: the
  dataset's step field 'observation' is what the environment returns."""
  parts = observation_key.split("/")
  return parts[1:] if parts[0] == "observation" else parts


class EvaluationEnv:
  """A run's view of its environment: observations as its dataset holds them (the run's observation_key picked
  out of nested observations, cast as the networks take them), the policy's [-1, 1] actions mapped back to the
  dataset's units, and a user's episodes cut after `max_steps` actions (the dataset's longest episode)."""

  def __init__(
    self,
    env: Any,
    observation_key: str = "observation",
    scaling: Optional[scaling_lib.ActionScaling] = None,
    max_steps: Optional[int] = None,
    can_render: bool = True,
  ):
    self._env = env
    self._path = observation_path(observation_key)
    self._scaling = scaling
    self._max_steps = max_steps
    self._t = 0
    self.can_render = can_render and callable(getattr(env, "render_frame", None))
    self.image_obs = bool(getattr(env, "image_obs", False))

  @property
  def action_shape(self) -> Tuple[int, ...]:
    return tuple(self._env.action_spec().shape)

  def _observation(self, observation):
    for part in self._path:
      if not isinstance(observation, Mapping) or part not in observation:
        raise ValueError(f"The environment's observation has no field {part!r} (--observation_key picks it).")
      observation = observation[part]
    observation = np.asarray(observation)
    return observation if observation.dtype == np.uint8 else observation.astype(np.float32)

  def _timestep(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
    timestep = timestep._replace(observation=self._observation(timestep.observation))
    if self._max_steps is not None and self._t >= self._max_steps and not timestep.last():
      timestep = timestep._replace(step_type=dm_env.StepType.LAST)
    return timestep

  def reset(self) -> dm_env.TimeStep:
    self._t = 0
    return self._timestep(self._env.reset())

  def step(self, action) -> dm_env.TimeStep:
    self._t += 1
    action = np.asarray(action) if self._scaling is None else self._scaling.unnormalise(action)
    return self._timestep(self._env.step(action))

  def success(self) -> bool:
    return bool(self._env.success())

  def render_frame(self) -> np.ndarray:
    return self._env.render_frame()

  def close(self) -> None:
    self._env.close()


def make_evaluation_env(config, seed: int) -> EvaluationEnv:
  """The evaluation environment of a run (a launch.run_config.RunConfig)."""
  own = config.env in environments.ENV_NAMES
  spec = config.spec() if config.dataset_spec is not None else None
  return EvaluationEnv(
    environments.make(config.env, seed=seed),
    config.observation_key,
    config.scaling(),
    max_steps=None if own or spec is None else spec.max_episode_length - 1,
    can_render=own,
  )


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
