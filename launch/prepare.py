"""Preparing a run from a launcher's options: the dataset found or generated, checked and measured, the success
examples taken, the environment and memory checked, and the RunConfig stored in the workdir.

`launch/local.py` and `launch/slurm.py` (through local.py's flags) call `prepare_run`; so do the tests. Every
refusal comes before anything is written.
"""

import dataclasses
import datetime
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

import agents
from data_pipeline import action_scaling as scaling_lib
from data_pipeline import rlds_reader
from data_pipeline import step_format
from data_pipeline import success_examples as success_lib
import environments
from launch import checkpointing
from launch import failures
from launch import run_config as run_config_lib

# Updates per jitted learner call when the user names none: a scan of 10 small state updates saves ~15% of
# dispatch time; a scan of conv updates ran several times slower on XLA's CPU backend
# (results/throughput.md), so image runs make one update per call.
AUTO_SGD_STEPS_PER_STEP = {"vector": 10, "image": 1}
MIN_IMAGE_SIZE = 36  # The smallest image the Atari torso's three unpadded ('VALID') convolutions reduce to 1x1.


def default_dataset_dir(env: str, quality: str, episodes: int, seed: int) -> str:
  return os.path.join("data", f"{env}_{quality}_{episodes}ep_seed{seed}")


def keep_fields_of_older_run(config: run_config_lib.RunConfig, stored: Dict[str, Any]) -> None:
  """A run stored (`stored`, its JSON) before a RunConfig field existed resumes with that field's default (what it
  ran with), whatever the flag's default is now."""
  for field in dataclasses.fields(run_config_lib.RunConfig):
    if field.name in stored:
      continue
    if field.default is not dataclasses.MISSING:
      setattr(config, field.name, field.default)
    elif field.default_factory is not dataclasses.MISSING:
      setattr(config, field.name, field.default_factory())


def _state_shapes(config: run_config_lib.RunConfig) -> Dict[str, Tuple[int, ...]]:
  """The shape of every entry of the training state `config`'s learner starts from."""
  import jax  # pylint: disable=g-import-not-at-top

  from agents.common import learner as learner_lib  # pylint: disable=g-import-not-at-top

  builder = config.make_builder()
  networks = builder.make_networks(*config.specs(), config.observation_stats)
  spec = config.spec()
  examples = np.zeros((1, *spec.observation_shape), np.dtype(spec.observation_dtype))
  state = builder.make_learner(networks, iter(()), examples, jax.random.PRNGKey(0)).save()
  return {learner_lib.path_name(p): np.shape(v) for p, v in learner_lib.leaves_by_path(state).items()}


def check_diverged_run_change(
  previous: run_config_lib.RunConfig, config: run_config_lib.RunConfig, changes: Dict[str, Tuple[Any, Any]]
) -> None:
  """A diverged run resumes from its checkpoint: its changed agent config must give networks of the same shapes."""
  if _state_shapes(previous) != _state_shapes(config):
    raise ValueError(
      f"{config.workdir} diverged and may resume with a changed --config, but not with networks of other shapes "
      f"(changed: {', '.join(changes)}). Use a new --workdir for those."
    )


def _shown(override: Any) -> str:
  return "the default" if override is None else repr(override)


def record_config_change(config: run_config_lib.RunConfig, changes: Dict[str, Tuple[Any, Any]]) -> str:
  """Appends a diverged run's change of agent config to `<workdir>/config_changes.jsonl`; returns what to tell."""
  divergence = failures.read_divergence(config.workdir)
  entry = {
    "time": datetime.datetime.now().isoformat(timespec="seconds"),
    "diverged_at_step": divergence["step"],
    "non_finite": divergence["non_finite"],
    "resumed_from_step": checkpointing.for_run(config.workdir).latest_step(),
    "overrides": {k: list(v) for k, v in changes.items()},
  }
  with open(run_config_lib.config_changes_path(config.workdir), "a") as f:
    f.write(json.dumps(entry) + "\n")
  listed = ", ".join(f"{k}: {_shown(before)} -> {_shown(after)}" for k, (before, after) in changes.items())
  return (
    f"{config.workdir} diverged at learner step {entry['diverged_at_step']}: resuming from step "
    f"{entry['resumed_from_step']} with a changed config ({listed}), recorded in {run_config_lib.config_changes_path(config.workdir)}"
  )


def check_env_matches_dataset(config: run_config_lib.RunConfig) -> None:
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


def check_success_examples(config: run_config_lib.RunConfig) -> None:
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


def success_examples_from_data(config: run_config_lib.RunConfig, num_examples: int) -> np.ndarray:
  """A seeded sample of the dataset's own observations (as the networks take them): those of the steps whose
  field `config.success_key` is true, or with success_from 'last_step' each episode's last one (only where
  success_key, when given, is true there). laeo's own datasets keep their success flag out of the agents' reach:
  the user names it."""
  last = config.success_from == "last_step"

  def marked():
    for episode in rlds_reader.iter_episodes(config.dataset_dirs, flag_key=config.success_key, **config.read_options()):
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
  config: run_config_lib.RunConfig, available_bytes: Optional[int] = None, shards_per_machine: Optional[int] = None
) -> None:
  """Refuses, before anything is loaded, a dataset whose Reverb tables would not fit in memory: the
  `shards_per_machine` largest of the run's replay shards (default all of them: one machine holds every server) in
  `available_bytes` (default this machine's available memory)."""
  import psutil  # pylint: disable=g-import-not-at-top

  from data_pipeline import batches  # pylint: disable=g-import-not-at-top

  spec = config.spec()
  sizes = batches.shard_sizes(spec.num_episodes, config.num_replay_shards)
  held = sum(sorted(sizes, reverse=True)[: shards_per_machine or len(sizes)])
  need = batches.estimated_table_bytes(held, batches.spec_signature(spec))
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
    return [rlds_reader.tfds_name_dir(tfds_name, tfds_data_dir or os.path.join("~", "tensorflow_datasets"))]
  if tfds_data_dir:
    raise ValueError("--tfds_data_dir needs --tfds_name.")
  if not dataset_dir:
    return None
  dirs = rlds_reader.split_dirs(dataset_dir)
  for d in dirs:
    if not os.path.exists(d):
      raise FileNotFoundError(f"Dataset directory {d} does not exist.")
  return dirs


def default_workdir(agent: str, env: Optional[str], dataset_dirs: Optional[Sequence[str]], seed: int) -> str:
  """runs/<agent>_<env or dataset name>_seed<seed>."""
  name = env
  if dataset_dirs and (name is None or ":" in name):
    parts = os.path.normpath(dataset_dirs[0]).split(os.sep)
    name = parts[-2] if rlds_reader._VERSION.match(parts[-1]) else parts[-1]  # <name>/<version> for TFDS dirs.
  return os.path.join("runs", f"{agent}_{name.replace(':', '_').replace('.', '_')}_seed{seed}")


# Options a launcher gives besides RunConfig's own fields (which it passes under their names), with defaults.
PREPARATION_OPTIONS = {
  "quality": "medium",  # Of the dataset generated when none is given.
  "dataset_episodes": 2000,  # Likewise.
  "preset": "laptop",  # Network and batch sizes (each agent's config.PRESETS).
  "config": (),  # Agent config overrides, NAME=VALUE strings (applied over the preset).
  "tfds_name": None,  # A prepared TFDS dataset NAME[/CONFIG][:VERSION], instead of dataset_dir...
  "tfds_data_dir": None,  # ...under this directory.
  "num_success_examples": 200,  # Sampled when the success examples come from the data.
}
# RunConfig fields that no launcher sets: measured from the data, or made from the options above.
DERIVED_FIELDS = ("overrides", "observation_stats", "dataset_spec", "action_scaling")


def option_names() -> List[str]:
  """Every option `prepare_run` takes: RunConfig's fields a launcher sets, then PREPARATION_OPTIONS."""
  own = [f.name for f in dataclasses.fields(run_config_lib.RunConfig) if f.name not in DERIVED_FIELDS]
  return own + list(PREPARATION_OPTIONS)


def prepare_run(shards_per_machine: Optional[int] = None, **options: Any) -> run_config_lib.RunConfig:
  """The RunConfig of a run (stored in its workdir), generating the dataset first when none is given.

  `options` are RunConfig's fields under their own names (a launcher's flags of the same names) and
  PREPARATION_OPTIONS; the RunConfig's defaults fill the rest. So a new run option is a RunConfig field and a flag
  of its name, nothing here. The dataset is `dataset_dir` (comma-separated directories are shards of one dataset)
  or the prepared TFDS dataset `tfds_name` under `tfds_data_dir`; without either, one is generated for `env`
  (default fetch_reach). `env` None means the dataset's own when laeo generated it, else none (then
  num_evaluators must be 0). With normalize_observations, the networks standardise vector observations with the
  dataset's per-dimension mean and std; a resumed run keeps the statistics, the dataset spec and the action
  scaling it started with. num_sgd_steps_per_step 0 picks AUTO_SGD_STEPS_PER_STEP by the kind of observation. A
  run whose last attempt diverged may change its agent config (recorded in `<workdir>/config_changes.jsonl`).
  The dataset must fit in memory: `shards_per_machine` of the `num_replay_shards` Reverb servers on one machine
  (default all of them). Every refusal comes before anything is written: a workdir of pickled checkpoints, NaN or
  infinity in the dataset or the success examples among them.
  """
  from data_pipeline import generate  # pylint: disable=g-import-not-at-top
  from data_pipeline import rlds_writer  # pylint: disable=g-import-not-at-top

  unknown = sorted(set(options) - set(option_names()))
  if unknown:
    raise ValueError(f"Unknown run options {unknown}; the options: {option_names()}.")
  options = {**PREPARATION_OPTIONS, **options}
  fields = {f.name for f in dataclasses.fields(run_config_lib.RunConfig)}
  config = run_config_lib.RunConfig(**{k: v for k, v in options.items() if k in fields})
  if config.success_examples and (config.success_key or config.success_from == "last_step"):
    raise ValueError("Give at most one of --success_examples and --success_key / --success_from=last_step.")
  from_data = bool(config.success_key) or config.success_from == "last_step"
  config.overrides = {
    **agents.preset(config.agent, options["preset"]),
    **run_config_lib.parse_overrides(options["config"]),
  }
  dirs = resolve_dataset_dirs(config.dataset_dir, options["tfds_name"], options["tfds_data_dir"])
  generated = dirs is None
  if generated:
    config.env = config.env or "fetch_reach"
    dirs = [
      os.path.abspath(default_dataset_dir(config.env, options["quality"], options["dataset_episodes"], config.seed))
    ]
  elif config.env is None:
    config.env = read_generated_env_name(dirs[0])
  config.dataset_dir = ",".join(dirs)
  config.workdir = os.path.abspath(config.workdir or default_workdir(config.agent, config.env, dirs, config.seed))
  auto_sgd_steps = config.num_sgd_steps_per_step == 0
  config.num_sgd_steps_per_step = max(config.num_sgd_steps_per_step, 1)  # 0 (auto) is resolved once the data is known.
  if from_data:
    config.success_examples = os.path.join(config.workdir, "success_examples.npy")
  elif config.success_examples:
    config.success_examples = os.path.abspath(config.success_examples)
  if config.image_size:
    config.image_size = list(step_format.parse_image_size(config.image_size))
  workdir, env = config.workdir, config.env
  config.validate()
  stored = run_config_lib.read_stored(workdir)  # An earlier start's, read once.
  if stored is not None:
    keep_fields_of_older_run(config, stored)
  changes = run_config_lib.check_run_config(config, stored)  # Before any slow work: refuse a mismatched workdir.
  checkpointing.for_run(workdir).check_format()
  if generated and not rlds_writer.is_dataset_dir(dirs[0]):
    quality, episodes = options["quality"], options["dataset_episodes"]
    print(f"No --dataset_dir given: generating {episodes} {quality} episodes of {env} in {dirs[0]}")
    summary = generate.generate_dataset(env, quality, episodes, dirs[0], config.seed)
    print(generate.summary_line(summary))
  previous = run_config_lib.RunConfig(**stored) if stored is not None else None
  if previous is not None and previous.dataset_spec is not None:
    for name in run_config_lib.RunConfig.DERIVED:
      setattr(config, name, getattr(previous, name))
    if changes:
      check_diverged_run_change(previous, config, changes)
  else:
    # One pass; also refuses a missing or damaged dataset, and NaN or infinity in it.
    measured = rlds_reader.measure(dirs, **config.read_options())
    spec = measured.spec
    if spec.num_skipped_episodes:
      print(f"Skipping {spec.num_skipped_episodes} episodes of fewer than two steps (no transition in them).")
    scaling = scaling_lib.resolve(config.action_bounds, spec.action_min, spec.action_max)
    config.dataset_spec = spec.to_dict()
    config.action_scaling = scaling.to_dict() if scaling else None
    if config.normalize_observations and measured.observation_stats is not None:
      config.observation_stats = measured.observation_stats
  spec = config.spec()
  padding = agents.make_config(config.agent, **config.overrides).torso_padding
  for field in config.observation_layout().images:
    if padding == "VALID" and min(field.shape[:2]) < MIN_IMAGE_SIZE:
      raise ValueError(
        f"{field.path!r} holds {field.shape} images; the conv torso (8x8, 4x4 and 3x3 unpadded convolutions) "
        f"needs at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} (--image_size); 'SAME' padding takes any size."
      )
  if auto_sgd_steps:
    config.num_sgd_steps_per_step = AUTO_SGD_STEPS_PER_STEP["image" if spec.has_images else "vector"]
  sampled = None
  if from_data and not os.path.exists(config.success_examples):
    sampled = success_examples_from_data(config, options["num_success_examples"])  # The dataset's own observations.
  else:
    check_success_examples(config)
  if env is not None:
    check_env_matches_dataset(config)
  config.validate()  # Again, now that the number of episodes is known.
  check_dataset_fits_in_memory(config, shards_per_machine=shards_per_machine)
  run_config_lib.save_run_config(config)
  if changes:
    print(record_config_change(config, changes))
  if sampled is not None:
    success_lib.save_success_examples(config.success_examples, sampled)
  return config
