"""Measures what one stored transition costs a Reverb server, for a state and an image dataset (not a test).

  python scripts/benchmark_reverb_memory.py [--datasets DIR ...] [--out results/reverb_memory.json]

For each dataset it starts a Reverb server with the run's episode table in a fresh process, inserts every
episode as the dataset loader node does, and reads the process's resident memory before and after. The
difference per transition, and its ratio to the padded episode's raw bytes, is what
`data_pipeline.reverb_pipeline.estimated_table_bytes` uses to refuse a dataset that would not fit.
"""

import argparse
import json
import multiprocessing
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_DATASETS = (
  os.path.join("data", "paper", "fetch_push_medium_2000ep_200ex_seed0"),
  os.path.join("data", "paper", "fetch_push_image_medium_1000ep_200ex_seed0"),
)


def _rss_bytes() -> int:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def _measure(dataset_dir: str, out) -> None:
  import reverb  # noqa: F401  (imported before the first reading, so its libraries are not counted)

  from data_pipeline import reverb_pipeline
  from data_pipeline import rlds_io

  num_episodes, signature = reverb_pipeline.dataset_signature(dataset_dir)
  episodes = rlds_io.load_episodes(dataset_dir, include_success=False)
  transitions = sum(len(e["action"]) for e in episodes)
  server = reverb.Server([reverb_pipeline.make_episode_table(num_episodes, signature)])
  before = _rss_bytes()
  reverb_pipeline.insert_episodes(f"localhost:{server.port}", episodes, signature)
  after = _rss_bytes()
  server.stop()
  raw = reverb_pipeline.padded_episode_bytes(signature) * num_episodes
  out.put(
    {
      "dataset": dataset_dir,
      "episodes": num_episodes,
      "transitions": transitions,
      "observation_shape": list(signature["observation"].shape[1:]),
      "raw_padded_bytes": raw,
      "reverb_rss_bytes": after - before,
      "bytes_per_transition": round((after - before) / transitions, 1),
      "rss_over_raw": round((after - before) / raw, 3),
    }
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
  parser.add_argument("--out", default=os.path.join(ROOT, "results", "reverb_memory.json"))
  args = parser.parse_args()
  rows = []
  for dataset_dir in args.datasets:
    queue = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(target=_measure, args=(dataset_dir, queue))
    process.start()
    row = queue.get()
    process.join()
    print(json.dumps(row))
    rows.append(row)
  with open(args.out, "w") as f:
    json.dump({"machine": platform.platform(), "rows": rows}, f, indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
