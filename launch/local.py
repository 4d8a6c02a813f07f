"""Runs an agent end to end on one machine with Launchpad local multi-processing.

  python launch/local.py --agent=laeo --env=fetch_reach

Without --dataset_dir, a small dataset of the chosen --quality is generated first (and reused afterwards).
Re-running with the same --workdir resumes from its last intact checkpoint. Exit status: 0 when the learner
reached --num_steps, 1 when a node died (named, with the step of the last checkpoint) or the learner diverged
(the step and what was not finite named), 130 on Ctrl-C, 2 for bad flags or refused inputs.
"""

import os
import sys

# Runnable as a script from anywhere: make the repository importable in this process and in its workers.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

import agents  # noqa: E402
import environments  # noqa: E402
from launch import plot  # noqa: E402
from launch import prepare  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from launch import supervisor  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("agent", "laeo", f"One of {agents.AGENT_NAMES}.")
flags.DEFINE_string(
  "env",
  None,
  f"Evaluation environment: one of {environments.ENV_NAMES}, or your own as package.module:factory (a dm_env "
  "with success(), or a gymnasium env). Default: the one a laeo-generated dataset was recorded in; fetch_reach "
  "when the dataset is generated; none for anyone else's data (then --num_evaluators=0).",
)
flags.DEFINE_string(
  "dataset_dir",
  None,
  "RLDS dataset: any directory tfds.builder_from_directory opens (several, comma-separated, are shards of "
  "one dataset); generated if neither this nor --tfds_name is given.",
)
flags.DEFINE_string("tfds_name", None, "A prepared TFDS dataset NAME[/CONFIG][:VERSION] under --tfds_data_dir.")
flags.DEFINE_string("tfds_data_dir", None, "Where --tfds_name is prepared (default ~/tensorflow_datasets).")
flags.DEFINE_string(
  "observation_key",
  "observation",
  "The step fields the agents observe: '/'-separated paths into nested observations, several joined by commas "
  "(e.g. observation/image,observation/state: each image gets its own encoder, the features are joined).",
)
flags.DEFINE_string(
  "action_key",
  "action",
  "The step fields that make the action: 'action' (a vector), or fields of a dict action joined in the order "
  "given (e.g. action/world_vector,action/gripper_closedness_action); the policy returns such a dict.",
)
flags.DEFINE_string(
  "image_size",
  "64",
  "Every image observation is resized (area averaging) to N x N or HxW on its way into Reverb, and in the "
  "evaluators and load_policy the same way.",
)
flags.DEFINE_string(
  "action_bounds",
  "auto",
  "How dataset actions map to the policy's [-1, 1]: 'auto' (as they are when they lie in [-1, 1], else the "
  "data's per-dimension min and max), 'data', or your bounds 'LOW,HIGH' or '[l1, ...],[h1, ...]'. The "
  "policy maps its actions back; actions are never clipped.",
)
flags.DEFINE_string(
  "quality", "medium", "Quality of the generated dataset when --dataset_dir is not given: " "medium, low or expert."
)
flags.DEFINE_integer("dataset_episodes", 2000, "Episodes of the generated dataset when --dataset_dir is not given.")
flags.DEFINE_integer("num_evaluators", 1, "Evaluator processes.")
flags.DEFINE_integer("num_steps", 10000, "Total learner steps (a resumed run continues up to this count).")
flags.DEFINE_integer("seed", 0, "Seed for data generation, networks, batch sampling and evaluation.")
flags.DEFINE_string(
  "workdir", None, "Logs, checkpoints and run config; default runs/<agent>_<env or dataset name>_seed<seed>."
)
flags.DEFINE_integer("episodes_per_eval", 10, "Episodes per evaluation round.")
flags.DEFINE_integer("eval_every", 1000, "Learner steps between the starts of evaluation rounds.")
flags.DEFINE_integer("checkpoint_every", 1000, "Learner steps between checkpoints.")
flags.DEFINE_integer("log_every", 100, "Learner steps between counter updates and progress lines.")
flags.DEFINE_string("preset", "laptop", f"Network/batch size preset: one of {agents.PRESET_NAMES}.")
flags.DEFINE_bool(
  "normalize_observations",
  True,
  "Standardise vector observations with the dataset's "
  "per-dimension mean and std inside every network (--nonormalize_observations: raw inputs).",
)
flags.DEFINE_integer(
  "num_sgd_steps_per_step",
  0,
  "Learner updates per jitted call (the same updates on the "
  "same batches; fewer Python round trips); 0: 10 for state tasks, 1 for image tasks.",
)
flags.DEFINE_integer(
  "episode_reuse",
  4,
  "Consecutive learner batches cut from each draw of episodes out of Reverb (fresh steps and futures for each; "
  "every batch distributed as with 1, but that many batches share their episodes): 1/N of the input pipeline's "
  "cost per batch.",
)
flags.DEFINE_integer(
  "max_restarts",
  0,
  "Times a learner or evaluator that dies is restarted (from the last "
  "checkpoint) before the run stops with an error.",
)
flags.DEFINE_integer(
  "video_every", 5, "Every N-th evaluation round writes one episode as a GIF to <workdir>/videos/ (0: never)."
)
flags.DEFINE_string(
  "success_examples", None, "A .npy of success-example observations (shaped like the dataset's) instead of its own."
)
flags.DEFINE_string(
  "success_key",
  None,
  "Take the success examples from the observations of the steps whose step field at this '/'-separated path "
  "is true or nonzero (a seeded sample of --num_success_examples), instead of the dataset's own file.",
)
flags.DEFINE_enum(
  "success_from",
  "flagged_steps",
  ["flagged_steps", "last_step"],
  "Where success examples from the data come from: the steps --success_key flags, or each episode's last "
  "observation (with --success_key, only of the episodes whose last step has it true or nonzero, e.g. reward).",
)
flags.DEFINE_integer("num_success_examples", 200, "Success examples sampled with --success_key / --success_from.")
flags.DEFINE_string("wandb_project", None, "Also log metrics to this Weights & Biases project (pip install wandb).")
flags.DEFINE_bool(
  "verbose", False, "Show every line the nodes print, library logs included (always kept in <workdir>/logs/nodes/)."
)
flags.DEFINE_bool(
  "prepare_only",
  False,
  "Generate the dataset if needed and write <workdir>/run_config.json "
  "(e.g. for launch/distributed.py), without launching.",
)
flags.DEFINE_multi_string("config", [], "Agent config override NAME=VALUE, repeatable, e.g. --config=bc_coef=0.05.")
flags.DEFINE_integer(
  "num_replay_shards",
  1,
  "Reverb servers the episodes are spread over (each episode in one; the learner samples from all as from one). "
  "Here all on this machine; launch/slurm.py puts one on each replay node.",
)


def config_from_flags(shards_per_machine=None) -> run_config_lib.RunConfig:
  """The run config these flags define (the dataset generated first when none is given), stored in its workdir;
  the dataset must fit `shards_per_machine` replay shards (default all) in this machine's memory. Every option of
  prepare.prepare_run is the flag of its name."""
  if FLAGS.max_restarts < 0:
    raise ValueError(f"--max_restarts must be >= 0, got {FLAGS.max_restarts}.")
  options = {name: FLAGS[name].value for name in prepare.option_names()}
  return prepare.prepare_run(shards_per_machine=shards_per_machine, **options)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.verbose:
    logging.set_verbosity(logging.ERROR)  # TFDS's deprecation warnings while the dataset is read.
  try:
    config = config_from_flags()
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if FLAGS.prepare_only:
    print(f"Prepared {config.workdir}/run_config.json (dataset: {config.dataset_dir})")
    return
  outcome = supervisor.Supervisor(config, max_restarts=FLAGS.max_restarts, verbose=FLAGS.verbose).run()
  if plot.evaluator_logs(config.workdir):
    print(f"Curves: {plot.plot_runs([config.workdir])}", flush=True)
  print(
    ("" if outcome.exit_code == 0 else "error: ") + outcome.message,
    file=sys.stdout if outcome.exit_code == 0 else sys.stderr,
    flush=True,
  )
  sys.exit(outcome.exit_code)


if __name__ == "__main__":
  app.run(main)
