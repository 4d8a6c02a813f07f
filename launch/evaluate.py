"""Evaluates the latest checkpoint of a run in its environment, in this process.

  python launch/evaluate.py --workdir=runs/laeo_fetch_reach_seed0 --episodes=50
  python launch/evaluate.py --workdir=runs/mine --env=my_package.sim:make_env   # a run trained without one

Prints the success rate (the task holds at any step; and at the final step) and logs it to
`<workdir>/logs/checkpoint_eval/logs.csv`.
"""

import dataclasses
import os
import sys
from typing import Optional

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import environments  # noqa: E402
from launch import nodes  # noqa: E402
from launch.policy import load_policy  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Workdir of a run (holds run_config.json and checkpoints/).")
flags.DEFINE_integer("episodes", 50, "Evaluation episodes.")
flags.DEFINE_integer("seed", 12345, "Seed of the evaluation environment and policy noise.")
flags.DEFINE_bool("video", False, "Also write the first episode as a GIF to <workdir>/videos/.")
flags.DEFINE_string(
  "env", None, "Evaluate in this environment (a name or package.module:factory) instead of the run's own."
)


def evaluate_latest_checkpoint(
  workdir: str, episodes: int, seed: int, video: bool = False, env: Optional[str] = None
) -> dict:
  policy = load_policy(workdir)  # Serves the checkpoint's parameters to the evaluator, as a learner would.
  config = policy.config
  if env is not None:
    environments.check_name(env)
    config = dataclasses.replace(config, env=env)
  if config.env is None:
    raise ValueError(f"{workdir} was trained without an environment: name one to evaluate in with --env.")
  counter = nodes.make_counter({"learner_steps": policy.step})
  evaluator = nodes.Evaluator(config, policy, counter, "checkpoint_eval", seed, episodes_per_eval=episodes)
  return evaluator.evaluate_round(record_video=video)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required.")
  try:
    result = evaluate_latest_checkpoint(FLAGS.workdir, FLAGS.episodes, FLAGS.seed, FLAGS.video, FLAGS.env)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  print(
    f"checkpoint at learner step {result['learner_steps']}: success rate {result['success_rate']:.3f} "
    f"(final step {result['success_rate_final_step']:.3f}) over {result['episodes']} episodes"
  )


if __name__ == "__main__":
  app.run(main)
