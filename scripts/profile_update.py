"""Where one agent's update spends its time, operation by operation (a measurement, not a test).

  python scripts/profile_update.py                                   # LAEO, 64x64 images, batch 64 (laptop)
  python scripts/profile_update.py --agent oril --observation state --batch_size 256 --top 20

Runs the whole update (both stages in sequence) `--updates` times under jax's profiler with XLA's per-operation
trace events on (`--xla_cpu_enable_xprof_traceme`; `--xla_hlo_profile` crashes jaxlib 0.4.25), reads the trace
back, and prints the time per update by kind of operation (oneDNN matmuls, XLA loop fusions, convolutions, ...)
and the slowest operations with their shapes and the model code they come from (from XLA's optimised HLO, dumped
beside the trace). CPU backend. Anything else running on the machine inflates every number alike: compare shares.
"""

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
WORK = tempfile.mkdtemp(prefix="profile_update_")
# Before jax is imported: XLA reads its flags once.
os.environ["XLA_FLAGS"] = " ".join(
  [os.environ.get("XLA_FLAGS", ""), "--xla_cpu_enable_xprof_traceme=true", f"--xla_dump_to={WORK}/hlo"]
)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from acme import specs  # noqa: E402

import agents  # noqa: E402
import benchmark_throughput  # noqa: E402
from agents.common import learner as common_learner  # noqa: E402

INSTRUCTION = re.compile(r"\s+(?:ROOT )?([\w.\-]+) = (\S+) ([\w\-]+)\((.*)")


def hlo_instructions(module_name: str) -> dict:
  """name -> (shape, kind, where) from XLA's optimised HLO of the jitted update: kind is the opcode (a custom
  call's target in its place), where the model code its ops come from (a fusion's: those of its callee)."""
  (path,) = glob.glob(f"{WORK}/hlo/*jit_{module_name}.cpu_after_optimizations.txt")[:1]
  text = open(path).read()
  ops_of, current = collections.defaultdict(list), None
  for line in text.splitlines():
    if line.rstrip().endswith("{") and not line.startswith(" "):
      current = line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%")
    source = re.search(r'op_name="([^"]+)"', line)
    if source and current:
      ops_of[current].append(source.group(1))
  instructions = {}
  for line in text.splitlines():
    m = INSTRUCTION.match(line)
    if not m:
      continue
    name, shape, opcode, rest = m.groups()
    callee = re.search(r"(?:to_apply|calls)=%?([\w.\-]+)", rest)
    sources = ops_of.get(callee.group(1), []) if callee else []
    source = re.search(r'op_name="([^"]+)"', rest)
    sources = sources or ([source.group(1)] if source else [])
    where = sorted({re.sub(r"jit\([^)]*\)/", "", s).split("/")[0] for s in sources})
    if opcode == "custom-call":
      opcode = re.search(r'custom_call_target="([^"]+)"', rest).group(1)
    instructions.setdefault(name, (shape, opcode, ",".join(where)[:60]))
  return instructions


def trace_times(trace_dir: str, names) -> collections.Counter:
  from tensorflow.core.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top

  (path,) = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1:]
  space = xplane_pb2.XSpace()
  space.ParseFromString(open(path, "rb").read())
  total = collections.Counter()
  for plane in space.planes:
    metadata = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      for event in line.events:
        name = metadata.get(event.metadata_id)
        if name in names:
          total[name] += event.duration_ps / 1e9
  return total


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--agent", default="laeo", choices=agents.AGENT_NAMES)
  parser.add_argument("--observation", default="image", choices=sorted(benchmark_throughput.SHAPES))
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--updates", type=int, default=10)
  parser.add_argument("--top", type=int, default=15, help="How many of the slowest operations to list.")
  args = parser.parse_args()

  overrides = {**agents.preset(args.agent, "laptop"), "batch_size": args.batch_size}
  builder = agents.make_builder(args.agent, **overrides)
  shape, dtype = benchmark_throughput.SHAPES[args.observation]
  networks = builder.make_networks(specs.Array(shape, dtype), benchmark_throughput.ACTION_SPEC)
  rng = np.random.default_rng(0)
  batch = benchmark_throughput._batch(rng, builder.batch_kind, args.observation, args.batch_size)  # pylint: disable=protected-access
  batch = {k: jnp.asarray(batch[k]) for k in common_learner.BATCH_KEYS[builder.batch_kind]}
  success = benchmark_throughput._batch(rng, "future", args.observation, benchmark_throughput.NUM_SUCCESS)  # pylint: disable=protected-access
  learner = builder.make_learner(networks, iter([]), success["observation"], jax.random.PRNGKey(0))
  state = learner.state

  def update(state, batch, success_examples):
    return learner._update_fn(state, batch, success_examples)  # pylint: disable=protected-access

  update = jax.jit(update)
  success = learner.success_examples  # As the learner's update reads them (LAEO prepares image ones once).
  for _ in range(3):
    jax.block_until_ready(update(state, batch, success))
  jax.profiler.start_trace(f"{WORK}/trace")
  for _ in range(args.updates):
    jax.block_until_ready(update(state, batch, success))
  jax.profiler.stop_trace()

  instructions = hlo_instructions("update")
  times = trace_times(f"{WORK}/trace", instructions)
  per_update = {name: ms / args.updates for name, ms in times.items()}
  total = sum(per_update.values())
  kinds = collections.Counter()
  for name, ms in per_update.items():
    kinds[instructions[name][1]] += ms
  print(
    f"{args.agent}, {args.observation}, batch {args.batch_size}: {total:.1f} ms per update summed over XLA's "
    f"operation events ({args.updates} updates; {jax.devices()[0].platform}; events can overlap in time, so "
    "compare shares, not the sum with a wall-clock time)"
  )
  print("\n| kind of operation | ms per update | share |\n|---|---|---|")
  for kind, ms in kinds.most_common():
    if ms >= 0.05 * total / 100:
      print(f"| {kind} | {ms:.1f} | {100 * ms / total:.0f}% |")
  print("\n| operation | kind | shape | from | ms per update |\n|---|---|---|---|---|")
  for name, ms in sorted(per_update.items(), key=lambda kv: -kv[1])[: args.top]:
    shape, kind, where = instructions[name]
    print(f"| {name} | {kind} | {shape.split('{')[0]} | {where} | {ms:.2f} |")


if __name__ == "__main__":
  main()
