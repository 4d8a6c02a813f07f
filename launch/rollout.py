"""One evaluation episode of a policy, shared by the evaluator workers, scripts and tests."""

from typing import Any, Callable, List, Optional, Tuple

import dm_env
import jax
import numpy as np

import environments
from data_pipeline import action_scaling as scaling_lib
from data_pipeline import step_format


class EvaluationEnv:
  """A run's view of its environment: observations as its dataset holds them (the run's observation fields picked
  out of nested observations and converted as the networks take them: data_pipeline.step_format), the policy's
  [-1, 1] actions mapped back to the dataset's units (and split into its action dict when it had one), and a
  user's episodes cut after `max_steps` actions (the dataset's longest episode)."""

  def __init__(
    self,
    env: Any,
    layout: step_format.ObservationLayout,
    scaling: Optional[scaling_lib.ActionScaling] = None,
    max_steps: Optional[int] = None,
    can_render: bool = True,
    action_layout: Optional[step_format.ActionLayout] = None,
  ):
    self._env = env
    self._layout = layout
    self._scaling = scaling
    self._action_layout = action_layout
    self._max_steps = max_steps
    self._t = 0
    self.can_render = can_render and callable(getattr(env, "render_frame", None))
    self.image_obs = bool(getattr(env, "image_obs", False))

  @property
  def action_shape(self) -> Tuple[int, ...]:
    if self._action_layout is not None:
      return (sum(self._action_layout.sizes),)
    return tuple(self._env.action_spec().shape)

  def _observation(self, observation):
    try:
      return self._layout.convert(self._layout.pick(observation))
    except ValueError as e:
      raise ValueError(f"The environment's observation does not fit the run (--observation_key picks it): {e}") from e

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
    if self._action_layout is not None:
      action = self._action_layout.split(action)
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
  return EvaluationEnv(
    environments.make(config.env, seed=seed),
    config.observation_layout(),
    config.scaling(),
    max_steps=None if own else config.spec().max_episode_length - 1,
    can_render=own,
    action_layout=config.action_layout(),
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
