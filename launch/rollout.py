"""One evaluation episode of a policy, shared by the evaluator workers, scripts and tests."""

from typing import Callable, Tuple

import jax
import numpy as np


def run_episode(env, policy: Callable, params, key) -> Tuple[bool, bool, jax.Array]:
  """Rolls `policy(params, key, observation, evaluation=True)` out for one episode of `env`.

  Returns (success at any step after the first action, success at the final step, the next random key).
  """
  timestep = env.reset()
  any_step = False
  while not timestep.last():
    key, sub = jax.random.split(key)
    timestep = env.step(np.asarray(policy(params, sub, timestep.observation, evaluation=True)))
    any_step = any_step or env.success()
  return bool(any_step), bool(env.success()), key
