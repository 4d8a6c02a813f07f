"""The Launchpad program of a run: counter, Reverb (one server per replay shard), dataset loader, learner, evaluators, steps limiter."""

import functools
import os

import launchpad as lp
from acme.utils import lp_utils

from data_pipeline import batches
from launch import checkpointing
from launch import failures
from launch import nodes
from launch.run_config import RunConfig


def _episode_tables(num_episodes: int, signature):
  return [batches.make_episode_table(num_episodes, signature)]


def make_program(config: RunConfig) -> lp.Program:
  """The program of a run whose config was validated (`prepare.prepare_run`, `run_config.load_run_config`)."""
  spec = config.spec()
  num_episodes, signature = spec.num_episodes, batches.spec_signature(spec)
  latest = checkpointing.for_run(config.workdir).latest()
  counts = latest["counts"] if latest else {}
  guarded = functools.partial(failures.guarded, config.workdir)  # A failing node stops the program.

  program = lp.Program(os.path.basename(config.workdir))
  with program.group("counter"):
    counter = program.add_node(nodes.ServedCourierNode("counter", nodes.make_counter, counts))
  with program.group("reverb"):
    # One server per replay shard, each holding its shard's episodes only.
    replay = [
      program.add_node(lp.ReverbNode(functools.partial(_episode_tables, n, signature)))
      for n in batches.shard_sizes(num_episodes, config.num_replay_shards)
    ]
  with program.group("dataset_loader"):
    program.add_node(lp.PyNode(guarded, "dataset_loader", nodes.load_dataset_into_reverb, config, signature, replay))
  with program.group("learner"):
    learner = program.add_node(
      nodes.ServedCourierNode("learner", guarded, "learner", nodes.LearnerWorker, config, signature, replay, counter)
    )
  with program.group("evaluator"):
    for i in range(config.num_evaluators):
      label = f"evaluator_{i}"
      program.add_node(
        nodes.ServedCourierNode(
          "none", guarded, label, nodes.Evaluator, config, learner, counter, label, config.evaluator_seed(i)
        )
      )
  with program.group("steps_limiter"):
    # Stops every process once the learner has counted its last step (after its final checkpoint).
    program.add_node(
      nodes.ServedCourierNode("none", lp_utils.StepsLimiter, counter, config.num_steps - 1, "learner_steps")
    )
  return program
