"""BC loss, pure update function and learner."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agents.bc.config import BcConfig
from agents.bc.networks import BcNetworks
from agents.common import distributions
from agents.common import learner as common_learner
from agents.common import networks as common_networks


class BcTrainingState(NamedTuple):
  policy_params: Any
  policy_opt_state: Any
  key: jnp.ndarray
  steps: jnp.ndarray


def make_optimizer(config: BcConfig) -> optax.GradientTransformation:
  return optax.adam(config.learning_rate)


def make_initial_state(networks: BcNetworks, config: BcConfig, key) -> BcTrainingState:
  key, pkey = jax.random.split(key)
  obs = common_networks.dummy_observation(networks.observation_spec)
  params = networks.policy.init(pkey, obs)
  return BcTrainingState(
    policy_params=params, policy_opt_state=make_optimizer(config).init(params), key=key, steps=jnp.zeros((), jnp.int32)
  )


def bc_loss_fn(networks: BcNetworks, config: BcConfig, params, batch):
  mean, log_std = networks.policy.apply(params, batch["observation"])
  log_prob = distributions.tanh_gaussian_log_prob(mean, log_std, batch["action"], eps=config.action_clip_eps)
  loss = -jnp.mean(log_prob)
  mse = jnp.mean(jnp.sum(jnp.square(jnp.tanh(mean) - batch["action"]), -1))
  return loss, dict(bc_loss=loss, action_mse=mse, policy_log_std=jnp.mean(log_std))


def make_update_fn(networks: BcNetworks, config: BcConfig):
  """Returns jitted update(state, batch, success_examples) -> (state, metrics).

  success_examples is accepted for a uniform interface and ignored.
  """
  opt = make_optimizer(config)

  def update(state: BcTrainingState, batch, success_examples=None):
    del success_examples
    (_, metrics), grads = jax.value_and_grad(bc_loss_fn, argnums=2, has_aux=True)(
      networks, config, state.policy_params, batch
    )
    updates, opt_state = opt.update(grads, state.policy_opt_state)
    params = optax.apply_updates(state.policy_params, updates)
    return BcTrainingState(params, opt_state, state.key, state.steps + 1), metrics

  return jax.jit(update)


class BcLearner(common_learner.GenericLearner):
  """Acme learner for BC ('transition' batches; success examples unused)."""

  def __init__(
    self, networks: BcNetworks, config: BcConfig, iterator, success_examples, random_key, counter=None, logger=None
  ):
    super().__init__(
      init_fn=lambda key: make_initial_state(networks, config, key),
      update_fn=make_update_fn(networks, config),
      batch_keys=("observation", "action"),
      iterator=iterator,
      success_examples=None,
      random_key=random_key,
      counter=counter,
      logger=logger,
    )
