"""A trained policy outside the launcher, in two lines:

  from launch.policy import load_policy
  policy = load_policy("runs/laeo_fetch_reach_seed0")   # the latest checkpoint; or step=N
  action = policy(observation)                            # numpy in, numpy out, in [-1, 1]

It needs neither TensorFlow, Reverb nor Launchpad: only JAX and Haiku, and the environment registry for the
observation and action specs. The policy is deterministic (the tanh of the Gaussian's mean, or the TD3 actor)
unless `deterministic=False`, which samples with the given seed.
"""

from typing import List, Optional, Sequence

import jax
import numpy as np

import environments
from agents.common import learner as learner_lib
from launch import checkpointing
from launch import run_config as run_config_lib


class Policy:
  """`policy(observation) -> action` of one checkpoint of a run; also a variable source (`get_variables`)."""

  def __init__(self, workdir: str, step: Optional[int] = None, deterministic: bool = True, seed: int = 0):
    self.config = run_config_lib.load_run_config(run_config_lib.run_config_path(workdir))
    checkpointer = checkpointing.for_run(workdir)
    checkpoint = checkpointer.latest() if step is None else checkpointer.load(step)
    if checkpoint is None:
      raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints: the run has not saved one yet.")
    self.step = int(checkpoint["step"])
    self._state = checkpoint["learner"]
    env = environments.make(self.config.env, seed=0)
    try:
      self.observation_spec, self.action_spec = env.observation_spec(), env.action_spec()
    finally:
      env.close()
    builder = self.config.make_builder()
    networks = builder.make_networks(self.observation_spec, self.action_spec, self.config.observation_stats)
    self._act = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
    self._deterministic = deterministic
    self._key = jax.random.PRNGKey(seed)

  def __call__(self, observation: np.ndarray) -> np.ndarray:
    """One action for one observation (or a batch of actions for a batch of observations)."""
    observation = np.asarray(observation, dtype=self.observation_spec.dtype)
    if observation.shape[-len(self.observation_spec.shape) :] != self.observation_spec.shape:
      raise ValueError(f"Observation of shape {observation.shape}; this policy takes {self.observation_spec.shape}.")
    self._key, key = jax.random.split(self._key)
    return np.asarray(self._act(self._state.policy_params, key, observation, evaluation=self._deterministic))

  def get_variables(self, names: Sequence[str]) -> List:
    """The checkpoint's parameters by name, as a learner serves them ("policy": the policy's)."""
    return learner_lib.state_variables(self._state, names)


def load_policy(workdir: str, step: Optional[int] = None, deterministic: bool = True, seed: int = 0) -> Policy:
  """The policy of `workdir`'s latest checkpoint (or of step `step`)."""
  return Policy(workdir, step, deterministic, seed)
