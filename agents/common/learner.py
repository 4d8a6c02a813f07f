"""One generic learner (acme.core.Learner's interface) parameterised by pure init / update functions.

Every agent's `<Name>Learner` is a thin subclass that supplies
  * `init_fn(key) -> TrainingState`  (a pytree NamedTuple),
  * `update_fn(state, batch, success_examples) -> (state, metrics)` (pure),
  * the batch keys its update consumes.

`step(num_updates)` runs several updates in one jitted call (a `lax.scan` over
as many batches): the same updates on the same batches as separate calls, minus
the per-call dispatch and synchronisation (Acme's num_sgd_steps_per_step).

`PipelinedLearner` runs a `TwoStageUpdate` (LAEO's critic, then its policy from the critic's pre-update
parameters) on two threads: the same updates, on two cores where XLA's CPU backend keeps one busy. Image
updates keep both cores busy on their own, so they run the stages in sequence (`overlap=False`).

A learner stops at the first call whose logged metrics hold NaN or infinity (`DivergenceError`): a diverged
update never gets better, and the steps after it only overwrite what was learned.
"""

import concurrent.futures
from typing import Any, Callable, Dict, Iterator, List, Mapping, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from agents.common import allocator

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


class DivergenceError(RuntimeError):
  """The learner's metrics or state hold NaN or infinity at `step`; `non_finite` names them ({name: value})."""

  def __init__(self, step: int, non_finite: Mapping[str, str]):
    self.step = int(step)
    self.non_finite = dict(non_finite)
    listed = ", ".join(f"{name} is {value}" for name, value in self.non_finite.items())
    super().__init__(f"The learner diverged at step {self.step}: {listed}.")


def _key_name(key) -> Any:
  for attr in ("name", "key", "idx"):  # GetAttrKey, DictKey (and FlattenedIndexKey), SequenceKey.
    if hasattr(key, attr):
      return getattr(key, attr)
  return str(key)


def leaves_by_path(tree) -> Dict[Tuple, Any]:
  """A pytree's leaves by path, NamedTuple fields, dict keys and sequence indices alike: a training state and its
  checkpoint (where NamedTuples came back as dicts and tuples as lists) have the same paths."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {tuple(_key_name(k) for k in path): leaf for path, leaf in flat}


def path_name(path: Tuple) -> str:
  return "/".join(str(k) for k in path)


def non_finite(tree, limit: int = 3) -> Dict[str, str]:
  """Up to `limit` leaves of a pytree (or entries of a metrics dict) that hold NaN or infinity, by path, with the
  first such value of each; losses first."""
  found = {}
  for path, leaf in leaves_by_path(tree).items():
    value = np.asarray(leaf)
    if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
      found[path_name(path)] = str(value[~np.isfinite(value)].flat[0])
  names = sorted(found, key=lambda name: "loss" not in name)[:limit]
  return {name: found[name] for name in names}


def check_finite(tree, step: int) -> None:
  """Raises DivergenceError if a leaf of `tree` (a training state) holds NaN or infinity."""
  bad = non_finite(tree)
  if bad:
    raise DivergenceError(step, bad)


def state_variables(state, names: Sequence[str], policy_field: str = "policy_params") -> List:
  """Fields of a training state (a NamedTuple, or the dict a checkpoint holds) by name; "policy" names the
  policy's parameters."""
  fields = tuple(state) if isinstance(state, Mapping) else state._fields
  out = []
  for name in names:
    if name == "policy":
      name = policy_field
    elif name not in fields:
      raise ValueError(f'Unknown variable name {name!r}; use "policy" or one of {fields}.')
    out.append(state[name] if isinstance(state, Mapping) else getattr(state, name))
  return out


def check_restorable(current, restored) -> None:
  """Refuses a training state whose structure or shapes differ from the learner's own (a clear error, not a
  failure deep inside the next jitted update)."""
  ours = {path_name(p): np.shape(v) for p, v in leaves_by_path(current).items()}
  theirs = {path_name(p): np.shape(v) for p, v in leaves_by_path(restored).items()}
  if ours != theirs:
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    raise ValueError(
      f"The state to restore does not fit this learner: {len(differ)} entries differ, e.g. "
      f"{', '.join(f'{k} (learner {ours.get(k)}, state {theirs.get(k)})' for k in differ[:3])}. It was saved by "
      "other networks: another config, or an older laeo whose networks were laid out differently (e.g. a LAEO "
      "run begun before its twin critics were stacked into phi/w_i and psi/w_i); start such a run afresh."
    )


def as_state_of(current, restored):
  """`restored` (a state, or a checkpoint's dicts and lists of arrays) in the structure and dtypes of `current`."""
  check_restorable(current, restored)
  theirs = leaves_by_path(restored)
  paths, treedef = jax.tree_util.tree_flatten_with_path(current)
  leaves = [jnp.asarray(theirs[tuple(_key_name(k) for k in p)], dtype=leaf.dtype) for p, leaf in paths]
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _last(tree):
  return jax.tree_util.tree_map(lambda x: x[-1], tree)


def scan_with_last_metrics(step: Callable, carry, xs):
  """Runs step(carry, x) -> (carry, kept, metrics) over the leading axis of xs.

  Returns (carry, every step's `kept` stacked, the last step's metrics). The other steps' metrics are never
  returned, so XLA drops their computation (for LAEO the argmaxes and means over the logit matrices, ~10% of an
  update); only the last update's metrics are logged anyway.
  """
  carry, kept = jax.lax.scan(lambda c, x: step(c, x)[:2], carry, jax.tree_util.tree_map(lambda x: x[:-1], xs))
  carry, last_kept, metrics = step(carry, _last(xs))
  kept = jax.tree_util.tree_map(lambda ks, k: jnp.concatenate([ks, k[None]]), kept, last_kept)
  return carry, kept, metrics


class StepCounter:
  """The learner's own step count when no run counter (acme's `counting.Counter`, launch/nodes.py) is given:
  the same `increment(**counts) -> totals`, without acme, so the learner runs where Launchpad does not
  (a GPU machine's own Python, scripts/benchmark_throughput.py)."""

  def __init__(self):
    self._counts: Dict[str, float] = {}

  def increment(self, **counts) -> Dict[str, float]:
    for key, value in counts.items():
      self._counts[key] = self._counts.get(key, 0) + value
    return dict(self._counts)

  def get_counts(self) -> Dict[str, float]:
    return dict(self._counts)


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
    allocator.keep_freed_memory()  # The process trains: keep freed buffers for the next update.
    self._iterator = iterator
    self._batch_keys = tuple(batch_keys)
    # An array, or any pytree of arrays the update reads (e.g. LAEO's prepared images, conv.Blocks).
    self._success = None if success_examples is None else jax.tree_util.tree_map(jnp.asarray, success_examples)
    self._counter = StepCounter() if counter is None else counter
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

  @property
  def success_examples(self):
    """The success examples as every update reads them (None for agents without)."""
    return self._success

  def _fused_update(self, num_updates: int) -> Callable:
    """jit(update over stacked batches [num_updates, ...]) -> (state, metrics of the last update)."""
    if num_updates not in self._fused:
      update_fn = self._update_fn

      def fused(state, batches, success_examples):
        def one(s, b):
          s, metrics = update_fn(s, b, success_examples)
          return s, None, metrics

        state, _, metrics = scan_with_last_metrics(one, state, batches)
        return state, metrics

      self._fused[num_updates] = jax.jit(fused)
    return self._fused[num_updates]

  def _next_batches(self, num_updates: int) -> List[Dict]:
    if num_updates < 1:
      raise ValueError(f"num_updates must be >= 1, got {num_updates}.")
    return [select_batch(next(self._iterator), self._batch_keys) for _ in range(num_updates)]

  def _stack(self, batches: List[Dict]) -> Dict:
    return {k: np.stack([b[k] for b in batches]) for k in self._batch_keys}

  def _count_and_log(self, num_updates: int, metrics) -> None:
    counts = self._counter.increment(learner_steps=num_updates)
    metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    self._logger.write({**metrics, **counts})
    # Only the last update's metrics are computed; a NaN earlier in the call has reached them through the state.
    bad = non_finite(metrics)
    if bad:
      raise DivergenceError(counts["learner_steps"], bad)

  def step(self, num_updates: int = 1):
    """Runs `num_updates` updates on as many fresh batches; logs the metrics of the last.

    Raises DivergenceError, after logging, if those metrics hold NaN or infinity.
    """
    batches = self._next_batches(num_updates)
    if num_updates == 1:
      self._state, metrics = self._update(self._state, batches[0], self._success)
    else:
      self._state, metrics = self._fused_update(num_updates)(self._state, self._stack(batches), self._success)
    self._count_and_log(num_updates, metrics)

  def get_variables(self, names: Sequence[str]) -> List:
    return state_variables(self._state, names, self._policy_field)

  def save(self):
    return jax.device_get(self.state)

  def restore(self, state):
    self._state = as_state_of(self._state, state)


class TwoStageUpdate(NamedTuple):
  """An update in two stages, the second reading only what the first hands it, never the first's output state.

  split(state) -> (first, second) part states; merge(first, second) -> state.
  first_fn(first, batch) -> (first, handoff, metrics)
  second_fn(second, handoff, batch, success_examples) -> (second, metrics)
  """

  split: Callable
  merge: Callable
  first_fn: Callable
  second_fn: Callable

  def update(self, state, batch, success_examples):
    """The whole update, one stage after the other (GenericLearner's update_fn)."""
    first, second = self.split(state)
    first, handoff, first_metrics = self.first_fn(first, batch)
    second, second_metrics = self.second_fn(second, handoff, batch, success_examples)
    return self.merge(first, second), {**first_metrics, **second_metrics}


class PipelinedLearner(GenericLearner):
  """GenericLearner for a TwoStageUpdate whose stages overlap across calls on two threads.

  Call n runs stage one of its updates on the calling thread while a worker thread runs stage two of call n-1's
  updates from the handoffs call n-1 left. Every update is the same function of the same inputs as
  `stages.update` (tests/test_agents.py compares the states), only the schedule differs: between calls stage
  two is one call behind. So:
    * `save()` and `state` first run the pending stage two: a checkpoint is always one whole update count;
    * `get_variables` serves the parameters as they are (the policy an evaluator gets is at most one call older);
    * each call logs stage one's metrics of its last update and stage two's of the last update stage two
      finished. The first call (and the first after a save) runs its own stage two at once, so that every
      logged row has all metrics.

  overlap=False runs each call's updates whole, stage after stage, in one jitted call (GenericLearner.step):
  for updates whose XLA computations already fill the cores, such as image updates on a CPU, overlapping
  them only makes the two threads compete (results/image_update_2026-12-03b.md: 1.2x slower at batch 64).
  """

  def __init__(self, stages: TwoStageUpdate, init_fn: Callable, overlap: bool = True, **kwargs):
    super().__init__(init_fn=init_fn, update_fn=stages.update, **kwargs)
    self._overlap = overlap
    self._stages = stages
    self._first, self._second = stages.split(self._state)
    self._state = None  # Held as its two parts.
    self._pending = None  # (handoffs, batches) [K, ...] whose stage two has not run.
    self._second_metrics = None
    self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stage_two")

    def second_scan(second, handoffs, batches, success_examples):
      def one(s, handoff_and_batch):
        s, metrics = stages.second_fn(s, *handoff_and_batch, success_examples)
        return s, None, metrics

      second, _, metrics = scan_with_last_metrics(one, second, (handoffs, batches))
      return second, metrics

    self._second_scan = jax.jit(second_scan)
    # -> (first, handoffs stacked [num_updates, ...], metrics of the last update).
    self._first_scan = jax.jit(lambda first, batches: scan_with_last_metrics(stages.first_fn, first, batches))

  def _run_second(self, pending):
    second, metrics = self._second_scan(self._second, *pending, self._success)
    return jax.block_until_ready(second), metrics

  def _flush(self):
    if self._pending is not None:
      self._second, self._second_metrics = self._run_second(self._pending)
      self._pending = None

  def step(self, num_updates: int = 1):
    """Runs stage one of `num_updates` updates on fresh batches beside stage two of the previous call's (with
    overlap=False: the updates whole, one after the other)."""
    if not self._overlap:
      self._state = self._stages.merge(self._first, self._second)
      try:
        super().step(num_updates)
      finally:  # A DivergenceError leaves the diverged state held as the parts, as overlapping calls do.
        self._first, self._second = self._stages.split(self._state)
        self._state = None
      return
    # Stage two of the previous call starts first: it needs no new batch, so it overlaps their fetching too.
    behind = self._worker.submit(self._run_second, self._pending) if self._pending is not None else None
    stacked = self._stack(self._next_batches(num_updates))
    first, handoffs, first_metrics = self._first_scan(self._first, stacked)
    jax.block_until_ready(first)
    if behind is not None:
      self._second, self._second_metrics = behind.result()
    self._first, self._pending = first, (handoffs, stacked)
    if self._second_metrics is None:
      self._flush()
    self._count_and_log(num_updates, {**first_metrics, **self._second_metrics})

  @property
  def state(self):
    self._flush()
    return self._stages.merge(self._first, self._second)

  def get_variables(self, names: Sequence[str]) -> List:
    return state_variables(self._stages.merge(self._first, self._second), names, self._policy_field)

  def restore(self, state):
    state = as_state_of(self._stages.merge(self._first, self._second), state)
    self._pending, self._second_metrics = None, None
    self._first, self._second = self._stages.split(state)
