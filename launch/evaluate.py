"""Evaluates the latest checkpoint of a run in its environment, in this process.

  python launch/evaluate.py --workdir=runs/laeo_fetch_reach_seed0 --episodes=50

Prints the success rate (the task holds at any step; and at the final step) and logs it to
`<workdir>/logs/checkpoint_eval/logs.csv`.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402

import agents  # noqa: E402
import environments  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import nodes  # noqa: E402
from launch import program as program_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a run (holds run_config.json and checkpoints/).")
flags.DEFINE_integer("episodes", 50, "Evaluation episodes.")
flags.DEFINE_integer("seed", 12345, "Seed of the evaluation environment and policy noise.")


def evaluate_latest_checkpoint(workdir: str, episodes: int, seed: int) -> dict:
  config = program_lib.load_run_config(os.path.join(workdir, "run_config.json"))
  latest = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints")).latest()
  if latest is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints.")
  builder = agents.make_builder(config.agent, **config.overrides)
  env = environments.make(config.env, seed=0)
  networks = builder.make_networks(env.observation_spec(), env.action_spec(), config.observation_stats)
  env.close()
  # A learner that is never stepped: it only turns the checkpointed state back into policy parameters.
  learner = builder.make_learner(networks, iter(()), success_lib.load_success_examples(config.dataset_dir),
                                 jax.random.PRNGKey(config.seed))
  learner.restore(latest["learner"])
  counter = nodes.make_counter({"learner_steps": latest["step"]})
  evaluator = nodes.Evaluator(config.agent, config.overrides, config.env, learner, counter, config.workdir,
                              seed, episodes, eval_every=1, label="checkpoint_eval",
                              observation_stats=config.observation_stats)
  return evaluator.evaluate_round()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required.")
  try:
    result = evaluate_latest_checkpoint(FLAGS.workdir, FLAGS.episodes, FLAGS.seed)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(f"checkpoint at learner step {result['learner_steps']}: success rate {result['success_rate']:.3f} "
        f"(final step {result['success_rate_final_step']:.3f}) over {result['episodes']} episodes")


if __name__ == "__main__":
  app.run(main)
