"""The Launchpad program of a run: counter, Reverb, dataset loader, learner, evaluators, steps limiter."""
import dataclasses
import functools
import json
import os
from typing import Any, Dict, List, Optional

import launchpad as lp
from acme.utils import lp_utils

import agents
import environments
from data_pipeline import reverb_pipeline
from data_pipeline import rlds_io
from data_pipeline import success_examples as success_lib
from launch import checkpointing
from launch import nodes


@dataclasses.dataclass
class RunConfig:
  """Everything that defines a run; stored in `<workdir>/run_config.json` so a restart can resume it."""
  agent: str
  env: str
  dataset_dir: str
  workdir: str
  num_steps: int
  seed: int = 0
  num_evaluators: int = 1
  episodes_per_eval: int = 10
  eval_every: int = 1000
  checkpoint_every: int = 1000
  log_every: int = 100
  overrides: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Networks standardise vector observations with the dataset's per-dimension mean and std, observation_stats
  # (derived from dataset_dir by launch.run.make_run_config and kept for the run's lifetime; None for images
  # or when normalize_observations is off).
  normalize_observations: bool = True
  # Learner updates per jitted call (Acme's num_sgd_steps_per_step): the same updates, less dispatch overhead.
  num_sgd_steps_per_step: int = 1
  observation_stats: Optional[Dict[str, List[float]]] = None

  # Fields that may change between a run and its resumption.
  RESUMABLE_CHANGES = ("num_steps", "num_evaluators", "episodes_per_eval", "eval_every", "checkpoint_every",
                       "log_every", "num_sgd_steps_per_step")
  DERIVED = ("observation_stats",)  # Functions of the other fields: a resumed run keeps the stored ones.

  def validate(self):
    if self.env not in environments.ENV_NAMES:
      raise ValueError(f"Unknown environment {self.env!r}; valid environments: {', '.join(environments.ENV_NAMES)}.")
    for name in ("num_steps", "checkpoint_every", "log_every", "episodes_per_eval", "eval_every",
                 "num_sgd_steps_per_step"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if self.num_evaluators < 0:
      raise ValueError(f"num_evaluators must be >= 0, got {self.num_evaluators}.")
    # The agent registry rejects an unknown agent or config field, listing the valid ones.
    agents.make_builder(self.agent, **self.overrides)


def run_config_path(config: RunConfig) -> str:
  return os.path.join(config.workdir, "run_config.json")


def _as_stored(config: RunConfig) -> Dict[str, Any]:
  return json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples become lists, as in the JSON file.


def check_run_config(config: RunConfig) -> None:
  """A workdir that already holds a run may only be resumed with the same definition of that run."""
  path = run_config_path(config)
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  current = _as_stored(config)
  fixed = [k for k in current if k not in RunConfig.RESUMABLE_CHANGES + RunConfig.DERIVED]
  changed = sorted(k for k in fixed if previous.get(k) != current[k])
  if changed:
    details = "; ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
    raise ValueError(f"{config.workdir} holds a different run ({details}). Use a new --workdir to start "
                     "another run, or the same flags to resume this one.")


def stored_run_config(config: RunConfig) -> Optional[RunConfig]:
  """The RunConfig stored in `config`'s workdir by an earlier start of its run, if any (not validated)."""
  path = run_config_path(config)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return RunConfig(**json.load(f))


def load_run_config(path: str) -> RunConfig:
  if not os.path.exists(path):
    raise FileNotFoundError(f"No run config at {path}.")
  with open(path) as f:
    config = RunConfig(**json.load(f))
  config.validate()
  return config


def save_run_config(config: RunConfig) -> None:
  check_run_config(config)
  os.makedirs(config.workdir, exist_ok=True)
  with open(run_config_path(config), "w") as f:
    json.dump(_as_stored(config), f, indent=2, sort_keys=True)


def check_dataset_matches_env(dataset_dir: str, env: str) -> None:
  """A dataset recorded in another environment (or with other shapes) is refused before anything starts."""
  metadata = rlds_io.read_metadata(dataset_dir)
  if metadata.get("env_name") != env:
    raise ValueError(f"{dataset_dir} was generated for env {metadata.get('env_name')!r}, not {env!r}.")
  instance = environments.make(env, seed=0)
  try:
    observation_shape = tuple(instance.observation_spec().shape)
    action_shape = tuple(instance.action_spec().shape)
  finally:
    instance.close()
  if (tuple(metadata["observation_shape"]), tuple(metadata["action_shape"])) != (observation_shape, action_shape):
    raise ValueError(
        f"{dataset_dir} has observations {tuple(metadata['observation_shape'])} and actions "
        f"{tuple(metadata['action_shape'])}, but {env} has {observation_shape} and {action_shape}.")
  examples = success_lib.load_success_examples(dataset_dir)
  if examples.ndim < 1 or len(examples) < 1 or tuple(examples.shape[1:]) != observation_shape:
    raise ValueError(f"The success examples of {dataset_dir} have shape {examples.shape}; expected "
                     f"(N >= 1, {', '.join(map(str, observation_shape))}) for {env}.")


def _episode_tables(num_episodes: int, signature):
  return [reverb_pipeline.make_episode_table(num_episodes, signature)]


def make_program(config: RunConfig) -> lp.Program:
  """The program of a run whose config was validated (`launch.run.make_run_config`, `load_run_config`)."""
  num_episodes, signature = reverb_pipeline.dataset_signature(config.dataset_dir)
  latest = checkpointing.Checkpointer(os.path.join(config.workdir, "checkpoints")).latest()
  counts = latest["counts"] if latest else {}

  program = lp.Program(f"{config.agent}_{config.env}")
  workdir = config.workdir
  # Our own nodes are built under `nodes.guarded`: a failure in any of them stops the program and is reported.
  with program.group("counter"):
    counter = program.add_node(lp.CourierNode(nodes.make_counter, counts))
  with program.group("reverb"):
    replay = program.add_node(lp.ReverbNode(functools.partial(_episode_tables, num_episodes, signature)))
  with program.group("dataset_loader"):
    program.add_node(lp.PyNode(
        nodes.guarded, workdir, "dataset_loader", nodes.load_dataset_into_reverb, config.dataset_dir, replay))
  with program.group("learner"):
    learner = program.add_node(lp.CourierNode(
        nodes.guarded, workdir, "learner", nodes.LearnerWorker, config.agent, config.overrides, config.env,
        config.dataset_dir, signature, replay, counter, workdir, config.num_steps, config.seed,
        config.checkpoint_every, config.log_every, config.observation_stats, config.num_sgd_steps_per_step))
  with program.group("evaluator"):
    for i in range(config.num_evaluators):
      label = f"evaluator_{i}"
      program.add_node(lp.CourierNode(
          nodes.guarded, workdir, label, nodes.Evaluator, config.agent, config.overrides, config.env, learner,
          counter, workdir, config.seed + 1000 * (i + 1), config.episodes_per_eval, config.eval_every, label,
          config.observation_stats))
  with program.group("steps_limiter"):
    # Stops every process once the learner has counted its last step (after its final checkpoint).
    program.add_node(lp.CourierNode(lp_utils.StepsLimiter, counter, config.num_steps - 1, "learner_steps"))
  return program
