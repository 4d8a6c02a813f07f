"""Tanh-squashed diagonal Gaussian, written by hand (no TFP in this stack).

If u ~ N(mean, std^2) and a = tanh(u), then by change of variables

    log pi(a) = sum_i [ log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2) ],
    u = atanh(a).

The Jacobian term uses the numerically stable identity
    log(1 - tanh(x)^2) = 2 * (log 2 - x - softplus(-2 x)).
"""

import math

import jax
import jax.numpy as jnp

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def log1m_tanh_sq(x: jnp.ndarray) -> jnp.ndarray:
  """Stable log(1 - tanh(x)^2)."""
  return 2.0 * (_LOG_2 - x - jax.nn.softplus(-2.0 * x))


def gaussian_log_prob(mean, log_std, u):
  """Sum over the last axis of the diagonal Gaussian log-density at u."""
  z = (u - mean) * jnp.exp(-log_std)
  return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)


def tanh_gaussian_log_prob_from_pre_tanh(mean, log_std, u):
  """log pi(tanh(u)) given the pre-squash sample u (no atanh needed)."""
  return gaussian_log_prob(mean, log_std, u) - jnp.sum(log1m_tanh_sq(u), -1)


def tanh_gaussian_log_prob(mean, log_std, action, eps: float = 1e-6):
  """log pi(action) for a tanh-Gaussian; action is clipped to (-1+eps, 1-eps)."""
  action = jnp.clip(action, -1.0 + eps, 1.0 - eps)
  u = jnp.arctanh(action)
  return tanh_gaussian_log_prob_from_pre_tanh(mean, log_std, u)


def tanh_gaussian_sample(key, mean, log_std):
  """Reparameterised sample; returns (action, pre_tanh_sample)."""
  u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
  return jnp.tanh(u), u


def tanh_gaussian_mode(mean):
  """Deterministic action used at evaluation: tanh(mean)."""
  return jnp.tanh(mean)
