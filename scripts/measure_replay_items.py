"""Two ways to hold an offline dataset in Reverb, measured for the image launch's input pipeline (not a test).

- episodes (what the launcher does, data_pipeline/batches.py): one item per episode; every batch decompresses
  whole episodes to cut one (s_t, a_t, s_{t+k}) out of each (`episode_reuse` R batches per draw).
- pairs (a prototype here only): one chunk per step and one item per (t, t + k), prioritised so that a draw has
  exactly the launcher's distribution (episode uniform, t uniform in it, k truncated-geometric); a batch
  decompresses two frames per example, but an episode of L steps needs L (L - 1) / 2 items.

Prints and writes (--out) per layout: CPU ms per batch of the sampling pipeline, Reverb's memory, insert time.

  python scripts/measure_replay_items.py --dataset data/paper/fetch_push_image_medium_1000ep_200ex_seed0_ctl2
"""

import argparse
import itertools
import json
import os
import sys
import time

import numpy as np
import reverb
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from data_pipeline import batches  # noqa: E402
from data_pipeline import rlds_reader  # noqa: E402
from scripts import reproduce  # noqa: E402

PAIRS = "pairs"


def rss_mb() -> float:
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_ms_per_batch(iterator, warmup: int, count: int) -> float:
  for _ in range(warmup):
    next(iterator)
  start = time.process_time()  # The whole process's CPU, Reverb's client threads included.
  for _ in range(count):
    next(iterator)
  return 1000 * (time.process_time() - start) / count


def pair_priorities(length: int, discount: float):
  """(t, t + k, P) for every pair of an episode of `length` steps, P its probability given the episode."""
  transitions = length - 1
  for t in range(transitions):
    k = np.arange(1, length - t)
    p = discount**k / np.sum(discount**k) / transitions
    yield from zip([t] * len(k), (t + k).tolist(), p.tolist())


def insert_pairs(address: str, episodes, discount: float) -> int:
  client, count = reverb.Client(address), 0
  for episode in episodes:
    length = len(episode["observation"])
    with client.trajectory_writer(num_keep_alive_refs=length) as writer:
      writer.configure(("observation",), num_keep_alive_refs=length, max_chunk_length=1)
      for s in range(length):
        writer.append({key: episode[key][s] for key in ("observation", "action", "is_terminal")})
      history = writer.history
      for t, later, p in pair_priorities(length, discount):
        columns = {
          "observation": history["observation"][[t, later]],
          "action": history["action"][t],
          "is_terminal": history["is_terminal"][later],
        }
        writer.create_item(PAIRS, p, columns)
        count += 1
  return count


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", required=True)
  parser.add_argument("--episodes", type=int, default=200)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--discount", type=float, default=0.99)
  parser.add_argument("--batches", type=int, default=100)
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "replay_items.json"))
  args = parser.parse_args()
  episodes = list(itertools.islice(rlds_reader.iter_episodes([args.dataset]), args.episodes))
  result = {"dataset": args.dataset, "episodes": len(episodes), "batch_size": args.batch_size}
  result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  result["commit"] = reproduce.code_commit()
  result["load_average"] = os.getloadavg()[0]

  signature = batches.episode_signature(episodes)
  before, started = rss_mb(), time.time()
  server = reverb.Server([batches.make_episode_table(len(episodes), signature)])
  address = f"localhost:{server.port}"
  batches.insert_episodes(address, episodes, signature)
  result["episodes_layout"] = {
    "insert_s": time.time() - started,
    "reverb_mb": rss_mb() - before,
    "items": len(episodes),
  }
  for reuse in (1, 4, 8):
    iterator = batches.make_reverb_iterator(
      [address], signature, "future", args.batch_size, args.discount, 0, episode_reuse=reuse
    )
    result["episodes_layout"][f"cpu_ms_per_batch_R{reuse}"] = cpu_ms_per_batch(iterator, 20, args.batches)
  server.stop()
  del server

  step = {key: signature[key] for key in ("observation", "action", "is_terminal")}
  pair_signature = {
    "observation": tf.TensorSpec((2, *step["observation"].shape[1:]), step["observation"].dtype),
    "action": tf.TensorSpec(step["action"].shape[1:], step["action"].dtype),
    "is_terminal": tf.TensorSpec((), tf.bool),
  }
  table = reverb.Table(
    PAIRS,
    sampler=reverb.selectors.Prioritized(1.0),
    remover=reverb.selectors.Fifo(),
    max_size=2**31 - 1,
    rate_limiter=reverb.rate_limiters.MinSize(1),
    signature=pair_signature,
  )
  before, started = rss_mb(), time.time()
  server = reverb.Server([table])
  address = f"localhost:{server.port}"
  items = insert_pairs(address, episodes, args.discount)
  result["pairs_layout"] = {"insert_s": time.time() - started, "reverb_mb": rss_mb() - before, "items": items}
  dataset = reverb.TrajectoryDataset.from_table_signature(
    address, PAIRS, max_in_flight_samples_per_worker=2 * args.batch_size, num_workers_per_iterator=2
  )
  dataset = dataset.map(lambda sample: sample.data).batch(args.batch_size, drop_remainder=True).prefetch(16)
  result["pairs_layout"]["cpu_ms_per_batch"] = cpu_ms_per_batch(dataset.as_numpy_iterator(), 20, args.batches)
  server.stop()
  print(json.dumps(result, indent=1))
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
