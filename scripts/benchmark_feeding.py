"""Learner steps/s when fed by Reverb (server in another process, over gRPC) vs. an in-memory iterator.

  python scripts/benchmark_feeding.py [--agent=laeo --env=fetch_reach --steps=300 --preset=laptop]

The in-memory iterator repeats one batch already in memory, so it is the learner's ceiling; the ratio tells
how much the Reverb + tf.data path costs. Writes results/learner_feeding.json. A benchmark, not a test.
"""

import argparse
import itertools
import json
import multiprocessing
import os
import platform
import tempfile
import sys
import time

# Runnable as a script: the repository root holds the packages.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _serve(dataset_dir, port_queue, stop_event):
  import reverb
  from data_pipeline import reverb_pipeline, rlds_io

  num_episodes, signature = reverb_pipeline.dataset_signature(dataset_dir)
  server = reverb.Server([reverb_pipeline.make_episode_table(num_episodes, signature)])
  reverb_pipeline.insert_episodes(
    f"localhost:{server.port}", rlds_io.load_episodes(dataset_dir, include_success=False), signature
  )
  port_queue.put(server.port)
  stop_event.wait()
  server.stop()


def _steps_per_second(learner, steps: int) -> float:
  import jax

  for _ in range(5):  # Compile and warm up.
    learner.step()
  jax.block_until_ready(learner.save())
  start = time.perf_counter()
  for _ in range(steps):
    learner.step()
  jax.block_until_ready(learner.save())
  return steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--agent", default="laeo")
  parser.add_argument("--env", default="fetch_reach")
  parser.add_argument("--episodes", type=int, default=200)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--preset", default="laptop")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="results/learner_feeding.json")
  args = parser.parse_args()

  import jax
  from acme.utils import loggers
  import agents
  import environments
  from data_pipeline import generate, reverb_pipeline, rlds_io, success_examples
  from launch import run_config

  dataset_dir = os.path.join(tempfile.mkdtemp(), "data")
  generate.generate_dataset(args.env, "medium", args.episodes, dataset_dir, args.seed, show_progress=False)
  builder = agents.make_builder(args.agent, **run_config.preset_overrides(args.agent, args.preset))
  env = environments.make(args.env, seed=args.seed)
  examples = success_examples.load_success_examples(dataset_dir)

  def make_learner(iterator):
    networks = builder.make_networks(env.observation_spec(), env.action_spec())
    return builder.make_learner(
      networks, iterator, examples, jax.random.PRNGKey(args.seed), logger=loggers.NoOpLogger()
    )

  context = multiprocessing.get_context("spawn")
  port_queue, stop_event = context.Queue(), context.Event()
  server = context.Process(target=_serve, args=(dataset_dir, port_queue, stop_event), daemon=True)
  server.start()
  try:
    _, signature = reverb_pipeline.dataset_signature(dataset_dir)
    reverb_iterator = reverb_pipeline.make_reverb_iterator(
      f"localhost:{port_queue.get(timeout=300)}",
      signature,
      builder.batch_kind,
      builder.config.batch_size,
      builder.config.discount,
      seed=args.seed,
    )
    reverb_rate = _steps_per_second(make_learner(reverb_iterator), args.steps)
  finally:
    stop_event.set()
    server.join(timeout=30)
  one_batch = next(
    reverb_pipeline.make_in_memory_iterator(
      rlds_io.load_episodes(dataset_dir, include_success=False),
      builder.batch_kind,
      builder.config.batch_size,
      builder.config.discount,
      seed=args.seed,
    )
  )
  memory_rate = _steps_per_second(make_learner(itertools.repeat(one_batch)), args.steps)

  result = {
    "agent": args.agent,
    "env": args.env,
    "preset": args.preset,
    "batch_size": builder.config.batch_size,
    "steps_timed": args.steps,
    "reverb_steps_per_s": round(reverb_rate, 2),
    "in_memory_steps_per_s": round(memory_rate, 2),
    "reverb_over_in_memory": round(reverb_rate / memory_rate, 3),
    "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax backend {jax.default_backend()}",
  }
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps(result, indent=2))


if __name__ == "__main__":
  main()
