"""The workers of a run, each built inside its own Launchpad process.

- `load_dataset_into_reverb` reads the RLDS dataset (TFDS directory) once and inserts every episode into Reverb.
- `LearnerWorker` samples batches from Reverb, runs the agent's learner, logs, checkpoints, counts
  `learner_steps` and serves the latest parameters (an acme VariableSource over courier).
- `Evaluator` pulls the latest policy parameters and rolls them out in the MuJoCo environment, logging the
  success rate (the task holds at any step, the authors' metric) and the final-step success rate.
"""
import contextlib
import os
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import launchpad as lp
import numpy as np
from acme import core
from acme.utils import counting
from acme.utils import loggers as acme_loggers
from acme.utils.loggers import tf_summary

import agents
import environments
from data_pipeline import reverb_pipeline
from data_pipeline import rlds_io
from data_pipeline import success_examples as success_lib
from launch import checkpointing
from launch import rollout
from launch import variable_client


def make_logger(workdir: str, label: str, steps_key: str, print_every_s: float = 10.0) -> acme_loggers.Logger:
  """CSV (`<workdir>/logs/<label>/logs.csv`), TensorBoard (`<workdir>/tb/<label>`) and a terminal line."""
  return acme_loggers.Dispatcher([
      acme_loggers.CSVLogger(workdir, label=label, add_uid=False, flush_every=1),
      tf_summary.TFSummaryLogger(os.path.join(workdir, "tb", label), label=label, steps_key=steps_key),
      acme_loggers.TerminalLogger(label=label, time_delta=print_every_s, print_fn=print),
  ])


class EveryNSteps(acme_loggers.Logger):
  """Passes on the writes whose `steps_key` count is a multiple of `every`."""

  def __init__(self, to: acme_loggers.Logger, steps_key: str, every: int):
    self._to, self._steps_key, self._every = to, steps_key, every

  def write(self, data):
    if int(data[self._steps_key]) % self._every == 0:
      self._to.write(data)

  def close(self):
    self._to.close()


FAILURE_FILE = "node_failures.txt"


@contextlib.contextmanager
def stop_program_on_failure(workdir: str, node: str):
  """Records a node's error in `<workdir>/node_failures.txt` and stops the whole program.

  Launchpad's local launcher in the current terminal cannot see its nodes' exit codes, so without this a
  crashed learner would leave the other processes running forever.
  """
  try:
    yield
  except Exception:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, FAILURE_FILE), "a") as f:
      f.write(f"[{node}] {traceback.format_exc()}\n")
    lp.stop()
    raise


def guarded(workdir: str, node: str, make: Callable[..., Any], *args) -> Any:
  """`make(*args)` under `stop_program_on_failure` (for constructing Launchpad nodes)."""
  with stop_program_on_failure(workdir, node):
    return make(*args)


def make_counter(counts: Optional[Dict[str, float]] = None) -> counting.Counter:
  """The run's central counter, restored from the last checkpoint's counts when resuming."""
  counter = counting.Counter(time_delta=0.0)
  if counts:
    counter.restore({"counts": dict(counts), "cache": {}})
  return counter


def load_dataset_into_reverb(dataset_dir: str, reverb_client: Any) -> None:
  """Inserts every episode of the dataset into the Reverb episode table (without success flags)."""
  episodes = rlds_io.load_episodes(dataset_dir, include_success=False)
  count = reverb_pipeline.insert_episodes(reverb_client.server_address, episodes)
  print(f"[dataset_loader] inserted {count} episodes from {dataset_dir} into Reverb", flush=True)


def _specs(env_name: str):
  env = environments.make(env_name, seed=0)
  try:
    return env.observation_spec(), env.action_spec()
  finally:
    env.close()


class LearnerWorker(core.VariableSource):
  """Runs `num_steps` learner updates in total (counting steps restored from a checkpoint)."""

  def __init__(self, agent: str, overrides: Dict[str, Any], env_name: str, dataset_dir: str,
               episode_signature: Dict[str, Any], reverb_client: Any, counter: Any, workdir: str,
               num_steps: int, seed: int, checkpoint_every: int, log_every: int,
               observation_stats: Optional[Dict[str, List[float]]] = None, num_sgd_steps_per_step: int = 1):
    self._counter = counter
    self._num_sgd_steps_per_step = num_sgd_steps_per_step
    self._num_steps = num_steps
    self._checkpoint_every = checkpoint_every
    self._log_every = log_every
    self._workdir = workdir
    self._checkpointer = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"))
    restored = self._checkpointer.latest()
    self._start_step = restored["step"] if restored else 0

    builder = agents.make_builder(agent, **overrides)
    observation_spec, action_spec = _specs(env_name)
    networks = builder.make_networks(observation_spec, action_spec, observation_stats)
    # A resumed run draws a fresh batch stream rather than replaying the first one.
    iterator = reverb_pipeline.make_reverb_iterator(
        reverb_client.server_address, episode_signature, builder.batch_kind, builder.config.batch_size,
        builder.config.discount, seed=seed + self._start_step)
    # Metrics of every `log_every`-th step; the learner's own count starts where the checkpoint left off.
    logger = EveryNSteps(make_logger(workdir, "learner", steps_key="learner_steps"), "learner_steps", log_every)
    self._learner = builder.make_learner(
        networks, iterator, success_lib.load_success_examples(dataset_dir), jax.random.PRNGKey(seed),
        counter=make_counter({"learner_steps": self._start_step}), logger=logger)
    if restored:
      self._learner.restore(restored["learner"])
      print(f"[learner] resumed from step {self._start_step}", flush=True)

  def get_variables(self, names: Sequence[str]) -> List[Any]:
    # Plain numpy arrays travel over courier; device arrays do not.
    return jax.device_get(self._learner.get_variables(names))

  def run(self):
    """Launchpad entry point: trains, then keeps serving parameters until the program is stopped."""
    with stop_program_on_failure(self._workdir, "learner"):
      self.train(lp.stop_event().is_set)
    lp.wait_for_stop()

  def train(self, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Runs the remaining learner steps; returns the final step.

    Stopped early (e.g. Ctrl-C), it checkpoints the step it reached so that a restart loses nothing.
    """
    synced = self._start_step
    step = self._start_step
    started = time.time()
    while step < self._num_steps:
      if should_stop():
        if step > self._start_step:
          self._checkpointer.save(step, self._learner.save(), {"learner_steps": step})
        return step
      # Several updates per call, cut so that every checkpoint and log step is reached exactly.
      updates = min(self._num_sgd_steps_per_step, self._num_steps - step,
                    self._log_every - step % self._log_every,
                    self._checkpoint_every - step % self._checkpoint_every)
      self._learner.step(updates)
      step += updates
      if step % self._checkpoint_every == 0 or step == self._num_steps:
        self._checkpointer.save(step, self._learner.save(), {"learner_steps": step})
      # The last increment comes after the final checkpoint: the steps limiter stops the program on it.
      if step % self._log_every == 0 or step == self._num_steps:
        self._counter.increment(learner_steps=step - synced)
        synced = step
        rate = (step - self._start_step) / max(time.time() - started, 1e-9)
        print(f"[learner] step {step}/{self._num_steps} ({rate:.1f} steps/s)", flush=True)
    return step


class Evaluator:
  """Evaluates the latest policy for `episodes_per_eval` episodes every `eval_every` learner steps."""

  def __init__(self, agent: str, overrides: Dict[str, Any], env_name: str, learner: Any, counter: Any,
               workdir: str, seed: int, episodes_per_eval: int, eval_every: int, label: str,
               observation_stats: Optional[Dict[str, List[float]]] = None):
    self._env_name = env_name
    self._env_seed = seed
    self._env = None  # Made on the thread that renders: an OpenGL context belongs to one thread.
    self._workdir = workdir
    self._label = label
    builder = agents.make_builder(agent, **overrides)
    networks = builder.make_networks(*_specs(env_name), observation_stats)
    self._policy = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
    self._variables = variable_client.VariableClient(learner, "policy")
    self._counter = counter
    self._episodes_per_eval = episodes_per_eval
    self._eval_every = eval_every
    self._key = jax.random.PRNGKey(seed)
    self._logger = make_logger(workdir, label, steps_key="learner_steps", print_every_s=0.0)

  def _learner_steps(self) -> int:
    return int(self._counter.get_counts().get("learner_steps", 0))

  def run_episode(self, params) -> Tuple[bool, bool]:
    """One deterministic-policy episode; returns (success at any step, success at the final step)."""
    if self._env is None:
      self._env = environments.make(self._env_name, seed=self._env_seed)
    any_step, final, self._key = rollout.run_episode(self._env, self._policy, params, self._key)
    return any_step, final

  def evaluate_round(self, should_stop: Callable[[], bool] = lambda: False) -> Optional[Dict[str, float]]:
    """One round with the latest parameters; returns its logged row (None if stopped midway)."""
    learner_steps = self._learner_steps()
    self._variables.update_and_wait()
    outcomes = []
    while len(outcomes) < self._episodes_per_eval:
      if should_stop():
        return None
      outcomes.append(self.run_episode(self._variables.params))
    any_step, final = np.mean(outcomes, axis=0)
    row = {"learner_steps": learner_steps, "success_rate": float(any_step),
           "success_rate_final_step": float(final), "episodes": len(outcomes)}
    self._logger.write(row)
    return row

  def evaluate_until(self, should_stop: Callable[[], bool], poll_s: float = 1.0) -> None:
    """A round now, then one each time the learner has advanced `eval_every` steps, until `should_stop()`."""
    next_round = 0
    while not should_stop():
      steps = self._learner_steps()
      if steps < next_round:
        time.sleep(poll_s)  # Leave the CPU to the learner between rounds.
        continue
      next_round = steps + self._eval_every
      self.evaluate_round(should_stop)

  def run(self):
    """Launchpad entry point: evaluates until the program is stopped.

    Evaluation runs in a daemon thread so that a call to a learner or counter that is already gone cannot
    hold this process past the program's stop; an error in it still fails the node.
    """
    errors = []
    stop = lp.stop_event()  # Only reachable from the node's own thread.

    def evaluate():
      try:
        self.evaluate_until(stop.is_set)
      except Exception as e:  # pylint: disable=broad-except
        errors.append(e)

    worker = threading.Thread(target=evaluate, daemon=True)
    worker.start()
    while not stop.wait(1.0) and worker.is_alive():
      pass
    if errors:
      with stop_program_on_failure(self._workdir, self._label):
        raise errors[0]
