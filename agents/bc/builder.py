"""BC builder."""

from dm_env import specs

from agents.bc import learning
from agents.bc import networks as bc_networks
from agents.bc.config import BcConfig
from agents.common import builder as common_builder
from agents.common import networks as common_networks


class BcBuilder(common_builder.BaseBuilder):
  """Builds BC networks, learner and policy from a BcConfig."""

  batch_kind = "transition"

  def __init__(self, config: BcConfig = BcConfig()):
    super().__init__(config)

  def make_networks(
    self, observation_spec: specs.Array, action_spec: specs.Array, observation_stats=None
  ) -> bc_networks.BcNetworks:
    return bc_networks.make_networks(observation_spec, action_spec, self._config, observation_stats)

  def make_learner(
    self, networks, iterator, success_examples, random_key, counter=None, logger=None
  ) -> learning.BcLearner:
    return learning.BcLearner(
      networks, self._config, iterator, success_examples, random_key, counter=counter, logger=logger
    )

  def make_policy(self, networks: bc_networks.BcNetworks):
    """fn(policy_params, key, obs, evaluation) -> action (tanh(mean) if eval)."""
    return common_networks.make_tanh_gaussian_actor(networks.observation_spec, networks.policy.apply)
