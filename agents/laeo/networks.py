"""LAEO networks: twin contrastive critics f(s, a, s_f) = phi(s, a) . psi(s_f).

Image observations: the critic owns ONE conv torso shared by phi and psi of
both twins (states and success examples/futures live in the same image space;
sharing keeps the conv cost at one torso per critic). The policy has its own
torso. Beyond the torso the two twins are fully independent phi/psi MLPs.
"""

import dataclasses
from typing import Callable

import haiku as hk
import jax.numpy as jnp
from dm_env import specs

from agents.common import networks as common_networks
from agents.laeo.config import LaeoConfig

NUM_CRITICS = 2


@dataclasses.dataclass(frozen=True)
class LaeoNetworks:
  """Pure functions (haiku-transformed) of the LAEO networks.

  policy: apply(params, obs) -> (mean, log_std) of the pre-tanh Gaussian.
  critic_init: init(key, obs, action, goal) -> critic params.
  encode: (critic_params, obs [B,...]) -> the critic's features [B, D].
  phi_head: (critic_params, features [B, D], action [B, A]) -> [2, B, repr_dim].
  psi_head: (critic_params, features [M, D]) -> [2, M, repr_dim].
  phi, psi: the same from observations (encode, then the head).
  prepare: obs -> the same observations as the encoders read them (common_networks.prepare_images): made once
    for the success examples, which every update encodes unchanged.
  The split lets one update encode a batch's observations once for both losses.
  """

  policy: hk.Transformed
  critic_init: Callable
  encode: Callable
  phi_head: Callable
  psi_head: Callable
  prepare: Callable
  observation_spec: specs.Array
  action_spec: specs.Array

  def phi(self, critic_params, obs, action):
    return self.phi_head(critic_params, self.encode(critic_params, obs), action)

  def psi(self, critic_params, goal):
    return self.psi_head(critic_params, self.encode(critic_params, goal))


def make_networks(
  observation_spec: specs.Array,
  action_spec: specs.Array,
  config: LaeoConfig,
  observation_stats: common_networks.ObservationStats = None,
) -> LaeoNetworks:
  common_networks.check_action_spec(action_spec)
  common_networks.check_observation_stats(observation_spec, observation_stats)
  hidden = tuple(config.hidden_sizes)
  repr_dim = config.repr_dim

  def critic_fns():
    encoder = common_networks.Encoder.from_config(observation_spec, config, observation_stats, name="critic_encoder")
    phi_net = common_networks.StackedMLP(NUM_CRITICS, hidden, repr_dim, name="phi")
    psi_net = common_networks.StackedMLP(NUM_CRITICS, hidden, repr_dim, name="psi")

    def phi_head(features, action):
      return phi_net(jnp.concatenate([features, action.reshape(action.shape[0], -1).astype(jnp.float32)], axis=-1))

    def psi_head(features):
      return psi_net(features)

    def init(obs, action, goal):
      return phi_head(encoder(obs), action), psi_head(encoder(goal))

    return init, (encoder, phi_head, psi_head)

  critic = hk.without_apply_rng(hk.multi_transform(critic_fns))
  encode, phi_head, psi_head = critic.apply
  policy = common_networks.make_tanh_gaussian_policy(observation_spec, action_spec, config, observation_stats)
  return LaeoNetworks(
    policy=policy,
    critic_init=critic.init,
    encode=encode,
    phi_head=phi_head,
    psi_head=psi_head,
    prepare=common_networks.prepare_images(observation_spec, config.torso_padding),
    observation_spec=observation_spec,
    action_spec=action_spec,
  )
