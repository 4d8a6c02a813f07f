"""A trained policy outside the launcher, in two lines:

  from launch.policy import load_policy
  policy = load_policy("runs/laeo_fetch_reach_seed0")   # the latest checkpoint; or step=N
  action = policy(observation)                            # numpy in, numpy out, in [-1, 1]

It needs neither TensorFlow, Reverb nor Launchpad, nor the run's environment: only JAX, Haiku and the run's
config, which holds the dataset's observation and action layouts. The observation is a step's `observation` as
the dataset stores it (a dict of nested fields, from which the run's --observation_key fields are picked, images
resized as in training), or the array itself for a run on one field. Actions come back in the dataset's units
(mapped back from [-1, 1] when the run rescaled them), and as a dict of its action fields when the run named
them with --action_key. The policy is deterministic (the tanh of the Gaussian's mean, or the TD3 actor) unless
`deterministic=False`, which samples with the given seed.
"""

from typing import Any, List, Mapping, Optional, Sequence

import jax
import numpy as np

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
    self._state = checkpoint["learner"]  # The training state's fields as a dict.
    (self._policy_params,) = learner_lib.state_variables(self._state, ["policy"])
    self.observation_spec, self.action_spec = self.config.specs()
    self._scaling = self.config.scaling()
    self._layout = self.config.observation_layout()
    self._action_layout = self.config.action_layout()
    builder = self.config.make_builder()
    networks = builder.make_networks(self.observation_spec, self.action_spec, self.config.observation_stats)
    self._act = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
    self._deterministic = deterministic
    self._key = jax.random.PRNGKey(seed)

  def __call__(self, observation: Any) -> Any:
    """One action for one observation (or a batch of actions for a batch of observations)."""
    if isinstance(observation, Mapping):
      observation = self._layout.convert(self._layout.pick(observation))
    elif not self._layout.packed:
      observation = self._layout.convert({self._layout.fields[0].path: observation})
    observation = np.asarray(observation, dtype=self.observation_spec.dtype)
    if observation.shape[-len(self.observation_spec.shape) :] != self.observation_spec.shape:
      raise ValueError(f"Observation of shape {observation.shape}; this policy takes {self.observation_spec.shape}.")
    self._key, key = jax.random.split(self._key)
    action = np.asarray(self._act(self._policy_params, key, observation, evaluation=self._deterministic))
    action = action if self._scaling is None else self._scaling.unnormalise(action)
    return action if self._action_layout is None else self._action_layout.split(action)

  def get_variables(self, names: Sequence[str]) -> List:
    """The checkpoint's parameters by name, as a learner serves them ("policy": the policy's)."""
    return learner_lib.state_variables(self._state, names)


def load_policy(workdir: str, step: Optional[int] = None, deterministic: bool = True, seed: int = 0) -> Policy:
  """The policy of `workdir`'s latest checkpoint (or of step `step`)."""
  return Policy(workdir, step, deterministic, seed)
