"""Builder of TD3+BC on a learned reward: ORIL and PURL (agents.make_builder('oril' | 'purl'))."""

from dm_env import specs

from agents.common import builder as common_builder
from agents.td3bc_reward import learning
from agents.td3bc_reward import networks as td3bc_networks
from agents.td3bc_reward.config import RewardTD3BCConfig


class RewardTD3BCBuilder(common_builder.BaseBuilder):
  """Builds networks, learner and policy."""

  batch_kind = "transition"
  config_cls = RewardTD3BCConfig
  learner_cls = learning.RewardTD3BCLearner

  def __init__(self, config=None):
    super().__init__(self.config_cls() if config is None else config)

  def make_networks(self, observation_spec: specs.Array, action_spec: specs.Array, observation_stats=None):
    return td3bc_networks.make_networks(observation_spec, action_spec, self._config, observation_stats)

  def make_learner(self, networks, iterator, success_examples, random_key, counter=None, logger=None):
    return self.learner_cls(
      networks, self._config, iterator, success_examples, random_key, counter=counter, logger=logger
    )

  def make_policy(self, networks):
    """fn(policy_params, key, obs, evaluation) -> action (deterministic if eval)."""
    return td3bc_networks.make_actor(networks, self._config)
