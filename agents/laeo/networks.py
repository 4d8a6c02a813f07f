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
from acme import specs

from agents.common import networks as common_networks
from agents.laeo.config import LaeoConfig

NUM_CRITICS = 2


@dataclasses.dataclass(frozen=True)
class LaeoNetworks:
  """Pure functions (haiku-transformed) of the LAEO networks.

  policy: apply(params, obs) -> (mean, log_std) of the pre-tanh Gaussian.
  critic_init: init(key, obs, action, goal) -> critic params.
  phi: (critic_params, obs [B,...], action [B,A]) -> [2, B, repr_dim].
  psi: (critic_params, goal [M,...]) -> [2, M, repr_dim].
  """
  policy: hk.Transformed
  critic_init: Callable
  phi: Callable
  psi: Callable
  observation_spec: specs.Array
  action_spec: specs.Array


def make_networks(observation_spec: specs.Array, action_spec: specs.Array,
                  config: LaeoConfig) -> LaeoNetworks:
  common_networks.check_action_spec(action_spec)
  hidden = tuple(config.hidden_sizes)
  repr_dim = config.repr_dim

  def critic_fns():
    encoder = common_networks.Encoder(observation_spec, name='critic_encoder')
    phi_nets = [common_networks.mlp(hidden, repr_dim, name=f'phi_{k}')
                for k in range(NUM_CRITICS)]
    psi_nets = [common_networks.mlp(hidden, repr_dim, name=f'psi_{k}')
                for k in range(NUM_CRITICS)]

    def phi(obs, action):
      x = jnp.concatenate(
          [encoder(obs), action.reshape(action.shape[0], -1).astype(jnp.float32)],
          axis=-1)
      return jnp.stack([net(x) for net in phi_nets])

    def psi(goal):
      x = encoder(goal)
      return jnp.stack([net(x) for net in psi_nets])

    def init(obs, action, goal):
      return phi(obs, action), psi(goal)

    return init, (phi, psi)

  critic = hk.without_apply_rng(hk.multi_transform(critic_fns))
  phi_apply, psi_apply = critic.apply
  policy = common_networks.make_tanh_gaussian_policy(
      observation_spec, action_spec, config.policy_hidden_sizes,
      config.log_std_min, config.log_std_max)
  return LaeoNetworks(policy=policy, critic_init=critic.init, phi=phi_apply,
                      psi=psi_apply, observation_spec=observation_spec,
                      action_spec=action_spec)
