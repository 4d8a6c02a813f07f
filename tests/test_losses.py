"""Hand-checked tests of the shared losses and the tanh-Gaussian density."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from agents.common import distributions
from agents.common import losses

# softplus values used below, written out:
#   softplus(-1) = 0.31326169, softplus(0) = 0.69314718,
#   softplus(1) = 1.31326169, softplus(2) = 2.12692801,
#   softplus(-2) = 0.12692801.


def test_binary_nce_loss_2x2_by_hand():
  logits = jnp.array([[1.0, -1.0], [2.0, 0.0]])
  loss, m = losses.binary_nce_loss(logits)
  # Diagonal (label 1): softplus(-1), softplus(-0); off-diagonal (label 0):
  # softplus(-1), softplus(2).  Mean of the four:
  expected = (0.31326169 + 0.69314718 + 0.31326169 + 2.12692801) / 4
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(loss, 0.86164964, rtol=1e-6)
  # Binary: [1>0 ok, -1<0 ok, 2>0 wrong, 0>0 false -> wrong] -> 0.5.
  np.testing.assert_allclose(m["binary_accuracy"], 0.5)
  # Row argmax: row 0 -> 0 (correct), row 1 -> 0 (wrong).
  np.testing.assert_allclose(m["categorical_accuracy"], 0.5)
  np.testing.assert_allclose(m["logits_pos"], 0.5)
  np.testing.assert_allclose(m["logits_neg"], 0.5)


def test_log_mean_exp_by_hand_and_stable():
  x = jnp.array([0.0, 1.0, 2.0])
  # log((1 + e + e^2) / 3)
  np.testing.assert_allclose(losses.log_mean_exp(x), 1.30899368, rtol=1e-6)
  big = jnp.array([[1000.0, 1000.0], [1000.0, 0.0], [-1000.0, -1000.0]])
  out = losses.log_mean_exp(big, axis=-1)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, [1000.0, 1000.0 - math.log(2.0), -1000.0], rtol=1e-6)
  # Gradient stays finite too.
  g = jax.grad(lambda v: losses.log_mean_exp(v).sum())(big[1])
  np.testing.assert_allclose(g, [1.0, 0.0], atol=1e-6)


def test_bce_classifier_loss_by_hand():
  pos = jnp.array([0.0, 2.0])
  unl = jnp.array([1.0, -1.0])
  # 0.5 * (mean(softplus(-0), softplus(-2)) + mean(softplus(1), softplus(-1)))
  expected = 0.5 * ((0.69314718 + 0.12692801) / 2 + (1.31326169 + 0.31326169) / 2)
  np.testing.assert_allclose(losses.bce_classifier_loss(pos, unl), expected, rtol=1e-6)
  np.testing.assert_allclose(expected, 0.61164964, rtol=1e-6)


def test_pu_loss_by_hand():
  pos = jnp.array([0.0, 2.0])
  unl = jnp.array([1.0, -1.0])
  eta = 0.5
  pos_as_pos = (0.69314718 + 0.12692801) / 2  # 0.41003760
  pos_as_neg = (0.69314718 + 2.12692801) / 2  # 1.41003760
  unl_as_neg = (1.31326169 + 0.31326169) / 2  # 0.81326169
  expected = eta * pos_as_pos + max(0.0, unl_as_neg - eta * pos_as_neg)
  np.testing.assert_allclose(expected, 0.31326169, rtol=1e-6)
  np.testing.assert_allclose(losses.pu_classifier_loss(pos, unl, eta), expected, rtol=1e-6)
  # Negative-risk term clamped at 0: unlabeled logits -3, -4 give
  # mean L(unl, 0) = 0.0323 < eta * 1.4100, so only eta * 0.4100 remains.
  unl2 = jnp.array([-3.0, -4.0])
  np.testing.assert_allclose(losses.pu_classifier_loss(pos, unl2, eta), 0.20501880, rtol=1e-6)
  g = jax.grad(lambda u: losses.pu_classifier_loss(pos, u, eta))(unl2)
  np.testing.assert_allclose(g, 0.0)


def test_log1m_tanh_sq_stable():
  x = jnp.array([-30.0, -3.0, 0.0, 0.5, 3.0, 30.0])
  naive = np.log(1.0 - np.tanh(np.array([-3.0, 0.0, 0.5, 3.0])) ** 2)
  out = distributions.log1m_tanh_sq(x)
  np.testing.assert_allclose(out[1:5], naive, rtol=1e-5)
  # For |x| large, log(1 - tanh^2) ~ 2 log 2 - 2|x|.
  np.testing.assert_allclose(np.asarray(out)[[0, 5]], 2 * math.log(2) - 60.0, rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
  mean, std = 0.3, 0.7
  a = np.linspace(-0.95, 0.95, 9)
  # Numerical density: derivative of the CDF P(tanh(U) <= a) = Phi(atanh(a)).
  h = 1e-5
  phi = np.vectorize(lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
  cdf = lambda v: phi((np.arctanh(v) - mean) / std)
  numeric = (cdf(a + h) - cdf(a - h)) / (2 * h)
  lp = distributions.tanh_gaussian_log_prob(
    jnp.full((9, 1), mean), jnp.full((9, 1), math.log(std)), jnp.asarray(a[:, None], jnp.float32)
  )
  np.testing.assert_allclose(np.exp(lp), numeric, rtol=1e-3)
  # The 2-D density factorises over dimensions.
  lp2 = distributions.tanh_gaussian_log_prob(
    jnp.full((9, 2), mean), jnp.full((9, 2), math.log(std)), jnp.asarray(np.stack([a, a], 1), jnp.float32)
  )
  np.testing.assert_allclose(lp2, 2 * lp, rtol=1e-5)
  # Actions at the bound are clipped and stay finite.
  edge = distributions.tanh_gaussian_log_prob(jnp.zeros((1, 2)), jnp.zeros((1, 2)), jnp.array([[1.0, -1.0]]))
  assert np.all(np.isfinite(edge))


def test_tanh_gaussian_sample_log_prob_consistent():
  key = jax.random.PRNGKey(0)
  mean = jnp.array([[0.2, -0.4]])
  log_std = jnp.array([[-0.5, 0.1]])
  action, u = distributions.tanh_gaussian_sample(key, mean, log_std)
  np.testing.assert_allclose(action, jnp.tanh(u))
  np.testing.assert_allclose(
    distributions.tanh_gaussian_log_prob_from_pre_tanh(mean, log_std, u),
    distributions.tanh_gaussian_log_prob(mean, log_std, action),
    rtol=1e-4,
  )
