"""Turns launcher flags into a RunConfig (generating a dataset when none is given) and launches it locally."""
import ast
import dataclasses
import os
import signal
import subprocess
import sys
from typing import Any, Dict, Sequence

from absl import app
from absl import flags

import launchpad as lp
from launchpad.nodes.python import local_multi_processing

import agents
from agents.common import networks as common_networks
from data_pipeline import generate
from data_pipeline import rlds_io
from launch import nodes
from launch import program as program_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Size presets, applied to whichever of these fields an agent's config has. 'paper' keeps the defaults
# (1024-wide networks, batch 1024, the Atari conv torso); 'laptop' is small enough to learn fetch_reach on a
# 2-core CPU, and its conv torso has half the channels (a quarter of the FLOPs) for image tasks.
PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "laptop": {"hidden_sizes": (256, 256), "policy_hidden_sizes": (256, 256), "critic_hidden_sizes": (256, 256),
               "classifier_hidden_sizes": (256, 256), "repr_dim": 64, "batch_size": 256,
               "torso_channels": common_networks.SMALL_CHANNELS},
}


# Updates per jitted learner call when the user names none: a scan of 10 small state updates saves ~15% of
# dispatch time; a scan of conv updates ran several times slower on XLA's CPU backend
# (results/throughput.md), so image runs make one update per call.
AUTO_SGD_STEPS_PER_STEP = {"vector": 10, "image": 1}


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
  if preset not in PRESETS:
    raise ValueError(f"Unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}.")
  fields = {f.name for f in dataclasses.fields(agents.config_class(agent))}
  return {k: v for k, v in PRESETS[preset].items() if k in fields}


def default_dataset_dir(env: str, quality: str, episodes: int, seed: int) -> str:
  return os.path.join("data", f"{env}_{quality}_{episodes}ep_seed{seed}")


def make_run_config(agent: str, env: str, dataset_dir: str, quality: str, dataset_episodes: int,
                    num_evaluators: int, num_steps: int, seed: int, workdir: str, episodes_per_eval: int,
                    eval_every: int, checkpoint_every: int, log_every: int, preset: str,
                    config_overrides: Sequence[str], normalize_observations: bool = True,
                    num_sgd_steps_per_step: int = 0) -> program_lib.RunConfig:
  """The RunConfig of a run (stored in its workdir), generating the dataset first when none is given.

  With normalize_observations, the networks standardise vector observations with the dataset's per-dimension
  mean and std (images are only scaled to [0, 1]); a resumed run keeps the statistics it started with.
  num_sgd_steps_per_step 0 picks AUTO_SGD_STEPS_PER_STEP by the kind of observation.
  """
  overrides = {**preset_overrides(agent, preset), **parse_overrides(config_overrides)}
  generated = dataset_dir is None
  if generated:
    dataset_dir = default_dataset_dir(env, quality, dataset_episodes, seed)
  if num_sgd_steps_per_step == 0:
    num_sgd_steps_per_step = AUTO_SGD_STEPS_PER_STEP["image" if "_image" in env else "vector"]
  config = program_lib.RunConfig(
      agent=agent, env=env, dataset_dir=os.path.abspath(dataset_dir), workdir=os.path.abspath(workdir),
      num_steps=num_steps, seed=seed, num_evaluators=num_evaluators, episodes_per_eval=episodes_per_eval,
      eval_every=eval_every,
      checkpoint_every=checkpoint_every, log_every=log_every, overrides=overrides,
      normalize_observations=normalize_observations, num_sgd_steps_per_step=num_sgd_steps_per_step)
  config.validate()
  program_lib.check_run_config(config)  # Before any slow work: refuse a mismatched workdir first.
  if generated and not rlds_io.is_dataset_dir(dataset_dir):
    print(f"No --dataset_dir given: generating {dataset_episodes} {quality} episodes of {env} in {dataset_dir}")
    summary = generate.generate_dataset(env, quality, dataset_episodes, dataset_dir, seed)
    print(generate.summary_line(summary))
  program_lib.check_dataset_matches_env(config.dataset_dir, env)  # Also fails clearly on a missing dataset.
  previous = program_lib.stored_run_config(config)
  if previous is not None:
    config.observation_stats = previous.observation_stats
  elif normalize_observations:
    config.observation_stats = rlds_io.dataset_observation_stats(config.dataset_dir)
  program_lib.save_run_config(config)
  return config


class NodeFailure(RuntimeError):
  """A node of the program failed; the message holds its traceback."""


def launch_program(config: program_lib.RunConfig, terminal: str = "current_terminal") -> None:
  """Launches every node as a local process and blocks until the program stops (in this process)."""
  program = program_lib.make_program(config)
  # Only the learner may use an accelerator; the other processes stay on the CPU.
  cpu_only = local_multi_processing.PythonProcess(env={"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""})
  resources = {group: cpu_only for group in program.groups if group != "learner"}
  manager = lp.launch(program, launch_type=lp.LaunchType.LOCAL_MULTI_PROCESSING, terminal=terminal,
                      local_resources=resources)
  manager.wait()


def launch_locally(config: program_lib.RunConfig) -> None:
  """Runs the program under a separate launcher process and reports how it ended.

  Launchpad's launcher SIGKILLs itself when a node does not stop within its notice period (e.g. a learner
  still waiting for data when a failing loader stops the program), so it runs in a child process and this
  one reports the failure the nodes recorded. Raises NodeFailure if a node failed or the launcher died.
  """
  failures = os.path.join(config.workdir, nodes.FAILURE_FILE)
  if os.path.exists(failures):
    os.remove(failures)  # From an earlier attempt of this run.
  command = [sys.executable, "-m", "launch.run", f"--run_config={program_lib.run_config_path(config)}"]
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle.
  try:
    returncode = subprocess.Popen(command, cwd=_ROOT).wait()
  finally:
    signal.signal(signal.SIGINT, previous)
  if os.path.exists(failures):
    with open(failures) as f:
      raise NodeFailure(f"A node failed and the run stopped early (details in {failures}):\n{f.read()}")
  if returncode != 0:
    raise NodeFailure(f"The Launchpad launcher exited with code {returncode}.")
  print(f"Run finished. Logs: {config.workdir}/logs, TensorBoard: {config.workdir}/tb, "
        f"checkpoints: {config.workdir}/checkpoints")


def main(argv):
  """Entry point of the launcher process started by `launch_locally`."""
  del argv
  launch_program(program_lib.load_run_config(flags.FLAGS.run_config))


if __name__ == "__main__":
  flags.DEFINE_string("run_config", None, "run_config.json of the run to launch.")
  app.run(main)
