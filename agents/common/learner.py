"""One generic learner (acme.core.Learner's interface) parameterised by pure init / update functions.

Every agent's `<Name>Learner` is a thin subclass that supplies
  * `init_fn(key) -> TrainingState`  (a pytree NamedTuple),
  * `update_fn(state, batch, success_examples) -> (state, metrics)` (pure),
  * the batch keys its update consumes.

`step(num_updates)` runs several updates in one jitted call (a `lax.scan` over
as many batches): the same updates on the same batches as separate calls, minus
the per-call dispatch and synchronisation (Acme's num_sgd_steps_per_step).
"""

from typing import Callable, Dict, Iterator, List, Sequence

import jax
import jax.numpy as jnp
import numpy as np

FUTURE_KEYS = ("observation", "action", "future_observation")
TRANSITION_KEYS = ("observation", "action", "next_observation", "discount")
BATCH_KEYS = {"future": FUTURE_KEYS, "transition": TRANSITION_KEYS}


def select_batch(batch, keys: Sequence[str]):
  """Keeps only `keys` of a dict batch (also unwraps reverb.ReplaySample)."""
  if hasattr(batch, "data") and not isinstance(batch, dict):
    batch = batch.data
  if not isinstance(batch, dict) and hasattr(batch, "_asdict"):
    batch = batch._asdict()
  missing = [k for k in keys if k not in batch]
  if missing:
    raise KeyError(f"Batch is missing keys {missing}; got {sorted(batch)}; " f"expected {list(keys)}.")
  return {k: batch[k] for k in keys}


def state_variables(state, names: Sequence[str], policy_field: str = "policy_params") -> List:
  """Fields of a training-state NamedTuple by name; "policy" names the policy's parameters."""
  out = []
  for name in names:
    if name == "policy":
      out.append(getattr(state, policy_field))
    elif name in state._fields:
      out.append(getattr(state, name))
    else:
      raise ValueError(f'Unknown variable name {name!r}; use "policy" or one of {state._fields}.')
  return out


class GenericLearner:
  """Pulls a batch, runs the jitted update, counts and logs."""

  def __init__(
    self,
    init_fn: Callable,
    update_fn: Callable,
    batch_keys: Sequence[str],
    iterator: Iterator,
    success_examples,
    random_key,
    counter=None,
    logger=None,
    policy_field: str = "policy_params",
    label: str = "learner",
  ):
    self._iterator = iterator
    self._batch_keys = tuple(batch_keys)
    self._success = None if success_examples is None else jnp.asarray(success_examples)
    if counter is None:
      from acme.utils import counting  # pylint: disable=g-import-not-at-top  (see the logger below)

      counter = counting.Counter()
    self._counter = counter
    if logger is None:
      # Imported only here: acme pulls in Launchpad, which a policy loaded on its own (launch/policy.py) does
      # not need.
      from acme.utils import loggers  # pylint: disable=g-import-not-at-top

      logger = loggers.make_default_logger(label, save_data=False, asynchronous=False)
    self._logger = logger
    self._policy_field = policy_field
    self._update_fn = update_fn
    self._update = jax.jit(update_fn)
    self._fused: Dict[int, Callable] = {}
    self._state = init_fn(random_key)

  @property
  def state(self):
    return self._state

  def _fused_update(self, num_updates: int) -> Callable:
    """jit(update over stacked batches [num_updates, ...]) -> (state, metrics of the last update)."""
    if num_updates not in self._fused:
      update_fn = self._update_fn

      def fused(state, batches, success_examples):
        state, metrics = jax.lax.scan(lambda s, b: update_fn(s, b, success_examples), state, batches)
        return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)

      self._fused[num_updates] = jax.jit(fused)
    return self._fused[num_updates]

  def step(self, num_updates: int = 1):
    """Runs `num_updates` updates on as many fresh batches; logs the metrics of the last."""
    if num_updates < 1:
      raise ValueError(f"num_updates must be >= 1, got {num_updates}.")
    batches = [select_batch(next(self._iterator), self._batch_keys) for _ in range(num_updates)]
    if num_updates == 1:
      self._state, metrics = self._update(self._state, batches[0], self._success)
    else:
      stacked = {k: np.stack([b[k] for b in batches]) for k in self._batch_keys}
      self._state, metrics = self._fused_update(num_updates)(self._state, stacked, self._success)
    counts = self._counter.increment(learner_steps=num_updates)
    metrics = jax.device_get(metrics)
    self._logger.write({**{k: np.asarray(v) for k, v in metrics.items()}, **counts})

  def get_variables(self, names: Sequence[str]) -> List:
    return state_variables(self._state, names, self._policy_field)

  def save(self):
    return jax.device_get(self._state)

  def restore(self, state):
    self._state = jax.tree_util.tree_map(jnp.asarray, state)
