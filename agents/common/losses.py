"""Pure loss functions shared by the agents (all unit-tested by hand)."""

import math

import jax
import jax.numpy as jnp


def sigmoid_cross_entropy(logits, labels):
  """Elementwise -[y log s(x) + (1-y) log(1-s(x))], stable form."""
  # = softplus(x) - y * x
  return jax.nn.softplus(logits) - labels * logits


def binary_nce_loss(logits: jnp.ndarray):
  """Binary NCE on a [B, B] logit matrix (logits[i, j] = phi_i . psi_j).

  Diagonal entries are positives (label 1), off-diagonal entries negatives
  (label 0); the loss is the sigmoid cross-entropy averaged over all B*B
  entries. Returns (loss, metrics).
  """
  b = logits.shape[-1]
  labels = jnp.eye(b, dtype=logits.dtype)
  loss = jnp.mean(sigmoid_cross_entropy(logits, labels))
  diag = jnp.diagonal(logits)
  off_mask = 1.0 - labels
  metrics = dict(
    binary_accuracy=jnp.mean(((logits > 0).astype(logits.dtype)) == labels),
    categorical_accuracy=jnp.mean(jnp.argmax(logits, axis=1) == jnp.arange(b)),
    logits_pos=jnp.mean(diag),
    logits_neg=jnp.sum(logits * off_mask) / jnp.maximum(b * (b - 1), 1),
  )
  return loss, metrics


def log_mean_exp(x: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
  """log(mean(exp(x))) along axis, computed as logsumexp(x) - log(n)."""
  n = x.shape[axis]
  return jax.nn.logsumexp(x, axis=axis) - math.log(n)


def bce_classifier_loss(pos_logits, unl_logits):
  """ORIL: success examples are positives, dataset states negatives.

  Balanced BCE: 0.5 * (mean L(pos, 1) + mean L(unl, 0)), i.e. the mean
  cross-entropy over a batch made of equally many positives and negatives.
  """
  pos = jnp.mean(sigmoid_cross_entropy(pos_logits, 1.0))
  unl = jnp.mean(sigmoid_cross_entropy(unl_logits, 0.0))
  return 0.5 * (pos + unl)


def pu_classifier_loss(pos_logits, unl_logits, eta: float):
  """PURL: non-negative positive-unlabeled risk (Kiryo et al., 2017).

      risk = eta * mean L(pos, 1)
             + max(0, mean L(unl, 0) - eta * mean L(pos, 0))

  with L the sigmoid cross-entropy and eta the class prior (the fraction of
  positives among unlabeled dataset states). The max(0, .) clamps the
  estimated negative-class risk, which can become negative through
  overfitting; when clamped that term contributes no gradient (we minimise
  the clamped risk directly rather than nnPU's gradient-ascent variant).
  """
  pos_as_pos = jnp.mean(sigmoid_cross_entropy(pos_logits, 1.0))
  pos_as_neg = jnp.mean(sigmoid_cross_entropy(pos_logits, 0.0))
  unl_as_neg = jnp.mean(sigmoid_cross_entropy(unl_logits, 0.0))
  return eta * pos_as_pos + jnp.maximum(0.0, unl_as_neg - eta * pos_as_neg)
