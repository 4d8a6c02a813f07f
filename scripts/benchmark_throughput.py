"""Learner throughput against this machine's limit (a benchmark, not a test).

  python scripts/benchmark_throughput.py                     # everything: ~20 minutes on 2 cores
  python scripts/benchmark_throughput.py --skip_launch       # the update alone: ~4 minutes
  python scripts/benchmark_throughput.py --rss=fetch_push:1000 --rss=fetch_push_image:1000 ...   # + peak RSS per
      # process for these datasets (a short launch each; the datasets are generated first when missing)
  python scripts/benchmark_throughput.py --preset=paper --skip_launch --commit=C   # a GPU machine's own Python:
      # the update alone needs jax, dm-haiku, optax, dm-env, dm-tree (no TensorFlow, Reverb or Launchpad)

Measures, in one run, on a quiet machine (the load average is recorded: anything else running skews it):
  * the limit: a 2048x2048 fp32 matmul under jax (GFLOP/s; 8192x8192 on a GPU, at jax's default precision there,
    TF32, which the updates use too);
  * per agent (--preset, laptop by default; FetchPush shapes: 25-dim state or 64x64x3 image): the FLOPs of one
    update (XLA's cost analysis of the unoptimised HLO), steps/s of the update alone (a batch already in memory;
    1 and K updates per jitted call; the best of 4 timing windows) and the fraction of the matmul peak that reaches;
  * the full local launch (Reverb + tf.data + learner + 1 evaluator) on generated datasets: the learner's
    steady steps/s, its ratio to the update alone (its ceiling), its fraction of peak, and each process's peak RSS;
    AGENT:ENV:EPISODES[:K[:R]] with K updates per call and R = --episode_reuse.
Every fraction of peak is against the matmul peak measured at the start of the same run.
Writes results/throughput.json and results/throughput.md (--out elsewhere); a run to the default --out also
replaces the tables in docs/performance.md (between its `table:throughput` markers) with this run's (--doc).
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
from dm_env import specs  # noqa: E402

import agents  # noqa: E402
from agents.common import conv  # noqa: E402
from agents.common import learner as common_learner  # noqa: E402

OUT = os.path.join(ROOT, "results", "throughput")
SHAPES = {"state": ((25,), np.float32), "image": ((64, 64, 3), np.uint8)}
ACTION_SPEC = specs.BoundedArray((4,), np.float32, -1.0, 1.0)
NUM_SUCCESS = 200
WINDOWS = 4  # Timing windows per update measurement.


def matmul_peak(n: int = 0, repeats: int = 20) -> float:
  """Best GFLOP/s of an n x n fp32 matmul at jax's default precision, the updates' own (n: 2048 on CPU, 8192 on
  an accelerator, whose peak a smaller product does not reach)."""
  n = n or (2048 if jax.default_backend() == "cpu" else 8192)
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


class _NoLogger:
  def write(self, data):
    del data


def update_benchmark(
  agent: str, obs: str, per_call_counts, seconds: float, overrides=None, preset: str = "laptop"
) -> dict:
  """FLOPs of one update and steps/s with each of `per_call_counts` updates per call, on a batch held in memory."""
  overrides = {**agents.preset(agent, preset), **(overrides or {})}
  builder = agents.make_builder(agent, **overrides)
  shape, dtype = SHAPES[obs]
  networks = builder.make_networks(specs.Array(shape, dtype), ACTION_SPEC)
  rng = np.random.default_rng(0)
  batch = _batch(rng, builder.batch_kind, obs, builder.config.batch_size)
  success = _batch(rng, "future", obs, NUM_SUCCESS)["observation"]
  learner = builder.make_learner(
    networks, _Repeat(batch), success, jax.random.PRNGKey(0), counter=common_learner.StepCounter(), logger=_NoLogger()
  )
  keys = common_learner.BATCH_KEYS[builder.batch_kind]
  # The HLO before XLA's optimisation passes: the compiled module hides the dots it hands to library calls.
  # Counted with lax convolutions whatever runs: the model's FLOPs, not those of how they are computed.
  with conv.implementation("lax"):
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
    "preset": preset,
    "batch_size": builder.config.batch_size,
    "gflop_per_update": round(flops / 1e9, 3),
    **{k: v for k, v in (overrides or {}).items() if k in ("batch_size", "torso_channels")},
  }
  for per_call in sorted(set(per_call_counts)):
    for _ in range(2):
      learner.step(per_call)  # compile, warm up
    # The best of WINDOWS windows, as the matmul peak is the best of its repeats: a neighbour's burst on this
    # shared machine slows a window, never speeds one up.
    rates = []
    for _ in range(WINDOWS):
      jax.block_until_ready(learner.save())
      calls, start = 0, time.perf_counter()
      while time.perf_counter() - start < seconds / WINDOWS:
        learner.step(per_call)
        calls += 1
      jax.block_until_ready(learner.save())
      rates.append(calls * per_call / (time.perf_counter() - start))
    row[f"steps_per_s_x{per_call}"] = round(max(rates), 2)
  return row


def _node_rss(tag: str, cpu: dict = None) -> dict:
  """{node group: RSS bytes} of the launched processes carrying `tag` in their environment.

  The supervisor names each node's process in its LAEO_NODE variable; the one without it is the launcher.
  `cpu`, when given, is filled with {node group: {pid: CPU seconds used so far}}.
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
      with open(f"/proc/{pid}/stat") as f:
        utime, stime = f.read().rsplit(")", 1)[1].split()[11:13]  # Fields 14 and 15, in clock ticks.
    except (OSError, StopIteration, ValueError):
      continue
    titles = [v[len(b"LAEO_NODE=") :].decode() for v in environ if v.startswith(b"LAEO_NODE=")]
    node = titles[0].split("/")[0] if titles else "launcher"
    out[node] = max(out.get(node, 0), rss)
    if cpu is not None:
      cpu.setdefault(node, {})[pid] = (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")
  return out


def _mib(peak: dict) -> dict:
  return {k: round(v / 2**20) for k, v in sorted(peak.items())}


def launch_benchmark(
  agent: str,
  env: str,
  dataset_dir: str,
  num_steps: int,
  fused: int,
  episode_reuse: int = 1,
  config=(),
  rate_needed: bool = True,
  preset: str = "laptop",
) -> dict:
  """The full local launch: the learner's steady steps/s (from its progress lines) and peak RSS per process."""
  workdir = tempfile.mkdtemp(prefix="laeo_bench_")
  tag = f"LAEO_BENCH_TAG={workdir}"
  command = [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    f"--agent={agent}",
    f"--preset={preset}",
    f"--env={env}",
    f"--dataset_dir={dataset_dir}",
    f"--workdir={workdir}",
    f"--num_steps={num_steps}",
    f"--num_sgd_steps_per_step={fused}",
    f"--episode_reuse={episode_reuse}",
    "--log_every=100",
    "--checkpoint_every=1000000",
    "--eval_every=1000",
    "--episodes_per_eval=10",
    "--num_evaluators=1",
  ]
  command += [f"--config={c}" for c in config]
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
  # CPU seconds per process, read at the first progress line of the steady part of the run and at the last.
  cpu_start, cpu_end, cpu_last, steady_start, steady_last = None, {}, {}, 0.0, 0.0
  while proc.poll() is None:
    for node, rss in _node_rss(tag, cpu_end).items():
      peak[node] = max(peak.get(node, 0), rss)
    if cpu_start is None and any(step >= num_steps // 4 for step, _ in lines):
      cpu_start, steady_start = {n: dict(p) for n, p in cpu_end.items()}, time.time()
    if cpu_start is not None and lines and lines[-1][0] < num_steps:
      steady_last = time.time()
      cpu_last = {n: dict(p) for n, p in cpu_end.items()}
    time.sleep(0.5)
  reader.join(timeout=10)
  if proc.returncode != 0 or (rate_needed and len(lines) < 4):
    raise RuntimeError(f"launch failed (exit {proc.returncode}, {len(lines)} progress lines); workdir {workdir}")
  if not rate_needed:
    return {"env": env, "dataset": os.path.basename(dataset_dir), "num_steps": num_steps, "peak_rss_mib": _mib(peak)}
  # Steady rate: from the first progress line after a quarter of the run (compilation, loading done) to the last.
  first = next(p for p in lines if p[0] >= num_steps // 4)
  last = lines[-1]
  rate = (last[0] - first[0]) / (last[1] - first[1])
  cores = {}
  if steady_last > steady_start:
    for node, pids in cpu_last.items():
      used = sum(t - cpu_start.get(node, {}).get(pid, 0.0) for pid, t in pids.items())
      cores[node] = round(used / (steady_last - steady_start), 2)
  return {
    "agent": agent,
    "env": env,
    "dataset": os.path.basename(dataset_dir),
    "num_steps": num_steps,
    "num_sgd_steps_per_step": fused,
    "episode_reuse": episode_reuse,
    "config": list(config),
    "launch_steps_per_s": round(rate, 2),
    "peak_rss_mib": _mib(peak),
    "cpu_cores": dict(sorted(cores.items())),
  }


def ensure_dataset(env: str, episodes: int) -> str:
  from data_pipeline import generate, rlds_writer

  path = os.path.join(ROOT, "data", "bench", f"{env}_medium_{episodes}ep_seed0")
  if not rlds_writer.is_dataset_dir(path):
    generate.generate_dataset(env, "medium", episodes, path, seed=0, show_progress=False)
  return path


def _pct(gflop: float, rate: float, peak: float) -> float:
  return round(100 * gflop * rate / peak, 1)


DOC = os.path.join(ROOT, "docs", "performance.md")  # Quotes the default run's tables between markers.


def markdown(result: dict) -> str:
  peak = result["matmul_peak_gflops"]
  lines = [
    f"Run on {result.get('date', '?')} at commit {result.get('commit', '?')}.",
    "",
    f"Machine: {result['machine']}; matmul peak {peak:.0f} GFLOP/s (the best of "
    f"{', '.join(f'{p:.0f}' for p in result['matmul_peaks_gflops'])}, measured at the start and the end of this run);"
    f" load average at the start {result['load_average']:.2f}, at the end {result['load_average_end']:.2f}.",
    "",
    f"The update alone ({result.get('preset', 'laptop')} preset; a batch already in memory; convolutions computed by "
    f"{result['update'][0].get('conv', 'auto') if result['update'] else 'auto'}, FLOPs counted as lax convolutions):",
    "",
    "| agent | obs | batch | config | GFLOP/update | steps/s (1 per call) | steps/s (K per call) | % of peak |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for r in result["update"]:
    ks = sorted(int(key.split("x")[-1]) for key in r if key.startswith("steps_per_s_x"))
    best = max(r[f"steps_per_s_x{k}"] for k in ks)
    fused = f"{r[f'steps_per_s_x{ks[-1]}']} (K={ks[-1]})" if ks[-1] > 1 else "-"
    lines.append(
      f"| {r['agent']} | {r['observation']} | {r['batch_size']} | {', '.join(r.get('config', [])) or '-'} | "
      f"{r['gflop_per_update']} | {r['steps_per_s_x1']} | {fused} | {_pct(r['gflop_per_update'], best, peak)}% |"
    )
  if result.get("launch"):
    lines += [
      "",
      "The full local launch (Reverb, tf.data, learner, 1 evaluator); K updates per call, R = --episode_reuse:",
      "",
      "| agent | dataset | config | K | R | launch steps/s | update alone (same K) | launch / alone | % of peak "
      "| update alone % of peak | CPU cores used per process (steady part) | peak RSS MiB per process |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["launch"]:
      lines.append(
        f"| {r['agent']} | {r['dataset']} | {', '.join(r['config']) or '-'} | {r['num_sgd_steps_per_step']} | "
        f"{r['episode_reuse']} | {r['launch_steps_per_s']} | {r.get('update_steps_per_s', 'n/a')} | "
        f"{r.get('ratio_to_update', 'n/a')} | {r.get('percent_of_peak', 'n/a')}% | "
        f"{r.get('update_percent_of_peak', 'n/a')}% | {', '.join(f'{k} {v}' for k, v in r['cpu_cores'].items())} | "
        f"{', '.join(f'{k} {v}' for k, v in r['peak_rss_mib'].items())} |"
      )
  if result.get("rss"):
    lines += [
      "",
      "Peak RSS per process (MiB), short LAEO launches:",
      "",
      "| dataset | steps | peak RSS MiB per process |",
      "|---|---|---|",
    ]
    for r in result["rss"]:
      lines.append(
        f"| {r['dataset']} | {r['num_steps']} | {', '.join(f'{k} {v}' for k, v in r['peak_rss_mib'].items())} |"
      )
  return "\n".join(lines) + "\n"


IMAGE_BATCH = ("batch_size=64",)  # The image launches' batch (the cpu budget's, scripts/reproduce.py).


def _config_overrides(config) -> dict:
  from launch import run_config  # pylint: disable=g-import-not-at-top

  return run_config.parse_overrides(config)


def _write_json(path: str, result: dict) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=2)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--agents", nargs="+", default=["laeo", "oril", "bc"])
  parser.add_argument("--fused", type=int, default=10, help="K: updates per jitted call (state tasks).")
  parser.add_argument("--seconds", type=float, default=8.0, help="Timing window per update measurement.")
  parser.add_argument(
    "--observations",
    nargs="+",
    choices=sorted(SHAPES),
    default=["state", "image"],
    help="The observations whose updates are measured (image: also LAEO at the image launches' batch, with and "
    "without num_q_success_examples=32).",
  )
  parser.add_argument(
    "--conv",
    choices=conv.IMPLEMENTATIONS,
    default="auto",
    help="How the updates alone compute convolutions (agents/common/conv.py); launches use the default, auto.",
  )
  parser.add_argument(
    "--preset",
    choices=agents.PRESET_NAMES,
    default="laptop",
    help="Network and batch sizes of every update and launch ('paper': 1024-wide, batch 1024, the Atari torso).",
  )
  parser.add_argument(
    "--commit",
    default=None,
    help="The code's commit for the record (default: asked of git; give it where the tree has no .git, such as a "
    "copy on a GPU machine).",
  )
  parser.add_argument("--skip_launch", action="store_true")
  parser.add_argument("--launch_steps", type=int, default=3000)
  parser.add_argument(
    "--launch",
    nargs="+",
    default=[
      "laeo:fetch_push:2000:10:1",
      "laeo:fetch_push:2000:10:4",
      "bc:fetch_push:2000:10:1",
      "bc:fetch_push:2000:10:4",
      "laeo:fetch_push_image:1000:1:4",
    ],
    help="AGENT:ENV:EPISODES:K:R full launches (image launches use batch 64, a third of the steps).",
  )
  parser.add_argument("--rss", action="append", default=[], help="ENV:EPISODES: peak RSS of a short LAEO launch.")
  parser.add_argument("--rss_steps", type=int, default=300)
  parser.add_argument(
    "--out",
    default=OUT,
    metavar="PREFIX",
    help="Writes the full result to PREFIX.json and its tables to PREFIX.md (default results/throughput).",
  )
  parser.add_argument(
    "--doc",
    default=None,
    help="A document whose `<!-- table:throughput -->` block gets this run's tables (default: docs/performance.md "
    "for a run to the default --out, none otherwise).",
  )
  args = parser.parse_args()
  if args.commit is None:
    import reproduce  # pylint: disable=g-import-not-at-top  (scripts/; imports this module's neighbours)

    args.commit = reproduce.code_commit()
  device = jax.devices()[0]
  result = {
    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    "commit": args.commit,
    "preset": args.preset,
    "machine": f"{platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} {jax.default_backend()}"
    + ("" if device.platform == "cpu" else f" ({device.device_kind})"),
    "load_average": os.getloadavg()[0],
    "matmul_peaks_gflops": [round(matmul_peak(), 1)],
    "update": [],
    "launch": [],
    "rss": [],
  }
  print(f"matmul peak {result['matmul_peaks_gflops'][0]} GFLOP/s", flush=True)
  # The CPU image runs' batch; the paper preset's image runs keep its 1024.
  image_config = IMAGE_BATCH if args.preset == "laptop" else ()
  plan = [(agent, "state", (), [1, args.fused]) for agent in args.agents] if "state" in args.observations else []
  if "image" in args.observations:
    plan += [(agent, "image", (), [1]) for agent in args.agents]
    if image_config:
      plan += [
        ("laeo", "image", image_config, [1]),
        ("laeo", "image", image_config + ("num_q_success_examples=32",), [1]),
      ]
  for agent, obs, config, fused in plan:
    with conv.implementation(args.conv):
      row = update_benchmark(agent, obs, fused, args.seconds, _config_overrides(config), args.preset)
    row["config"] = list(config)
    row["conv"] = args.conv
    result["update"].append(row)
    print(row, flush=True)
    _write_json(args.out + ".partial.json", result)  # What a run stopped part-way (a lease's end) leaves.
  if not args.skip_launch:
    for spec in args.launch:
      agent, env, episodes, fused, reuse = spec.split(":")
      fused, reuse = int(fused), int(reuse)
      obs = "image" if "_image" in env else "state"
      config = image_config if obs == "image" else ()
      steps = args.launch_steps if obs == "state" else args.launch_steps // 3
      row = launch_benchmark(
        agent, env, ensure_dataset(env, int(episodes)), steps, fused, reuse, config, preset=args.preset
      )
      alone = next(
        (
          r
          for r in result["update"]
          if r["agent"] == agent
          and r["observation"] == obs
          and r["config"] == list(config)
          and f"steps_per_s_x{fused}" in r
        ),
        None,
      )
      if alone:
        rate = alone[f"steps_per_s_x{fused}"]
        row["update_steps_per_s"] = rate
        row["gflop_per_update"] = alone["gflop_per_update"]
        row["ratio_to_update"] = round(row["launch_steps_per_s"] / rate, 3)
      result["launch"].append(row)
      print(row, flush=True)
  for spec in args.rss:
    env, episodes = spec.split(":")
    steps = args.rss_steps if "_image" not in env else args.rss_steps // 3
    config = image_config if "_image" in env else ()
    result["rss"].append(
      launch_benchmark("laeo", env, ensure_dataset(env, int(episodes)), steps, 1, 1, config, False, args.preset)
    )
    print(result["rss"][-1], flush=True)
  result["matmul_peaks_gflops"].append(round(matmul_peak(), 1))
  result["load_average_end"] = os.getloadavg()[0]
  peak = result["matmul_peak_gflops"] = max(result["matmul_peaks_gflops"])
  for r in result["launch"]:
    if "gflop_per_update" in r:
      r["percent_of_peak"] = _pct(r["gflop_per_update"], r["launch_steps_per_s"], peak)
      r["update_percent_of_peak"] = _pct(r["gflop_per_update"], r["update_steps_per_s"], peak)
  for r in result["update"]:
    ks = [k for k in r if k.startswith("steps_per_s_x")]
    r["percent_of_peak"] = _pct(r["gflop_per_update"], max(r[k] for k in ks), peak)
  _write_json(args.out + ".json", result)
  if os.path.exists(args.out + ".partial.json"):
    os.remove(args.out + ".partial.json")
  with open(args.out + ".md", "w") as f:
    f.write(markdown(result))
  doc = args.doc or (DOC if args.out == OUT else None)
  if doc:
    import paper_plots  # pylint: disable=g-import-not-at-top

    if not paper_plots.update_table(doc, "throughput", markdown(result)):
      raise SystemExit(f"{doc} has no <!-- table:throughput --> block to replace.")
    print(f"updated {doc}", flush=True)
  print(markdown(result))


if __name__ == "__main__":
  main()
