"""CPU cost of the learner's input pipeline (Reverb -> tf.data -> numpy batches), alone (a benchmark, not a test).

  python scripts/benchmark_input_pipeline.py      # ~2 minutes on 2 cores

An in-process Reverb server holds a generated FetchPush dataset (2000 episodes, data/bench/); each variant's
numpy iterator is drained for a timing window after a warm-up, recording batches/s and the process's CPU time per
batch (user + system). Variants: the pipeline as the learner builds it (reverb_pipeline.make_reverb_iterator,
R = 1 and 4), the same with tf.data's autotuning off, and Reverb's sampling alone (episodes batched, nothing cut).
Writes results/input_pipeline.json and results/input_pipeline.md.
"""

import json
import os
import resource
import sys
import time
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import reverb  # noqa: E402
import tensorflow as tf  # noqa: E402

import benchmark_throughput  # noqa: E402
from data_pipeline import reverb_pipeline as rp  # noqa: E402
from data_pipeline import rlds_io  # noqa: E402

OUT = os.path.join(ROOT, "results", "input_pipeline")
BATCH = 256
SECONDS = 8.0


def measure(iterator) -> dict:
  for _ in range(30):
    next(iterator)
  start_cpu, start, n = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
  while time.perf_counter() - start < SECONDS:
    next(iterator)
    n += 1
  end_cpu, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
  cpu = end_cpu.ru_utime + end_cpu.ru_stime - start_cpu.ru_utime - start_cpu.ru_stime
  return {"batches_per_s": round(n / elapsed, 1), "cpu_ms_per_batch": round(1e3 * cpu / n, 2)}


def main():
  path = benchmark_throughput.ensure_dataset("fetch_push", 2000)
  episodes = rlds_io.load_episodes(path, include_success=False)
  signature = rp.episode_signature(episodes)
  server = reverb.Server([rp.make_episode_table(len(episodes), signature)])
  address = f"localhost:{server.port}"
  rp.insert_episodes(address, episodes, signature)
  rows = []

  def pipeline(reuse):
    return rp.make_reverb_iterator(address, signature, "future", BATCH, 0.99, seed=0, episode_reuse=reuse)

  for reuse in (1, 4):
    rows.append({"variant": "make_reverb_iterator (as the learner runs it)", "R": reuse, **measure(pipeline(reuse))})
    options = tf.data.Options()
    options.autotune.enabled = False
    real = tf.data.Dataset.with_options
    with mock.patch.object(tf.data.Dataset, "with_options", lambda ds, o: real(real(ds, o), options)):
      rows.append({"variant": "the same, tf.data autotuning off", "R": reuse, **measure(pipeline(reuse))})
    print(rows[-2], rows[-1], flush=True)
  sampled = reverb.TimestepDataset(
    server_address=address,
    table=rp.EPISODE_TABLE,
    dtypes={k: s.dtype for k, s in signature.items()},
    shapes={k: s.shape for k, s in signature.items()},
    max_in_flight_samples_per_worker=2 * BATCH,
    num_workers_per_iterator=rp.INPUT_THREADS,
  )
  only = sampled.map(lambda sample: sample.data).batch(BATCH).prefetch(4).as_numpy_iterator()
  rows.append({"variant": "Reverb sampling alone (256 episodes per batch, nothing cut)", "R": 1, **measure(only)})
  print(rows[-1], flush=True)
  result = {"dataset": os.path.basename(path), "batch_size": BATCH, "load_average": os.getloadavg()[0], "rows": rows}
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  with open(OUT + ".json", "w") as f:
    json.dump(result, f, indent=2)
  lines = [
    f"Input pipeline alone, {result['dataset']}, batch {BATCH} 'future' batches, {os.cpu_count()} cores, load "
    f"average {result['load_average']:.2f} at the end (scripts/benchmark_input_pipeline.py). CPU time is the "
    "whole process's (the in-process Reverb server included).",
    "",
    "| variant | R (--episode_reuse) | batches/s | CPU ms per batch |",
    "|---|---|---|---|",
  ]
  lines += [f"| {r['variant']} | {r['R']} | {r['batches_per_s']} | {r['cpu_ms_per_batch']} |" for r in rows]
  with open(OUT + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
