"""LAEO builder."""

from dm_env import specs

from agents.common import builder as common_builder
from agents.common import networks as common_networks
from agents.laeo import learning
from agents.laeo import networks as laeo_networks
from agents.laeo.config import LaeoConfig


class LaeoBuilder(common_builder.BaseBuilder):
  """Builds LAEO networks, learner and policy from a LaeoConfig."""

  batch_kind = "future"

  def __init__(self, config: LaeoConfig = LaeoConfig()):
    super().__init__(config)

  def make_networks(
    self, observation_spec: specs.Array, action_spec: specs.Array, observation_stats=None
  ) -> laeo_networks.LaeoNetworks:
    return laeo_networks.make_networks(observation_spec, action_spec, self._config, observation_stats)

  def make_learner(
    self, networks, iterator, success_examples, random_key, counter=None, logger=None
  ) -> learning.LaeoLearner:
    return learning.LaeoLearner(
      networks, self._config, iterator, success_examples, random_key, counter=counter, logger=logger
    )

  def make_policy(self, networks: laeo_networks.LaeoNetworks):
    """fn(policy_params, key, obs, evaluation) -> action (tanh(mean) if eval)."""
    return common_networks.make_tanh_gaussian_actor(networks.observation_spec, networks.policy.apply)
