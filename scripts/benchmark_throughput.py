"""Learner throughput against this machine's limit (a benchmark, not a test).

  python scripts/benchmark_throughput.py                     # everything: ~15 minutes on 2 cores
  python scripts/benchmark_throughput.py --skip_launch       # the update alone: ~3 minutes

Measures, in one run, on a quiet machine (the load average is recorded: anything else running skews it):
  * the limit: a 2048x2048 fp32 matmul under jax (GFLOP/s);
  * per agent (laptop preset, FetchPush shapes: 25-dim state or 64x64x3 image): the FLOPs of one update (XLA's
    cost analysis of the unoptimised HLO), steps/s of the update alone (a batch already in memory; 1 and K updates per jitted call)
    and the fraction of the matmul peak that reaches;
  * the full local launch (Reverb + tf.data + learner + 1 evaluator) on generated datasets: the learner's
    steady steps/s, its ratio to the update alone, its fraction of peak, and each process's peak RSS.
Writes results/throughput.json and results/throughput.md.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from acme import specs  # noqa: E402

import agents  # noqa: E402
from agents.common import learner as common_learner  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402

OUT = os.path.join(ROOT, "results", "throughput")
SHAPES = {"state": ((25,), np.float32), "image": ((64, 64, 3), np.uint8)}
ACTION_SPEC = specs.BoundedArray((4,), np.float32, -1.0, 1.0)
NUM_SUCCESS = 200


def matmul_peak(n: int = 2048, repeats: int = 20) -> float:
  """Best GFLOP/s of an n x n fp32 matmul."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best / 1e9


class _Repeat:
  """An iterator that yields one batch forever (the learner's ceiling: no input pipeline)."""

  def __init__(self, batch):
    self.batch = batch

  def __iter__(self):
    return self

  def __next__(self):
    return self.batch


def _batch(rng, batch_kind: str, obs: str, size: int):
  shape, dtype = SHAPES[obs]

  def observations():
    if dtype == np.uint8:
      return rng.integers(0, 256, (size,) + shape, dtype=np.uint8)
    return rng.normal(size=(size,) + shape).astype(np.float32)

  batch = {"observation": observations(), "action": rng.uniform(-1, 1, (size, 4)).astype(np.float32)}
  if batch_kind == "future":
    batch["future_observation"] = observations()
  else:
    batch["next_observation"] = observations()
    batch["discount"] = np.ones((size,), np.float32)
  return batch


def update_benchmark(agent: str, obs: str, fused: int, seconds: float, overrides=None) -> dict:
  """FLOPs of one update and steps/s with 1 and `fused` updates per call, on a batch held in memory."""
  overrides = {**run_config_lib.preset_overrides(agent, "laptop"), **(overrides or {})}
  builder = agents.make_builder(agent, **overrides)
  shape, dtype = SHAPES[obs]
  networks = builder.make_networks(specs.Array(shape, dtype), ACTION_SPEC)
  rng = np.random.default_rng(0)
  batch = _batch(rng, builder.batch_kind, obs, builder.config.batch_size)
  success = _batch(rng, "future", obs, NUM_SUCCESS)["observation"]
  learner = builder.make_learner(networks, _Repeat(batch), success, jax.random.PRNGKey(0))
  keys = common_learner.BATCH_KEYS[builder.batch_kind]
  # The HLO before XLA's optimisation passes: the compiled module hides the dots it hands to library calls.
  analysis = (
    jax.jit(learner._update_fn)
    .lower(  # pylint: disable=protected-access
      learner.state, {k: batch[k] for k in keys}, jnp.asarray(success)
    )
    .cost_analysis()
  )
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  flops = float(analysis["flops"])
  row = {
    "agent": agent,
    "observation": obs,
    "batch_size": builder.config.batch_size,
    "gflop_per_update": round(flops / 1e9, 3),
    **{k: v for k, v in (overrides or {}).items() if k in ("batch_size", "torso_channels")},
  }
  for per_call in sorted({1, fused}):
    for _ in range(2):
      learner.step(per_call)  # compile, warm up
    jax.block_until_ready(learner.save())
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      learner.step(per_call)
      calls += 1
    jax.block_until_ready(learner.save())
    rate = calls * per_call / (time.perf_counter() - start)
    row[f"steps_per_s_x{per_call}"] = round(rate, 2)
  return row


def _node_rss(tag: str) -> dict:
  """{node group: RSS bytes} of the launched processes carrying `tag` in their environment.

  The supervisor names each node's process in its LAEO_NODE variable; the one without it is the launcher.
  """
  out = {}
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().split(b"\0")
      if tag.encode() not in environ:
        continue
      with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
      continue
    titles = [v[len(b"LAEO_NODE=") :].decode() for v in environ if v.startswith(b"LAEO_NODE=")]
    node = titles[0].split("/")[0] if titles else "launcher"
    out[node] = max(out.get(node, 0), rss)
  return out


def launch_benchmark(agent: str, env: str, dataset_dir: str, num_steps: int, fused: int) -> dict:
  """The full local launch: the learner's steady steps/s (from its progress lines) and peak RSS per process."""
  workdir = tempfile.mkdtemp(prefix="laeo_bench_")
  tag = f"LAEO_BENCH_TAG={workdir}"
  command = [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    f"--agent={agent}",
    f"--env={env}",
    f"--dataset_dir={dataset_dir}",
    f"--workdir={workdir}",
    f"--num_steps={num_steps}",
    f"--num_sgd_steps_per_step={fused}",
    "--log_every=100",
    "--checkpoint_every=1000000",
    "--eval_every=1000",
    "--episodes_per_eval=10",
    "--num_evaluators=1",
  ]
  if env.endswith("_image"):
    command.append("--config=batch_size=64")
  peak = {}
  lines = []
  proc = subprocess.Popen(
    command,
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    env={**os.environ, "LAEO_BENCH_TAG": workdir},
  )

  def read():
    # The learner prints its average rate since it started; its own clock, unlike the arrival time of lines that
    # pass through Launchpad's output pipes in bursts. Elapsed time at step s = s / rate.
    for line in proc.stdout:
      match = re.search(r"\[learner\] step (\d+)/\d+ \(([\d.]+) steps/s", line)
      if match:
        step = int(match.group(1))
        lines.append((step, step / float(match.group(2))))

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  while proc.poll() is None:
    for node, rss in _node_rss(tag).items():
      peak[node] = max(peak.get(node, 0), rss)
    time.sleep(0.5)
  reader.join(timeout=10)
  if proc.returncode != 0 or len(lines) < 4:
    raise RuntimeError(f"launch failed (exit {proc.returncode}); workdir {workdir}")
  # Steady rate: from the first progress line after a quarter of the run (compilation, loading done) to the last.
  first = next(p for p in lines if p[0] >= num_steps // 4)
  last = lines[-1]
  rate = (last[0] - first[0]) / (last[1] - first[1])
  return {
    "agent": agent,
    "env": env,
    "dataset": os.path.basename(dataset_dir),
    "num_steps": num_steps,
    "num_sgd_steps_per_step": fused,
    "launch_steps_per_s": round(rate, 2),
    "peak_rss_mib": {k: round(v / 2**20) for k, v in sorted(peak.items())},
  }


def ensure_dataset(env: str, episodes: int) -> str:
  from data_pipeline import generate, rlds_io

  path = os.path.join(ROOT, "data", "bench", f"{env}_medium_{episodes}ep_seed0")
  if not rlds_io.is_dataset_dir(path):
    generate.generate_dataset(env, "medium", episodes, path, seed=0, show_progress=False)
  return path


def markdown(result: dict) -> str:
  peak = result["matmul_peak_gflops"]
  lines = [
    f"Machine: {result['machine']}; matmul peak {peak:.0f} GFLOP/s; load average at start "
    f"{result['load_average']:.2f}.",
    "",
    "| agent | obs | batch | GFLOP/update | steps/s (1 per call) | steps/s (K per call) | % of peak |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["update"]:
    k = max(int(key.split("x")[-1]) for key in r if key.startswith("steps_per_s_x"))
    best = max(r[f"steps_per_s_x{k}"], r["steps_per_s_x1"])
    lines.append(
      f"| {r['agent']} | {r['observation']} | {r['batch_size']} | {r['gflop_per_update']} | "
      f"{r['steps_per_s_x1']} | {r[f'steps_per_s_x{k}']} (K={k}) | "
      f"{100 * r['gflop_per_update'] * best / peak:.0f}% |"
    )
  if result.get("launch"):
    lines += [
      "",
      "| agent | dataset | K | launch steps/s | / update alone | % of peak | peak RSS MiB per process |",
      "|---|---|---|---|---|---|---|",
    ]
    for r in result["launch"]:
      lines.append(
        f"| {r['agent']} | {r['dataset']} | {r['num_sgd_steps_per_step']} | {r['launch_steps_per_s']} | "
        f"{r.get('ratio_to_update', float('nan')):.2f} | {r.get('percent_of_peak', float('nan')):.0f}% | "
        f"{', '.join(f'{k} {v}' for k, v in r['peak_rss_mib'].items())} |"
      )
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--agents", nargs="+", default=["laeo", "oril", "bc"])
  parser.add_argument("--fused", type=int, default=10, help="K: updates per jitted call.")
  parser.add_argument("--seconds", type=float, default=8.0, help="Timing window per update measurement.")
  parser.add_argument("--skip_launch", action="store_true")
  parser.add_argument("--launch_steps", type=int, default=3000)
  parser.add_argument(
    "--launch",
    nargs="+",
    default=["laeo:fetch_push:2000", "bc:fetch_push:2000", "laeo:fetch_push_image:1000"],
    help="AGENT:ENV:EPISODES full launches.",
  )
  args = parser.parse_args()
  result = {
    "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} " f"{jax.default_backend()}",
    "load_average": os.getloadavg()[0],
    "matmul_peak_gflops": round(matmul_peak(), 1),
    "update": [],
    "launch": [],
  }
  peak = result["matmul_peak_gflops"]
  print(f"matmul peak {peak} GFLOP/s", flush=True)
  for agent in args.agents:
    for obs in ("state", "image"):
      row = update_benchmark(agent, obs, args.fused, args.seconds)
      result["update"].append(row)
      print(row, flush=True)
  result["update"].append(update_benchmark("laeo", "image", args.fused, args.seconds, {"batch_size": 64}))
  print(result["update"][-1], flush=True)
  if not args.skip_launch:
    for spec in args.launch:
      agent, env, episodes = spec.split(":")
      obs = "image" if "_image" in env else "state"
      # Image runs: one update per call (a scan of conv updates is slower) and a third of the steps.
      for fused in sorted({1, args.fused}) if obs == "state" else [1]:
        steps = args.launch_steps if obs == "state" else args.launch_steps // 3
        row = launch_benchmark(agent, env, ensure_dataset(env, int(episodes)), steps, fused)
        alone = next(
          (
            r
            for r in result["update"]
            if r["agent"] == agent
            and r["observation"] == obs
            and r["batch_size"] == (64 if obs == "image" else r["batch_size"])
          ),
          None,
        )
        if alone:
          row["ratio_to_update"] = round(row["launch_steps_per_s"] / alone[f"steps_per_s_x{fused}"], 3)
          row["percent_of_peak"] = round(100 * alone["gflop_per_update"] * row["launch_steps_per_s"] / peak, 1)
        result["launch"].append(row)
        print(row, flush=True)
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  with open(OUT + ".json", "w") as f:
    json.dump(result, f, indent=2)
  with open(OUT + ".md", "w") as f:
    f.write(markdown(result))
  print(markdown(result))


if __name__ == "__main__":
  main()
