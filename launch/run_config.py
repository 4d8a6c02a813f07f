"""What defines a run: the RunConfig, its size presets and overrides, its checks, and its storage.

`make_run_config` turns the launcher's flags into a validated RunConfig (generating the dataset first when
none is given) and stores it in `<workdir>/run_config.json`; every process of the run, on this host or
another, reads it back with `load_run_config`.
"""

import ast
import dataclasses
import datetime
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dm_env import specs as dm_specs
import numpy as np

import agents
from data_pipeline import action_scaling as scaling_lib
from data_pipeline import rlds_source
from data_pipeline import step_format
from data_pipeline import success_examples as success_lib
import environments
from launch import checkpointing
from launch import failures

# rlds_source, action_scaling and success_examples import no TensorFlow until they read a dataset: a policy loaded
# on its own (launch/policy.py) reads run configs without TensorFlow.

# Updates per jitted learner call when the user names none: a scan of 10 small state updates saves ~15% of
# dispatch time; a scan of conv updates ran several times slower on XLA's CPU backend
# (results/throughput.md), so image runs make one update per call.
AUTO_SGD_STEPS_PER_STEP = {"vector": 10, "image": 1}
MIN_IMAGE_SIZE = 36  # The smallest image the Atari torso's three unpadded ('VALID') convolutions reduce to 1x1.
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
  # (derived from dataset_dir by make_run_config and kept for the run's lifetime; None for images or when
  # normalize_observations is off).
  normalize_observations: bool = True
  # Learner updates per jitted call (Acme's num_sgd_steps_per_step): the same updates, less dispatch overhead.
  num_sgd_steps_per_step: int = 1
  # Consecutive batches cut from each draw of episodes out of Reverb (fresh t and future for each; every batch
  # distributed as with 1, but that many batches share their episodes): 1/episode_reuse of the input bytes.
  episode_reuse: int = 1
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
  observation_key: str = rlds_source.DEFAULT_OBSERVATION_KEY
  # The step fields that make the action: 'action' (a vector), or fields of a dict action joined in that order.
  action_key: str = rlds_source.DEFAULT_ACTION_KEY
  # [height, width] every image observation is resized to on its way in (None: as the dataset stores them).
  image_size: Optional[List[int]] = None
  # Success examples drawn from the data: the observations of every step whose success_key is true
  # ('flagged_steps'), or the last observation of each episode ('last_step'; with success_key, of the episodes
  # whose last step has it true).
  success_from: str = "flagged_steps"
  # How actions map to the policy's [-1, 1]: 'auto', 'data' or explicit bounds (data_pipeline.action_scaling).
  action_bounds: str = scaling_lib.AUTO
  # Measured from the dataset when the run is created: its rlds_source.DatasetSpec, and the ActionScaling of
  # action_bounds (None: actions already lie in [-1, 1]).
  dataset_spec: Optional[Dict[str, Any]] = None
  action_scaling: Optional[Dict[str, List[float]]] = None
  # Reverb servers the episodes are spread over (episode i in server i % K only; data_pipeline/reverb_pipeline).
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

  def spec(self) -> rlds_source.DatasetSpec:
    if self.dataset_spec is None:
      raise ValueError(f"The run config of {self.workdir} holds no dataset spec (make it with make_run_config).")
    return rlds_source.DatasetSpec.from_dict(self.dataset_spec)

  def specs(self):
    """(observation spec, action spec) the networks are built for: the dataset's observations, and actions in
    [-1, 1]. Runs created before the dataset spec was recorded take their environment's."""
    if self.dataset_spec is None:
      instance = environments.make(self.env, seed=0)
      try:
        return instance.observation_spec(), instance.action_spec()
      finally:
        instance.close()
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
    """rlds_source.iter_episodes's options for this run's fields."""
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


def default_dataset_dir(env: str, quality: str, episodes: int, seed: int) -> str:
  return os.path.join("data", f"{env}_{quality}_{episodes}ep_seed{seed}")


def run_config_path(workdir: str) -> str:
  return os.path.join(workdir, "run_config.json")


def _as_stored(config: RunConfig) -> Dict[str, Any]:
  return json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples become lists, as in the JSON file.


def check_run_config(config: RunConfig) -> Dict[str, Tuple[Any, Any]]:
  """A workdir that already holds a run may only be resumed with the same definition of that run, except that a
  run whose last attempt diverged may change its agent config (`overrides`). Returns those changes
  ({field: (before, after)}; empty when there are none)."""
  path = run_config_path(config.workdir)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    previous = json.load(f)
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


def keep_fields_of_older_run(config: RunConfig) -> None:
  """A run stored before a RunConfig field existed resumes with that field's default (what it ran with), whatever
  the flag's default is now."""
  path = run_config_path(config.workdir)
  if not os.path.exists(path):
    return
  with open(path) as f:
    stored = json.load(f)
  for field in dataclasses.fields(RunConfig):
    if field.name in stored:
      continue
    if field.default is not dataclasses.MISSING:
      setattr(config, field.name, field.default)
    elif field.default_factory is not dataclasses.MISSING:
      setattr(config, field.name, field.default_factory())


def stored_run_config(workdir: str) -> Optional[RunConfig]:
  """The RunConfig stored in `workdir` by an earlier start of its run, if any (not validated)."""
  path = run_config_path(workdir)
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
  with open(run_config_path(config.workdir), "w") as f:
    json.dump(_as_stored(config), f, indent=2, sort_keys=True)


def config_changes_path(workdir: str) -> str:
  return os.path.join(workdir, "config_changes.jsonl")


def _state_shapes(config: RunConfig) -> Dict[str, Tuple[int, ...]]:
  """The shape of every entry of the training state `config`'s learner starts from."""
  import jax  # pylint: disable=g-import-not-at-top

  from agents.common import learner as learner_lib  # pylint: disable=g-import-not-at-top

  builder = config.make_builder()
  networks = builder.make_networks(*config.specs(), config.observation_stats)
  spec = config.spec()
  examples = np.zeros((1, *spec.observation_shape), np.dtype(spec.observation_dtype))
  state = builder.make_learner(networks, iter(()), examples, jax.random.PRNGKey(0)).save()
  return {learner_lib.path_name(p): np.shape(v) for p, v in learner_lib.leaves_by_path(state).items()}


def check_diverged_run_change(previous: RunConfig, config: RunConfig, changes: Dict[str, Tuple[Any, Any]]) -> None:
  """A diverged run resumes from its checkpoint: its changed agent config must give networks of the same shapes."""
  if _state_shapes(previous) != _state_shapes(config):
    raise ValueError(
      f"{config.workdir} diverged and may resume with a changed --config, but not with networks of other shapes "
      f"(changed: {', '.join(changes)}). Use a new --workdir for those."
    )


def _shown(override: Any) -> str:
  return "the default" if override is None else repr(override)


def record_config_change(config: RunConfig, changes: Dict[str, Tuple[Any, Any]]) -> str:
  """Appends a diverged run's change of agent config to `<workdir>/config_changes.jsonl`; returns what to tell."""
  divergence = failures.read_divergence(config.workdir)
  entry = {
    "time": datetime.datetime.now().isoformat(timespec="seconds"),
    "diverged_at_step": divergence["step"],
    "non_finite": divergence["non_finite"],
    "resumed_from_step": checkpointing.for_run(config.workdir).latest_step(),
    "overrides": {k: list(v) for k, v in changes.items()},
  }
  with open(config_changes_path(config.workdir), "a") as f:
    f.write(json.dumps(entry) + "\n")
  listed = ", ".join(f"{k}: {_shown(before)} -> {_shown(after)}" for k, (before, after) in changes.items())
  return (
    f"{config.workdir} diverged at learner step {entry['diverged_at_step']}: resuming from step "
    f"{entry['resumed_from_step']} with a changed config ({listed}), recorded in {config_changes_path(config.workdir)}"
  )


def check_env_matches_dataset(config: RunConfig) -> None:
  """The run's environment gives observations shaped like its dataset's and takes actions of the same shape; a
  dataset laeo generated was recorded in the environment named."""
  from launch import rollout  # pylint: disable=g-import-not-at-top

  spec = config.spec()
  for d in config.dataset_dirs:
    env_name = read_generated_env_name(d)
    if env_name is not None and config.env in environments.ENV_NAMES and env_name != config.env:
      raise ValueError(f"{d} was generated for env {env_name!r}, not {config.env!r}.")
  env = rollout.make_evaluation_env(config, seed=0)
  try:
    observation = env.reset().observation
    action_shape = tuple(env.action_shape)
  except ValueError as e:
    raise ValueError(f"{config.env} cannot evaluate a policy of {config.dataset_dir}: {e}") from e
  finally:
    env.close()
  if (tuple(observation.shape), action_shape) != (spec.observation_shape, spec.action_shape):
    raise ValueError(
      f"{config.dataset_dir} has observations {spec.observation_shape} (at {config.observation_key!r}) and actions "
      f"{spec.action_shape}, but {config.env} gives observations {tuple(observation.shape)} and takes actions "
      f"{action_shape}."
    )


def read_generated_env_name(dataset_dir: str) -> Optional[str]:
  """The environment a dataset laeo generated was recorded in (None for anyone else's dataset)."""
  path = os.path.join(dataset_dir, "laeo_metadata.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f).get("env_name")


def check_success_examples(config: RunConfig) -> None:
  """The success examples exist and are shaped like the dataset's observations."""
  spec = config.spec()
  path = config.success_examples_path()
  if config.success_examples and not os.path.isfile(path):
    raise FileNotFoundError(f"No success examples file at {path}.")
  if not os.path.isfile(path):
    raise ValueError(
      f"No success examples: {config.dataset_dirs[0]} has no {success_lib.SUCCESS_EXAMPLES_FILENAME} (only "
      "datasets laeo generated carry one). Give --success_examples=FILE.npy (observations shaped "
      f"{spec.observation_shape}) or --success_key=FIELD (a step field that flags successful steps)."
    )
  examples = success_lib.load_success_examples(path)
  if examples.ndim < 1 or len(examples) < 1 or tuple(examples.shape[1:]) != spec.observation_shape:
    raise ValueError(
      f"The success examples of {path} have shape {examples.shape}; expected "
      f"(N >= 1, {', '.join(map(str, spec.observation_shape))}), the dataset's observations."
    )
  if spec.observation_dtype == "uint8" and examples.dtype != np.uint8:
    raise ValueError(f"The success examples of {path} are {examples.dtype}; this run's observations are uint8.")
  if spec.observation_dtype == "float32":
    bad = np.argwhere(~np.isfinite(examples.astype(np.float32)))
    if len(bad):
      example, dimension = bad[0]
      raise ValueError(
        f"The success examples of {path}: example {example}, dimension {dimension}, is "
        f"{examples[example, dimension]}. laeo refuses NaN and infinite inputs: repair or drop that example."
      )


def success_examples_from_data(config: RunConfig, num_examples: int) -> np.ndarray:
  """A seeded sample of the dataset's own observations (as the networks take them): those of the steps whose
  field `config.success_key` is true, or with success_from 'last_step' each episode's last one (only where
  success_key, when given, is true there). laeo's own datasets keep their success flag out of the agents' reach:
  the user names it."""
  last = config.success_from == "last_step"

  def marked():
    for episode in rlds_source.iter_episodes(config.dataset_dirs, flag_key=config.success_key, **config.read_options()):
      success = episode["flag"] if config.success_key else np.ones(len(episode["observation"]), bool)
      if last:
        success = np.arange(len(success)) == len(success) - 1 if success[-1] else np.zeros_like(success)
      yield {"observation": episode["observation"], "success": success}

  try:
    return success_lib.extract_success_examples(marked(), num_examples, config.seed)
  except ValueError as e:
    if "No successful step" in str(e):
      where = "on any episode's last step" if last else "on any step"
      raise ValueError(
        f"{config.success_key!r} is never true {where} of {config.dataset_dir}: there is no success example to take."
      ) from e
    raise


def check_dataset_fits_in_memory(
  config: RunConfig, available_bytes: Optional[int] = None, shards_per_machine: Optional[int] = None
) -> None:
  """Refuses, before anything is loaded, a dataset whose Reverb tables would not fit in memory: the
  `shards_per_machine` largest of the run's replay shards (default all of them: one machine holds every server) in
  `available_bytes` (default this machine's available memory)."""
  import psutil  # pylint: disable=g-import-not-at-top

  from data_pipeline import reverb_pipeline  # pylint: disable=g-import-not-at-top

  spec = config.spec()
  sizes = reverb_pipeline.shard_sizes(spec.num_episodes, config.num_replay_shards)
  held = sum(sorted(sizes, reverse=True)[: shards_per_machine or len(sizes)])
  need = reverb_pipeline.estimated_table_bytes(held, reverb_pipeline.spec_signature(spec))
  available = psutil.virtual_memory().available if available_bytes is None else available_bytes
  budget = int(0.7 * available)  # The rest for the learner, the evaluators and the system.
  if need > budget:
    where = (
      f"{held} of its {spec.num_episodes} episodes (the largest of {config.num_replay_shards} replay shards)"
      if held < spec.num_episodes
      else f"its {spec.num_episodes} episodes"
    )
    raise ValueError(
      f"{config.dataset_dir}: {where} would take about {need / 2**30:.1f} GiB in the Reverb server, more than "
      f"the {budget / 2**30:.1f} GiB (70% of the {available / 2**30:.1f} GiB available) one machine can give it. "
      "Use a smaller dataset, a machine with more memory, or more replay nodes (--num_replay_shards with "
      "launch/slurm.py; README: Scale)."
    )


def resolve_dataset_dirs(dataset_dir: Optional[str], tfds_name: Optional[str], tfds_data_dir: Optional[str]):
  """The dataset's directories (None: none given, generate one) from --dataset_dir or --tfds_name."""
  if tfds_name:
    if dataset_dir:
      raise ValueError("Give at most one of --dataset_dir and --tfds_name.")
    return [rlds_source.tfds_name_dir(tfds_name, tfds_data_dir or os.path.join("~", "tensorflow_datasets"))]
  if tfds_data_dir:
    raise ValueError("--tfds_data_dir needs --tfds_name.")
  if not dataset_dir:
    return None
  dirs = rlds_source.split_dirs(dataset_dir)
  for d in dirs:
    if not os.path.exists(d):
      raise FileNotFoundError(f"Dataset directory {d} does not exist.")
  return dirs


def default_workdir(agent: str, env: Optional[str], dataset_dirs: Optional[Sequence[str]], seed: int) -> str:
  """runs/<agent>_<env or dataset name>_seed<seed>."""
  name = env
  if dataset_dirs and (name is None or ":" in name):
    parts = os.path.normpath(dataset_dirs[0]).split(os.sep)
    name = parts[-2] if rlds_source._VERSION.match(parts[-1]) else parts[-1]  # <name>/<version> for TFDS dirs.
  return os.path.join("runs", f"{agent}_{name.replace(':', '_').replace('.', '_')}_seed{seed}")


def make_run_config(
  agent: str,
  env: Optional[str],
  dataset_dir: Optional[str],
  quality: str,
  dataset_episodes: int,
  num_evaluators: int,
  num_steps: int,
  seed: int,
  workdir: Optional[str],
  episodes_per_eval: int,
  eval_every: int,
  checkpoint_every: int,
  log_every: int,
  preset: str,
  config_overrides: Sequence[str],
  normalize_observations: bool = True,
  num_sgd_steps_per_step: int = 0,
  episode_reuse: int = 1,
  video_every: int = 5,
  wandb_project: Optional[str] = None,
  success_examples: Optional[str] = None,
  success_key: Optional[str] = None,
  num_success_examples: int = 200,
  tfds_name: Optional[str] = None,
  tfds_data_dir: Optional[str] = None,
  observation_key: str = rlds_source.DEFAULT_OBSERVATION_KEY,
  action_bounds: str = scaling_lib.AUTO,
  action_key: str = rlds_source.DEFAULT_ACTION_KEY,
  image_size: Optional[str] = None,
  success_from: str = "flagged_steps",
  num_replay_shards: int = 1,
  shards_per_machine: Optional[int] = None,
) -> RunConfig:
  """The RunConfig of a run (stored in its workdir), generating the dataset first when none is given.

  The dataset is `dataset_dir` (comma-separated directories are shards of one dataset) or the prepared TFDS
  dataset `tfds_name` under `tfds_data_dir`; without either, one is generated for `env` (default fetch_reach).
  `env` None means the dataset's own when laeo generated it, else none (then num_evaluators must be 0).
  With normalize_observations, the networks standardise vector observations with the dataset's per-dimension
  mean and std (images are only scaled to [0, 1]); a resumed run keeps the statistics, the dataset spec and
  the action scaling it started with. num_sgd_steps_per_step 0 picks AUTO_SGD_STEPS_PER_STEP by the kind of
  observation. A run whose last attempt diverged may change its agent config (the change is recorded in
  `<workdir>/config_changes.jsonl`). The dataset must fit in memory: `shards_per_machine` of the
  `num_replay_shards` Reverb servers on one machine (default all of them). Every refusal comes before anything is written: a workdir of pickled
  checkpoints, NaN or infinity in the dataset or the success examples among them.
  """
  from data_pipeline import generate  # pylint: disable=g-import-not-at-top
  from data_pipeline import rlds_io  # pylint: disable=g-import-not-at-top

  if success_examples and (success_key or success_from == "last_step"):
    raise ValueError("Give at most one of --success_examples and --success_key / --success_from=last_step.")
  from_data = bool(success_key) or success_from == "last_step"
  overrides = {**agents.preset(agent, preset), **parse_overrides(config_overrides)}
  dirs = resolve_dataset_dirs(dataset_dir, tfds_name, tfds_data_dir)
  generated = dirs is None
  if generated:
    env = env or "fetch_reach"
    dirs = [os.path.abspath(default_dataset_dir(env, quality, dataset_episodes, seed))]
  elif env is None:
    env = read_generated_env_name(dirs[0])
  workdir = os.path.abspath(workdir or default_workdir(agent, env, dirs, seed))
  config = RunConfig(
    agent=agent,
    env=env,
    dataset_dir=",".join(dirs),
    workdir=workdir,
    num_steps=num_steps,
    seed=seed,
    num_evaluators=num_evaluators,
    episodes_per_eval=episodes_per_eval,
    eval_every=eval_every,
    checkpoint_every=checkpoint_every,
    log_every=log_every,
    overrides=overrides,
    normalize_observations=normalize_observations,
    num_sgd_steps_per_step=max(num_sgd_steps_per_step, 1),  # 0 (auto) is resolved once the data is known.
    episode_reuse=episode_reuse,
    video_every=video_every,
    wandb_project=wandb_project,
    success_examples=(
      os.path.join(workdir, "success_examples.npy")
      if from_data
      else (os.path.abspath(success_examples) if success_examples else None)
    ),
    success_key=success_key,
    observation_key=observation_key,
    action_bounds=action_bounds,
    action_key=action_key,
    image_size=list(step_format.parse_image_size(image_size)) if image_size else None,
    success_from=success_from,
    num_replay_shards=num_replay_shards,
  )
  config.validate()
  keep_fields_of_older_run(config)
  changes = check_run_config(config)  # Before any slow work: refuse a mismatched workdir first.
  checkpointing.for_run(workdir).check_format()
  if generated and not rlds_io.is_dataset_dir(dirs[0]):
    print(f"No --dataset_dir given: generating {dataset_episodes} {quality} episodes of {env} in {dirs[0]}")
    summary = generate.generate_dataset(env, quality, dataset_episodes, dirs[0], seed)
    print(generate.summary_line(summary))
  previous = stored_run_config(config.workdir)
  if previous is not None and previous.dataset_spec is not None:
    for name in RunConfig.DERIVED:
      setattr(config, name, getattr(previous, name))
    if changes:
      check_diverged_run_change(previous, config, changes)
  else:
    # One pass; also refuses a missing or damaged dataset, and NaN or infinity in it.
    measured = rlds_source.measure(dirs, **config.read_options())
    spec = measured.spec
    if spec.num_skipped_episodes:
      print(f"Skipping {spec.num_skipped_episodes} episodes of fewer than two steps (no transition in them).")
    scaling = scaling_lib.resolve(action_bounds, spec.action_min, spec.action_max)
    config.dataset_spec = spec.to_dict()
    config.action_scaling = scaling.to_dict() if scaling else None
    if normalize_observations and measured.observation_stats is not None:
      config.observation_stats = measured.observation_stats
  spec = config.spec()
  padding = agents.make_config(config.agent, **config.overrides).torso_padding
  for field in config.observation_layout().images:
    if padding == "VALID" and min(field.shape[:2]) < MIN_IMAGE_SIZE:
      raise ValueError(
        f"{field.path!r} holds {field.shape} images; the conv torso (8x8, 4x4 and 3x3 unpadded convolutions) "
        f"needs at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (--image_size); 'SAME' padding takes any size."
      )
  if num_sgd_steps_per_step == 0:
    config.num_sgd_steps_per_step = AUTO_SGD_STEPS_PER_STEP["image" if spec.has_images else "vector"]
  sampled = None
  if from_data and not os.path.exists(config.success_examples):
    sampled = success_examples_from_data(config, num_success_examples)  # The dataset's own observations.
  else:
    check_success_examples(config)
  if env is not None:
    check_env_matches_dataset(config)
  config.validate()  # Again, now that the number of episodes is known.
  check_dataset_fits_in_memory(config, shards_per_machine=shards_per_machine)
  save_run_config(config)
  if changes:
    print(record_config_change(config, changes))
  if sampled is not None:
    success_lib.save_success_examples(config.success_examples, sampled)
  return config
