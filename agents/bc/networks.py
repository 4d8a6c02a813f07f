"""BC network: tanh-Gaussian policy (own conv torso for image observations)."""

import dataclasses

import haiku as hk
from dm_env import specs

from agents.bc.config import BcConfig
from agents.common import networks as common_networks


@dataclasses.dataclass(frozen=True)
class BcNetworks:
  """policy: apply(params, obs) -> (mean, log_std) of the pre-tanh Gaussian."""

  policy: hk.Transformed
  observation_spec: specs.Array
  action_spec: specs.Array


def make_networks(
  observation_spec: specs.Array,
  action_spec: specs.Array,
  config: BcConfig,
  observation_stats: common_networks.ObservationStats = None,
) -> BcNetworks:
  common_networks.check_action_spec(action_spec)
  common_networks.check_observation_stats(observation_spec, observation_stats)
  policy = common_networks.make_tanh_gaussian_policy(observation_spec, action_spec, config, observation_stats)
  return BcNetworks(policy=policy, observation_spec=observation_spec, action_spec=action_spec)
