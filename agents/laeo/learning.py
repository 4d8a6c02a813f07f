"""LAEO losses, pure update function and learner."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from agents.common import distributions
from agents.common import learner as common_learner
from agents.common import losses
from agents.common import networks as common_networks
from agents.laeo.config import LaeoConfig
from agents.laeo.networks import LaeoNetworks


class LaeoTrainingState(NamedTuple):
  policy_params: Any
  critic_params: Any
  policy_opt_state: Any
  critic_opt_state: Any
  key: jnp.ndarray
  steps: jnp.ndarray


def make_optimizer(config: LaeoConfig):
  return optax.adam(config.learning_rate)


def make_initial_state(networks: LaeoNetworks, config: LaeoConfig, key) -> LaeoTrainingState:
  key, pkey, ckey = jax.random.split(key, 3)
  obs = common_networks.dummy_observation(networks.observation_spec)
  act = common_networks.dummy_action(networks.action_spec)
  policy_params = networks.policy.init(pkey, obs)
  critic_params = networks.critic_init(ckey, obs, act, obs)
  opt = make_optimizer(config)
  return LaeoTrainingState(
    policy_params=policy_params,
    critic_params=critic_params,
    policy_opt_state=opt.init(policy_params),
    critic_opt_state=opt.init(critic_params),
    key=key,
    steps=jnp.zeros((), jnp.int32),
  )


def critic_loss_fn(networks: LaeoNetworks, critic_params, batch):
  """Binary NCE summed over the twin critics; metrics averaged over twins.

  Returns (loss, (metrics, the critic's features of batch['observation'])).
  """
  obs_features = networks.encode(critic_params, batch["observation"])
  phi = networks.phi_head(critic_params, obs_features, batch["action"])
  psi = networks.psi(critic_params, batch["future_observation"])
  logits = jnp.einsum("kbr,kcr->kbc", phi, psi)  # [2, B, B]
  per_twin_loss, per_twin_metrics = jax.vmap(losses.binary_nce_loss)(logits)
  loss = jnp.sum(per_twin_loss)
  metrics = {k: jnp.mean(v) for k, v in per_twin_metrics.items()}
  metrics["critic_loss"] = loss
  return loss, (metrics, obs_features)


def q_success_subset(config: LaeoConfig, success_examples, key):
  """The success examples the log-mean-exp of this update runs over: all of them, or
  `num_q_success_examples` drawn uniformly without replacement."""
  n, m = success_examples.shape[0], config.num_q_success_examples
  if config.q_estimator != "logmeanexp" or m == 0 or m >= n:
    return success_examples
  subset = jax.random.choice(key, n, (m,), replace=False)
  return jax.tree_util.tree_map(lambda x: x[subset], success_examples)  # Raw or prepared (conv.Blocks).


def q_values(networks: LaeoNetworks, config: LaeoConfig, critic_params, obs_features, action, success_examples, key):
  """Per-twin Q(s, a) [2, B] from the success examples (see LaeoConfig)."""
  phi = networks.phi_head(critic_params, obs_features, action)  # [2, B, R]
  if config.q_estimator == "logmeanexp":
    # Only the subset is encoded (for images the conv torso's cost).
    psi_star = networks.psi(critic_params, q_success_subset(config, success_examples, key))  # [2, M, R]
    logits = jnp.einsum("kbr,knr->kbn", phi, psi_star)
    return losses.log_mean_exp(logits, axis=-1)
  psi_star = networks.psi(critic_params, success_examples)  # [2, N, R]
  # 'single_example': one success example per batch element.
  idx = jax.random.randint(key, (phi.shape[1],), 0, psi_star.shape[1])
  return jnp.sum(phi * psi_star[:, idx], axis=-1)


def policy_loss_fn(
  networks: LaeoNetworks,
  config: LaeoConfig,
  policy_params,
  critic_params,
  batch,
  success_examples,
  key,
  obs_features=None,
):
  """obs_features: the critic's features of batch['observation'] when the
  caller has them (the update reuses the critic loss's), else computed here."""
  sample_key, q_key = jax.random.split(key)
  obs = batch["observation"]
  mean, log_std = networks.policy.apply(policy_params, obs)
  action, _ = distributions.tanh_gaussian_sample(sample_key, mean, log_std)
  critic_params = jax.lax.stop_gradient(critic_params)
  if obs_features is None:
    obs_features = networks.encode(critic_params, obs)
  obs_features = jax.lax.stop_gradient(obs_features)
  q = jnp.min(q_values(networks, config, critic_params, obs_features, action, success_examples, q_key), axis=0)
  q_loss = jnp.mean(-q)
  log_prob = distributions.tanh_gaussian_log_prob(mean, log_std, batch["action"], eps=config.action_clip_eps)
  bc_loss = jnp.mean(-log_prob)
  loss = (1.0 - config.bc_coef) * q_loss + config.bc_coef * bc_loss
  return loss, dict(
    policy_loss=loss, actor_q_loss=q_loss, q_value=jnp.mean(q), bc_loss=bc_loss, policy_log_std=jnp.mean(log_std)
  )


class CriticPart(NamedTuple):
  critic_params: Any
  critic_opt_state: Any
  key: jnp.ndarray
  steps: jnp.ndarray


class PolicyPart(NamedTuple):
  policy_params: Any
  policy_opt_state: Any


def make_stages(networks: LaeoNetworks, config: LaeoConfig) -> common_learner.TwoStageUpdate:
  """LAEO's update as two stages: the critic's, then the policy's from what the critic hands it.

  Critic and policy gradients are both taken at the pre-update parameters: the critic stage hands the policy
  stage those critic parameters, its features of the batch's observations (for images this saves the policy
  one conv pass over the batch) and the policy's random key. So the policy stage of update t can run beside the
  critic stage of update t + 1 (PipelinedLearner). `success_examples` may be raw or prepared
  (networks.prepare; LaeoLearner prepares them once).
  """
  opt = make_optimizer(config)

  def split(state: LaeoTrainingState):
    return (
      CriticPart(state.critic_params, state.critic_opt_state, state.key, state.steps),
      PolicyPart(state.policy_params, state.policy_opt_state),
    )

  def merge(critic: CriticPart, policy: PolicyPart) -> LaeoTrainingState:
    return LaeoTrainingState(
      policy_params=policy.policy_params,
      critic_params=critic.critic_params,
      policy_opt_state=policy.policy_opt_state,
      critic_opt_state=critic.critic_opt_state,
      key=critic.key,
      steps=critic.steps,
    )

  def critic_stage(critic: CriticPart, batch):
    key, policy_key = jax.random.split(critic.key)
    (_, (metrics, obs_features)), grads = jax.value_and_grad(critic_loss_fn, argnums=1, has_aux=True)(
      networks, critic.critic_params, batch
    )
    updates, opt_state = opt.update(grads, critic.critic_opt_state)
    new = CriticPart(optax.apply_updates(critic.critic_params, updates), opt_state, key, critic.steps + 1)
    return new, (critic.critic_params, obs_features, policy_key), metrics

  def policy_stage(policy: PolicyPart, handoff, batch, success_examples):
    critic_params, obs_features, key = handoff
    (_, metrics), grads = jax.value_and_grad(policy_loss_fn, argnums=2, has_aux=True)(
      networks, config, policy.policy_params, critic_params, batch, success_examples, key, obs_features
    )
    updates, opt_state = opt.update(grads, policy.policy_opt_state)
    return PolicyPart(optax.apply_updates(policy.policy_params, updates), opt_state), metrics

  return common_learner.TwoStageUpdate(split, merge, critic_stage, policy_stage)


def make_update_fn(networks: LaeoNetworks, config: LaeoConfig):
  """Returns jitted update(state, batch, success_examples) -> (state, metrics): both stages, one after the other."""
  return jax.jit(make_stages(networks, config).update)


class LaeoLearner(common_learner.PipelinedLearner):
  """Acme learner for LAEO ('future' batches); its critic and policy stages overlap on two threads, except for
  image observations, whose updates keep the cores busy on their own (see PipelinedLearner)."""

  def __init__(
    self, networks: LaeoNetworks, config: LaeoConfig, iterator, success_examples, random_key, counter=None, logger=None
  ):
    super().__init__(
      stages=make_stages(networks, config),
      init_fn=lambda key: make_initial_state(networks, config, key),
      overlap=not common_networks.has_images(networks.observation_spec),
      batch_keys=common_learner.FUTURE_KEYS,
      iterator=iterator,
      # Prepared once: every update encodes them again with new critic parameters.
      success_examples=None if success_examples is None else networks.prepare(jnp.asarray(success_examples)),
      random_key=random_key,
      counter=counter,
      logger=logger,
    )
