"""Episode tables and the training batches cut from them, from Reverb or from memory.

The table holds every episode of a fixed offline dataset as one item, padded to the dataset's longest episode
(by repeating its last step) and carrying its true `length`, so episodes of any length share one signature. Its rate limiter only asks for the
whole dataset to be present (`MinSize(num_episodes)`): learners block until loading is done, then sample
uniformly at will, and nothing is ever evicted, so a fixed dataset neither stalls nor spins.

Batches are cut from sampled episodes inside tf.data (seeded, prefetched):
- 'future' (LAEO): (s_t, a_t, s_{t+k}) with k >= 1 drawn with P(k) proportional to discount**k, truncated at
  the episode's last state (t is uniform over the episode's transitions, never in its padding);
- 'transition' (ORIL, PURL, BC): (s_t, a_t, s_{t+1}, discount).
The same cutting function serves the in-memory dataset used by tests and benchmarks.

`episode_reuse` R > 1 cuts R consecutive batches out of each draw of episodes, with fresh t and k for each: every
batch is distributed exactly as with R = 1 (its examples come from distinct draws of episodes; each t uniform over
its episode's transitions, each future truncated-geometric), but R consecutive batches share their episodes, and
the Reverb path moves 1/R of the bytes per batch (pulling whole episodes out of Reverb costs more CPU than a LAEO
laptop-preset update: results/throughput.md).

Replay may be sharded over K servers (`num_shards`): episode i lives in server i % K only, and the learner draws
from server k with probability n_k / N (its share of the N episodes), then uniformly within it, so every episode,
hence every transition, is drawn with the same probability as from one server holding all N.

The input pipeline runs in a private tf.data thread pool of INPUT_THREADS threads, autotuned (without autotuning
a batch cut from fresh episodes costs ~1.6x the CPU time: results/input_pipeline.md), and Reverb streams with as many workers.
"""

from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import reverb
import tensorflow as tf

from data_pipeline import rlds_reader

EPISODE_TABLE = "episodes"
BATCH_KINDS = ("future", "transition")
_EPISODE_KEYS = ("observation", "action", "is_terminal")
LENGTH_KEY = "length"  # Steps of the episode before padding.


def episode_signature(
  episodes: Sequence[Dict[str, np.ndarray]], max_length: Optional[int] = None
) -> Dict[str, tf.TensorSpec]:
  """The per-item signature shared by every episode: its fields padded to `max_length` (default: the longest
  episode's length) steps, and its true length."""
  if not episodes:
    raise ValueError("The dataset has no episodes.")
  first = episodes[0]
  for i, episode in enumerate(episodes):
    for key in _EPISODE_KEYS:
      if episode[key].shape[1:] != first[key].shape[1:] or episode[key].dtype != first[key].dtype:
        raise ValueError(
          f"Episode {i} has {key} of shape {episode[key].shape[1:]} and dtype {episode[key].dtype} per step, "
          f"episode 0 has {first[key].shape[1:]} and {first[key].dtype}."
        )
    if len(episode["observation"]) < 2:
      raise ValueError(f"Episode {i} has {len(episode['observation'])} step(s); a transition needs two.")
  longest = max(len(e["observation"]) for e in episodes)
  max_length = longest if max_length is None else max_length
  if longest > max_length:
    raise ValueError(f"An episode has {longest} steps, more than the table's {max_length}.")
  signature = {
    key: tf.TensorSpec((max_length, *first[key].shape[1:]), tf.as_dtype(first[key].dtype)) for key in _EPISODE_KEYS
  }
  signature[LENGTH_KEY] = tf.TensorSpec((), tf.int32)
  return signature


def pad_episode(episode: Dict[str, np.ndarray], signature: Dict[str, tf.TensorSpec]) -> Dict[str, np.ndarray]:
  """The episode's fields padded to the signature's length by repeating its last step, and its true length."""
  length = len(episode["observation"])
  max_length = signature["observation"].shape[0]
  if length > max_length:
    raise ValueError(f"An episode has {length} steps, more than the table's {max_length}.")
  padded = {
    key: np.concatenate([episode[key], np.repeat(episode[key][-1:], max_length - length, axis=0)])
    for key in _EPISODE_KEYS
  }
  padded[LENGTH_KEY] = np.int32(length)
  return padded


def spec_signature(spec: rlds_reader.DatasetSpec) -> Dict[str, tf.TensorSpec]:
  """The table's item signature for a dataset of this spec: fields padded to its longest episode, and the length."""
  observation = tf.TensorSpec((spec.max_episode_length, *spec.observation_shape), tf.as_dtype(spec.observation_dtype))
  return {
    "observation": observation,
    "action": tf.TensorSpec((spec.max_episode_length, *spec.action_shape), tf.float32),
    "is_terminal": tf.TensorSpec((spec.max_episode_length,), tf.bool),
    LENGTH_KEY: tf.TensorSpec((), tf.int32),
  }


def dataset_signature(dataset_dir: str) -> Tuple[int, Dict[str, tf.TensorSpec]]:
  """(number of episodes, episode signature) of an RLDS dataset's observations at 'observation'."""
  spec = rlds_reader.describe([dataset_dir])
  return spec.num_episodes, spec_signature(spec)


# Resident memory of a Reverb server per raw byte of the padded episodes it holds, by kind of observation
# (results/reverb_memory.json: 1.61 for FetchPush states, 0.088 for its
# 64x64 renders, which Reverb's chunk compression shrinks ~11x; twice that for images, whose compressibility
# depends on the scene).
REVERB_RSS_PER_RAW_BYTE = {"vector": 1.7, "image": 0.2}


def padded_episode_bytes(signature: Dict[str, tf.TensorSpec]) -> int:
  """Raw bytes of one episode as the table stores it (padded fields and its length)."""
  return sum(int(np.prod(spec.shape)) * spec.dtype.size for spec in signature.values())


def estimated_table_bytes(num_episodes: int, signature: Dict[str, tf.TensorSpec]) -> int:
  """What a Reverb server holding the whole dataset will take in memory."""
  kind = "image" if signature["observation"].dtype == tf.uint8 else "vector"
  return int(num_episodes * padded_episode_bytes(signature) * REVERB_RSS_PER_RAW_BYTE[kind])


def make_episode_table(num_episodes: int, signature: Dict[str, tf.TensorSpec]) -> reverb.Table:
  return reverb.Table(
    name=EPISODE_TABLE,
    sampler=reverb.selectors.Uniform(),
    remover=reverb.selectors.Fifo(),
    max_size=num_episodes,
    rate_limiter=reverb.rate_limiters.MinSize(num_episodes),
    signature=signature,
  )


def shard_sizes(num_episodes: int, num_shards: int) -> List[int]:
  """Episodes held by each of `num_shards` servers when episode i goes to server i % num_shards."""
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
  if num_shards > num_episodes:
    raise ValueError(f"{num_shards} replay shards for {num_episodes} episodes: a shard would hold none.")
  return [len(range(k, num_episodes, num_shards)) for k in range(num_shards)]


def insert_episodes(
  server_address: str, episodes: Iterable[Dict[str, np.ndarray]], signature: Dict[str, tf.TensorSpec]
) -> int:
  """Inserts episodes (any iterable: a streaming reader keeps only one in memory); returns how many."""
  return insert_sharded_episodes({0: server_address}, episodes, signature, num_shards=1)[0]


def insert_sharded_episodes(
  server_addresses: Dict[int, str],
  episodes: Iterable[Dict[str, np.ndarray]],
  signature: Dict[str, tf.TensorSpec],
  num_shards: int,
) -> Dict[int, int]:
  """Inserts episode i into the server of shard i % num_shards, for the shards in `server_addresses`
  ({shard: address}; the other shards' episodes are skipped: their servers load them); returns {shard: count}."""
  counts = {k: 0 for k in server_addresses}
  writers = {k: reverb.Client(a).writer(max_sequence_length=1) for k, a in server_addresses.items()}
  try:
    for i, episode in enumerate(episodes):
      writer = writers.get(i % num_shards)
      if writer is None:
        continue
      writer.append(pad_episode(episode, signature))
      writer.create_item(EPISODE_TABLE, num_timesteps=1, priority=1.0)
      counts[i % num_shards] += 1
  finally:
    for writer in writers.values():
      writer.close()
  return counts


def _truncated_geometric(seed, max_offset, discount: float):
  """k in [1, max_offset] with P(k) proportional to discount**k, by inverting its CDF."""
  u = tf.random.stateless_uniform(tf.shape(max_offset), seed=seed, dtype=tf.float64)
  max_offset = tf.cast(max_offset, tf.float64)
  log_d = np.log(discount)
  k = tf.math.ceil(tf.math.log1p(-u * (1.0 - tf.exp(max_offset * log_d))) / log_d)
  return tf.cast(tf.clip_by_value(k, 1.0, max_offset), tf.int32)


def cut_batch(
  episodes: Dict[str, tf.Tensor], seeds: tf.Tensor, batch_kind: str, discount: float
) -> Dict[str, tf.Tensor]:
  """Cuts one example out of each of a batch of episodes ([E, T, ...] tensors)."""
  episode = tf.range(tf.shape(episodes["action"])[0])
  length = episodes[LENGTH_KEY]  # Each episode's true length.
  u = tf.random.stateless_uniform(tf.shape(episode), seed=seeds[0], dtype=tf.float32)
  t = tf.minimum(tf.cast(u * tf.cast(length - 1, tf.float32), tf.int32), length - 2)  # Uniform in [0, length - 2].
  if batch_kind == "future":
    other = t + _truncated_geometric(seeds[1], length - 1 - t, discount)
  else:
    other = t + 1
  now = tf.stack([episode, t], axis=1)
  later = tf.stack([episode, other], axis=1)
  batch = {
    "observation": tf.gather_nd(episodes["observation"], now),
    "action": tf.gather_nd(episodes["action"], now),
  }
  if batch_kind == "future":
    batch["future_observation"] = tf.gather_nd(episodes["observation"], later)
  else:
    batch["next_observation"] = tf.gather_nd(episodes["observation"], later)
    batch["discount"] = 1.0 - tf.cast(tf.gather_nd(episodes["is_terminal"], later), tf.float32)
  return batch


# Threads of the learner's input pipeline (a private tf.data pool, and Reverb's streaming workers).
INPUT_THREADS = 2
PREFETCH_BATCHES = 16  # Enough for a few fused learner calls.


def _batches(
  episode_ds: tf.data.Dataset,
  batch_kind: str,
  batch_size: int,
  discount: float,
  seed: int,
  episode_reuse: int = 1,
  threads: int = INPUT_THREADS,
) -> tf.data.Dataset:
  if batch_kind not in BATCH_KINDS:
    raise ValueError(f"Unknown batch kind {batch_kind!r}; expected one of {BATCH_KINDS}.")
  if batch_kind == "future" and not 0.0 < discount < 1.0:
    raise ValueError(f"discount must lie in (0, 1) for future sampling, got {discount}.")
  if episode_reuse < 1:
    raise ValueError(f"episode_reuse must be >= 1, got {episode_reuse}.")
  seeds = tf.data.Dataset.random(seed).batch(4).map(lambda s: tf.reshape(s, [2, 2]))
  episodes = episode_ds.batch(batch_size, drop_remainder=True)
  if episode_reuse > 1:
    episodes = episodes.flat_map(lambda eps: tf.data.Dataset.from_tensors(eps).repeat(episode_reuse))
  ds = tf.data.Dataset.zip((episodes, seeds))
  ds = ds.map(
    lambda eps, s: cut_batch(eps, s, batch_kind, discount),
    num_parallel_calls=threads,
    deterministic=True,
  )
  options = tf.data.Options()
  options.threading.private_threadpool_size = threads
  options.threading.max_intra_op_parallelism = 1
  return ds.prefetch(PREFETCH_BATCHES).with_options(options)


def sharded_episode_dataset(
  server_addresses: Sequence[str],
  signature: Dict[str, tf.TensorSpec],
  num_episodes: int,
  seed: int,
  max_in_flight: int = 2,
  workers: int = INPUT_THREADS,
) -> tf.data.Dataset:
  """Endless episodes drawn uniformly from the `num_episodes` episodes spread over the servers of
  `server_addresses` (shard k at index k, holding the episodes i with i % K == k): server k is chosen with
  probability n_k / num_episodes (seeded), then Reverb samples uniformly within its table."""

  def server(address):
    ds = reverb.TimestepDataset(
      server_address=address,
      table=EPISODE_TABLE,
      dtypes={k: s.dtype for k, s in signature.items()},
      shapes={k: s.shape for k, s in signature.items()},
      max_in_flight_samples_per_worker=max_in_flight,
      num_workers_per_iterator=workers,
    )
    return ds.map(lambda sample: sample.data)

  if len(server_addresses) == 1:
    return server(server_addresses[0])
  sizes = shard_sizes(num_episodes, len(server_addresses))
  return tf.data.Dataset.sample_from_datasets(
    [server(a) for a in server_addresses], weights=[n / num_episodes for n in sizes], seed=seed
  )


def make_reverb_iterator(
  server_addresses: Sequence[str],
  signature: Dict[str, tf.TensorSpec],
  batch_kind: str,
  batch_size: int,
  discount: float,
  seed: int,
  episode_reuse: int = 1,
  num_episodes: Optional[int] = None,
) -> Iterator[Dict[str, np.ndarray]]:
  """Endless numpy batches sampled from the Reverb episode table, sharded over `server_addresses` (one address:
  one server; several need the dataset's `num_episodes`). Reverb's sampling order is not seeded."""
  if isinstance(server_addresses, str):
    server_addresses = [server_addresses]
  if len(server_addresses) > 1 and num_episodes is None:
    raise ValueError("Sampling from several replay shards needs the dataset's num_episodes.")
  episode_ds = sharded_episode_dataset(
    server_addresses,
    signature,
    num_episodes,
    seed,
    max_in_flight=2 * batch_size,
  )
  return _batches(episode_ds, batch_kind, batch_size, discount, seed, episode_reuse).as_numpy_iterator()


def make_in_memory_iterator(
  episodes: List[Dict[str, np.ndarray]],
  batch_kind: str,
  batch_size: int,
  discount: float,
  seed: int,
  episode_reuse: int = 1,
) -> Iterator[Dict[str, np.ndarray]]:
  """The same batches drawn from episodes held in memory (seeded end to end)."""
  signature = episode_signature(episodes)
  padded = [pad_episode(e, signature) for e in episodes]
  stacked = {key: np.stack([e[key] for e in padded]) for key in signature}
  episode_ds = (
    tf.data.Dataset.from_tensor_slices(stacked)
    .shuffle(len(episodes), seed=seed, reshuffle_each_iteration=True)
    .repeat()
  )
  return _batches(episode_ds, batch_kind, batch_size, discount, seed, episode_reuse).as_numpy_iterator()
