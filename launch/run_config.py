"""What defines a run: the RunConfig record, its agent overrides, and its storage.

`launch/prepare.py` turns a launcher's options into a checked RunConfig and stores it in
`<workdir>/run_config.json`; every process of the run, on this host or another, reads it back with
`load_run_config`.
"""

import ast
import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dm_env import specs as dm_specs
import numpy as np

import agents
from data_pipeline import action_scaling as scaling_lib
from data_pipeline import rlds_reader
from data_pipeline import step_format
from data_pipeline import success_examples as success_lib
import environments
from launch import failures

# rlds_reader, action_scaling and success_examples import no TensorFlow until they read a dataset: a policy loaded
# on its own (launch/policy.py) reads run configs without TensorFlow.

SUCCESS_FROM = ("flagged_steps", "last_step")  # Where --success_key's success examples come from.


@dataclasses.dataclass
class RunConfig:
  """Everything that defines a run; stored in `<workdir>/run_config.json` so a restart can resume it."""

  agent: str
  # An environment of environments.ENV_NAMES, a user's 'package.module:factory', or None (no evaluators).
  env: Optional[str]
  # One TFDS directory, or several (shards of one dataset) joined by commas.
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
  # (derived from dataset_dir by prepare.prepare_run and kept for the run's lifetime; None for images or when
  # normalize_observations is off).
  normalize_observations: bool = True
  # Learner updates per jitted call (Acme's num_sgd_steps_per_step): the same updates, less dispatch overhead.
  num_sgd_steps_per_step: int = 1
  # Consecutive batches cut from each draw of episodes out of Reverb (fresh t and future for each; every batch
  # distributed as with 1, but that many batches share their episodes): 1/episode_reuse of the input bytes.
  episode_reuse: int = 4
  observation_stats: Optional[Dict[str, List[float]]] = None
  # Every video_every-th evaluation round writes its first episode to <workdir>/videos/ (0: never).
  video_every: int = 5
  # Weights & Biases project to log every node's metrics to (None: no W&B; wandb is not installed by default).
  wandb_project: Optional[str] = None
  # The success examples: a .npy of observations (None: the dataset's own success_examples.npy). With
  # success_key, a seeded sample of the observations of the steps whose step field success_key is true,
  # written to <workdir>/success_examples.npy when the run is created.
  success_examples: Optional[str] = None
  success_key: Optional[str] = None
  # The step fields the agents observe: '/'-separated paths into nested observations, several joined by commas
  # (images and vectors together; see data_pipeline.step_format).
  observation_key: str = rlds_reader.DEFAULT_OBSERVATION_KEY
  # The step fields that make the action: 'action' (a vector), or fields of a dict action joined in that order.
  action_key: str = rlds_reader.DEFAULT_ACTION_KEY
  # [height, width] every image observation is resized to on its way in (None: as the dataset stores them).
  image_size: Optional[List[int]] = None
  # Success examples drawn from the data: the observations of every step whose success_key is true
  # ('flagged_steps'), or the last observation of each episode ('last_step'; with success_key, of the episodes
  # whose last step has it true).
  success_from: str = "flagged_steps"
  # How actions map to the policy's [-1, 1]: 'auto', 'data' or explicit bounds (data_pipeline.action_scaling).
  action_bounds: str = scaling_lib.AUTO
  # Measured from the dataset when the run is created: its rlds_reader.DatasetSpec, and the ActionScaling of
  # action_bounds (None: actions already lie in [-1, 1]).
  dataset_spec: Optional[Dict[str, Any]] = None
  action_scaling: Optional[Dict[str, List[float]]] = None
  # Reverb servers the episodes are spread over (episode i in server i % K only; data_pipeline/batches).
  num_replay_shards: int = 1

  # Fields that may change between a run and its resumption.
  RESUMABLE_CHANGES = (
    "num_steps",
    "num_evaluators",
    "episodes_per_eval",
    "eval_every",
    "checkpoint_every",
    "log_every",
    "num_sgd_steps_per_step",
    "episode_reuse",
    "video_every",
    "wandb_project",
    "num_replay_shards",  # Replay is reloaded from the dataset at every start.
  )
  # Functions of the other fields and of the data: a resumed run keeps the stored ones.
  DERIVED = ("observation_stats", "dataset_spec", "action_scaling")

  def validate(self):
    if self.env is None:
      if self.num_evaluators > 0:
        raise ValueError(
          "No environment to evaluate in: give --env (one of "
          f"{', '.join(environments.ENV_NAMES)}, or your own as package.module:factory), or --num_evaluators=0 "
          "to train without evaluation."
        )
    else:
      environments.check_name(self.env)
    for name in (
      "num_steps",
      "checkpoint_every",
      "log_every",
      "episodes_per_eval",
      "eval_every",
      "num_sgd_steps_per_step",
      "episode_reuse",
      "num_replay_shards",
    ):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("num_evaluators", "video_every"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
    if self.success_from not in SUCCESS_FROM:
      raise ValueError(f"--success_from must be one of {', '.join(SUCCESS_FROM)}, got {self.success_from!r}.")
    if self.image_size is not None:
      step_format.parse_image_size(self.image_size)
    if self.wandb_project and importlib.util.find_spec("wandb") is None:
      raise ValueError(
        "--wandb_project needs Weights & Biases, which the default install leaves out: "
        "`.venv/bin/pip install wandb`."
      )
    if self.dataset_spec is not None and self.num_replay_shards > self.spec().num_episodes:
      raise ValueError(
        f"num_replay_shards={self.num_replay_shards} for {self.spec().num_episodes} episodes: a replay shard would "
        "hold none."
      )
    # The agent registry rejects an unknown agent or config field, listing the valid ones.
    agents.make_builder(self.agent, **self.overrides)

  def make_builder(self):
    return agents.make_builder(self.agent, **self.overrides)

  @property
  def dataset_dirs(self) -> List[str]:
    return self.dataset_dir.split(",")

  def spec(self) -> rlds_reader.DatasetSpec:
    if self.dataset_spec is None:
      raise ValueError(f"The run config of {self.workdir} holds no dataset spec (make it with prepare.prepare_run).")
    return rlds_reader.DatasetSpec.from_dict(self.dataset_spec)

  def specs(self):
    """(observation spec, action spec) the networks are built for: the dataset's observations, and actions in
    [-1, 1]."""
    spec = self.spec()
    return (
      self.observation_layout().spec(),
      dm_specs.BoundedArray(spec.action_shape, np.float32, -1.0, 1.0, "action"),
    )

  def observation_layout(self) -> step_format.ObservationLayout:
    """How a step's observation fields become the networks' input."""
    return self.spec().layout(self.observation_key)

  def action_layout(self) -> Optional[step_format.ActionLayout]:
    """How the policy's action vector splits into the dataset's action dict (None: the action is a vector)."""
    return self.spec().action_fields()

  def read_options(self) -> Dict[str, Any]:
    """rlds_reader.iter_episodes's options for this run's fields."""
    return {
      "observation_key": self.observation_key,
      "action_key": self.action_key,
      "image_size": tuple(self.image_size) if self.image_size else None,
    }

  def scaling(self) -> Optional[scaling_lib.ActionScaling]:
    return scaling_lib.ActionScaling.from_dict(self.action_scaling)

  def success_examples_path(self) -> str:
    """The configured success examples, or the first dataset directory's own."""
    return self.success_examples or os.path.join(self.dataset_dirs[0], success_lib.SUCCESS_EXAMPLES_FILENAME)

  def load_success_examples(self) -> np.ndarray:
    """The success examples, as the networks take observations (float32 vectors, uint8 images)."""
    examples = success_lib.load_success_examples(self.success_examples_path())
    return examples if examples.dtype == np.uint8 else examples.astype(np.float32)

  def evaluator_seed(self, index: int) -> int:
    """Seed of evaluator `index`: apart from the learner's seed and from every other evaluator's."""
    return self.seed + 1000 * (index + 1)


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
  """Parses NAME=VALUE strings; VALUE is a Python literal (0.5, (256, 256), 'single_example') or a string."""
  overrides = {}
  for item in items:
    name, sep, value = item.partition("=")
    if not sep or not name:
      raise ValueError(f"Config override {item!r} is not of the form NAME=VALUE.")
    try:
      overrides[name.strip()] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      overrides[name.strip()] = value
  return overrides


def run_config_path(workdir: str) -> str:
  return os.path.join(workdir, "run_config.json")


def _as_stored(config: RunConfig) -> Dict[str, Any]:
  return json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples become lists, as in the JSON file.


def read_stored(workdir: str) -> Optional[Dict[str, Any]]:
  """The run config an earlier start of the run stored in `workdir`, as stored (JSON), or None."""
  path = run_config_path(workdir)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def check_run_config(config: RunConfig, stored: Optional[Dict[str, Any]] = None) -> Dict[str, Tuple[Any, Any]]:
  """A workdir that already holds a run may only be resumed with the same definition of that run, except that a
  run whose last attempt diverged may change its agent config (`overrides`). Returns those changes
  ({field: (before, after)}; empty when there are none). `stored`: the workdir's stored config, if already read."""
  previous = stored if stored is not None else read_stored(config.workdir)
  if previous is None:
    return {}
  current = _as_stored(config)
  fixed = [k for k in current if k not in RunConfig.RESUMABLE_CHANGES + RunConfig.DERIVED]
  changed = sorted(k for k in fixed if previous.get(k) != current[k])
  if changed == ["overrides"] and failures.read_divergence(config.workdir) is not None:
    before, after = previous.get("overrides") or {}, current["overrides"]
    return {
      k: (before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)
    }
  if changed:
    details = "; ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
    raise ValueError(
      f"{config.workdir} holds a different run ({details}). Use a new --workdir to start "
      "another run, or the same flags to resume this one."
    )


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
  with open(run_config_path(config.workdir), "w") as f:
    json.dump(_as_stored(config), f, indent=2, sort_keys=True)


def config_changes_path(workdir: str) -> str:
  return os.path.join(workdir, "config_changes.jsonl")
