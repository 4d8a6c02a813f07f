"""What defines a run: the RunConfig, its size presets and overrides, its checks, and its storage.

`make_run_config` turns the launcher's flags into a validated RunConfig (generating the dataset first when
none is given) and stores it in `<workdir>/run_config.json`; every process of the run, on this host or
another, reads it back with `load_run_config`.
"""

import ast
import dataclasses
import importlib.util
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import agents
import environments

# data_pipeline (TensorFlow) is imported inside the two functions that read datasets: a policy loaded on its own
# (launch/policy.py) reads run configs without TensorFlow.

# Updates per jitted learner call when the user names none: a scan of 10 small state updates saves ~15% of
# dispatch time; a scan of conv updates ran several times slower on XLA's CPU backend
# (results/throughput.md), so image runs make one update per call.
AUTO_SGD_STEPS_PER_STEP = {"vector": 10, "image": 1}


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
  )
  DERIVED = ("observation_stats",)  # Functions of the other fields: a resumed run keeps the stored ones.

  def validate(self):
    if self.env not in environments.ENV_NAMES:
      raise ValueError(f"Unknown environment {self.env!r}; valid environments: {', '.join(environments.ENV_NAMES)}.")
    for name in (
      "num_steps",
      "checkpoint_every",
      "log_every",
      "episodes_per_eval",
      "eval_every",
      "num_sgd_steps_per_step",
      "episode_reuse",
    ):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
    for name in ("num_evaluators", "video_every"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
    if self.wandb_project and importlib.util.find_spec("wandb") is None:
      raise ValueError(
        "--wandb_project needs Weights & Biases, which the default install leaves out: "
        "`.venv/bin/pip install wandb`."
      )
    # The agent registry rejects an unknown agent or config field, listing the valid ones.
    agents.make_builder(self.agent, **self.overrides)

  def make_builder(self):
    return agents.make_builder(self.agent, **self.overrides)

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


def preset_overrides(agent: str, preset: str) -> Dict[str, Any]:
  """The config fields of `agent` that size preset `preset` sets (see each agent's config.PRESETS)."""
  return agents.preset(agent, preset)


def default_dataset_dir(env: str, quality: str, episodes: int, seed: int) -> str:
  return os.path.join("data", f"{env}_{quality}_{episodes}ep_seed{seed}")


def run_config_path(workdir: str) -> str:
  return os.path.join(workdir, "run_config.json")


def _as_stored(config: RunConfig) -> Dict[str, Any]:
  return json.loads(json.dumps(dataclasses.asdict(config)))  # Tuples become lists, as in the JSON file.


def check_run_config(config: RunConfig) -> None:
  """A workdir that already holds a run may only be resumed with the same definition of that run."""
  path = run_config_path(config.workdir)
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous = json.load(f)
  current = _as_stored(config)
  fixed = [k for k in current if k not in RunConfig.RESUMABLE_CHANGES + RunConfig.DERIVED]
  changed = sorted(k for k in fixed if previous.get(k) != current[k])
  if changed:
    details = "; ".join(f"{k}: {previous.get(k)!r} -> {current[k]!r}" for k in changed)
    raise ValueError(
      f"{config.workdir} holds a different run ({details}). Use a new --workdir to start "
      "another run, or the same flags to resume this one."
    )


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


def check_dataset_matches_env(
  dataset_dir: str, env: str, success_examples: Optional[str] = None, check_success: bool = True
) -> None:
  """A dataset recorded in another environment (or with other shapes), or success examples shaped unlike its
  observations (`success_examples`, default: the dataset's own), are refused before anything starts."""
  from data_pipeline import rlds_io  # pylint: disable=g-import-not-at-top
  from data_pipeline import success_examples as success_lib  # pylint: disable=g-import-not-at-top

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
      f"{tuple(metadata['action_shape'])}, but {env} has {observation_shape} and {action_shape}."
    )
  if not check_success:
    return
  if success_examples and not os.path.isfile(success_examples):
    raise FileNotFoundError(f"No success examples file at {success_examples}.")
  source = success_examples or dataset_dir
  examples = success_lib.load_success_examples(source)
  if examples.ndim < 1 or len(examples) < 1 or tuple(examples.shape[1:]) != observation_shape:
    raise ValueError(
      f"The success examples of {source} have shape {examples.shape}; expected "
      f"(N >= 1, {', '.join(map(str, observation_shape))}) for {env}."
    )


def success_examples_from_flag(dataset_dir: str, success_key: str, num_examples: int, seed: int):
  """A seeded sample of the observations of the steps whose field `success_key` is true (the user names the
  flag: laeo's own datasets keep theirs out of the agents' reach)."""
  from data_pipeline import rlds_io  # pylint: disable=g-import-not-at-top
  from data_pipeline import success_examples as success_lib  # pylint: disable=g-import-not-at-top

  def flagged():
    for episode in rlds_io.iter_episodes(dataset_dir, include_success=True):
      if success_key not in episode:
        raise ValueError(f"No step field {success_key!r} in {dataset_dir}; its step fields: {sorted(episode)}.")
      yield {"observation": episode["observation"], "success": episode[success_key]}

  try:
    return success_lib.extract_success_examples(flagged(), num_examples, seed)
  except ValueError as e:
    if "No successful step" in str(e):
      raise ValueError(f"{success_key!r} is never true in {dataset_dir}: there is no success example to take.") from e
    raise


def check_dataset_fits_in_memory(dataset_dir: str, available_bytes: Optional[int] = None) -> None:
  """Refuses, before anything is loaded, a dataset whose Reverb table would not fit in this machine's memory."""
  import psutil  # pylint: disable=g-import-not-at-top

  from data_pipeline import reverb_pipeline  # pylint: disable=g-import-not-at-top

  num_episodes, signature = reverb_pipeline.dataset_signature(dataset_dir)
  need = reverb_pipeline.estimated_table_bytes(num_episodes, signature)
  available = psutil.virtual_memory().available if available_bytes is None else available_bytes
  budget = int(0.7 * available)  # The rest for the learner, the evaluators and the system.
  if need > budget:
    raise ValueError(
      f"{dataset_dir}: its {num_episodes} episodes would take about {need / 2**30:.1f} GiB in the Reverb server, "
      f"more than the {budget / 2**30:.1f} GiB (70% of the {available / 2**30:.1f} GiB available) this machine "
      "can give it. Use a smaller dataset or a machine with more memory (README: Scale)."
    )


def make_run_config(
  agent: str,
  env: str,
  dataset_dir: Optional[str],
  quality: str,
  dataset_episodes: int,
  num_evaluators: int,
  num_steps: int,
  seed: int,
  workdir: str,
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
) -> RunConfig:
  """The RunConfig of a run (stored in its workdir), generating the dataset first when none is given.

  With normalize_observations, the networks standardise vector observations with the dataset's per-dimension
  mean and std (images are only scaled to [0, 1]); a resumed run keeps the statistics it started with.
  num_sgd_steps_per_step 0 picks AUTO_SGD_STEPS_PER_STEP by the kind of observation.
  """
  from data_pipeline import generate  # pylint: disable=g-import-not-at-top
  from data_pipeline import rlds_io  # pylint: disable=g-import-not-at-top

  if success_examples and success_key:
    raise ValueError("Give at most one of --success_examples and --success_key.")
  overrides = {**preset_overrides(agent, preset), **parse_overrides(config_overrides)}
  generated = dataset_dir is None
  if generated:
    dataset_dir = default_dataset_dir(env, quality, dataset_episodes, seed)
  if num_sgd_steps_per_step == 0:
    num_sgd_steps_per_step = AUTO_SGD_STEPS_PER_STEP["image" if "_image" in env else "vector"]
  config = RunConfig(
    agent=agent,
    env=env,
    dataset_dir=os.path.abspath(dataset_dir),
    workdir=os.path.abspath(workdir),
    num_steps=num_steps,
    seed=seed,
    num_evaluators=num_evaluators,
    episodes_per_eval=episodes_per_eval,
    eval_every=eval_every,
    checkpoint_every=checkpoint_every,
    log_every=log_every,
    overrides=overrides,
    normalize_observations=normalize_observations,
    num_sgd_steps_per_step=num_sgd_steps_per_step,
    episode_reuse=episode_reuse,
    video_every=video_every,
    wandb_project=wandb_project,
    success_examples=(
      os.path.join(os.path.abspath(workdir), "success_examples.npy")
      if success_key
      else (os.path.abspath(success_examples) if success_examples else None)
    ),
    success_key=success_key,
  )
  config.validate()
  check_run_config(config)  # Before any slow work: refuse a mismatched workdir first.
  if generated and not rlds_io.is_dataset_dir(dataset_dir):
    print(f"No --dataset_dir given: generating {dataset_episodes} {quality} episodes of {env} in {dataset_dir}")
    summary = generate.generate_dataset(env, quality, dataset_episodes, dataset_dir, seed)
    print(generate.summary_line(summary))
  sampled = None
  if success_key and not os.path.exists(config.success_examples):
    sampled = success_examples_from_flag(config.dataset_dir, success_key, num_success_examples, seed)
  # Also fails clearly on a missing dataset or success examples file. Sampled examples are the dataset's own
  # observations, whose shape this checks against the environment.
  check_dataset_matches_env(config.dataset_dir, env, config.success_examples, check_success=sampled is None)
  check_dataset_fits_in_memory(config.dataset_dir)
  previous = stored_run_config(config.workdir)
  if previous is not None:
    config.observation_stats = previous.observation_stats
  elif normalize_observations:
    config.observation_stats = rlds_io.dataset_observation_stats(config.dataset_dir)
  save_run_config(config)
  if sampled is not None:
    from data_pipeline import success_examples as success_lib  # pylint: disable=g-import-not-at-top

    success_lib.save_success_examples(config.success_examples, sampled)
  return config
