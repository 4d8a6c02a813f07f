"""Networks of TD3+BC on a learned reward.

Image observations: each of actor, critic and classifier has its own conv
torso; within the critic one torso is shared by both twin Q heads.
Actions are assumed normalised to [-1, 1] (the actor ends in tanh).
"""

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from dm_env import specs

from agents.common import networks as common_networks
from agents.td3bc_reward.config import RewardTD3BCConfig

NUM_CRITICS = 2


@dataclasses.dataclass(frozen=True)
class RewardTD3BCNetworks:
  """policy: obs -> action in [-1,1]^A; critic: (obs, action) -> [2, B];
  classifier: obs -> success logit [B]."""

  policy: hk.Transformed
  critic: hk.Transformed
  classifier: hk.Transformed
  observation_spec: specs.Array
  action_spec: specs.Array


def make_networks(
  observation_spec: specs.Array,
  action_spec: specs.Array,
  config: RewardTD3BCConfig,
  observation_stats: common_networks.ObservationStats = None,
) -> RewardTD3BCNetworks:
  common_networks.check_action_spec(action_spec)
  common_networks.check_observation_stats(observation_spec, observation_stats)
  action_dim = int(np.prod(action_spec.shape))

  def policy(obs):
    x = common_networks.Encoder.from_config(observation_spec, config, observation_stats, name="policy_encoder")(obs)
    x = common_networks.mlp(config.policy_hidden_sizes, action_dim, name="policy_mlp")(x)
    return jnp.tanh(x)

  def critic(obs, action):
    x = common_networks.Encoder.from_config(observation_spec, config, observation_stats, name="critic_encoder")(obs)
    x = jnp.concatenate([x, action.reshape(action.shape[0], -1).astype(jnp.float32)], -1)
    return common_networks.StackedMLP(NUM_CRITICS, config.critic_hidden_sizes, 1, name="q")(x)[..., 0]

  def classifier(obs):
    x = common_networks.Encoder.from_config(observation_spec, config, observation_stats, name="classifier_encoder")(obs)
    return common_networks.mlp(config.classifier_hidden_sizes, 1, name="classifier_mlp")(x)[..., 0]

  t = lambda f: hk.without_apply_rng(hk.transform(f))
  return RewardTD3BCNetworks(
    policy=t(policy),
    critic=t(critic),
    classifier=t(classifier),
    observation_spec=observation_spec,
    action_spec=action_spec,
  )


def make_actor(networks: RewardTD3BCNetworks, config: RewardTD3BCConfig):
  """fn(params, key, obs, evaluation) -> action; Gaussian exploration noise
  (std config.exploration_noise, result clipped to [-1, 1]) unless evaluating."""

  def batched(params, key, obs, evaluation):
    action = networks.policy.apply(params, obs)
    noisy = jnp.clip(action + config.exploration_noise * jax.random.normal(key, action.shape, action.dtype), -1.0, 1.0)
    return jnp.where(jnp.asarray(evaluation), action, noisy)

  return common_networks.batched_policy(networks.observation_spec, batched)
