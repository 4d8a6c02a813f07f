"""The workers of a run, each built inside its own Launchpad process.

- `load_dataset_into_reverb` reads the RLDS dataset (TFDS directory) once and inserts every episode into the Reverb
  server of its replay shard.
- `LearnerWorker` samples batches from Reverb, runs the agent's learner, logs, checkpoints, counts
  `learner_steps` and serves the latest parameters (an acme VariableSource over courier). It stops the run at
  the first NaN or infinity in the learner's metrics or state, before any checkpoint holds it.
- `Evaluator` pulls the latest policy parameters and rolls them out in the MuJoCo environment, logging the
  success rate (the task holds at any step, the authors' metric) and the final-step success rate.
"""

import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import courier
import jax
import launchpad as lp
import numpy as np
from acme import core
from acme.utils import counting
from launchpad import address as lp_address
from launchpad.launch import worker_manager

from agents.common import learner as learner_lib
from data_pipeline import batches
from data_pipeline import rlds_reader
from launch import checkpointing
from launch import failures
from launch import loggers
from launch import rollout
from launch import run_config as run_config_lib
from launch import terminal
from launch import variable_client
from launch import video


# Seconds an evaluator waits for its round to stop at the program's stop (the supervisor's grace is 20).
EVALUATOR_STOP_S = 10.0

# The calls each courier server of a run answers: those the run's own peers make (the learner counts steps and
# everyone reads the counts; evaluators fetch the learner's parameters). Nothing else, e.g. the learner's run() or
# train() (a second training loop) or the counter's restore(), is reachable over the network. No authentication:
# whoever reaches a port may make these calls.
SERVED = {"counter": ("get_counts", "increment"), "learner": ("get_variables",), "none": ()}


def bind_served(server: courier.Server, instance: Any, kind: str) -> None:
  """Binds to `server` the methods of `instance` that SERVED[kind] names, and only those."""
  for name in SERVED[kind]:
    server.Bind(name, getattr(instance, name))


class ServedCourierNode(lp.CourierNode):
  """A CourierNode whose server answers only SERVED[kind] (Launchpad's binds every public method of the instance)."""

  def __init__(self, kind: str, constructor: Callable[..., Any], *args):
    super().__init__(constructor, *args)
    self._kind = kind

  def run(self) -> None:
    instance = self._construct_instance()
    server = courier.Server(port=lp_address.get_port_from_address(self._address.resolve()))
    bind_served(server, instance, self._kind)
    server.Start()
    try:
      if hasattr(instance, "run") and self._should_run:
        instance.run()
      else:
        worker_manager.wait_for_stop()
    finally:
      server.Stop()
      server.Join()


def make_counter(counts: Optional[Dict[str, float]] = None) -> counting.Counter:
  """The run's central counter, restored from the last checkpoint's counts when resuming."""
  counter = counting.Counter(time_delta=0.0)
  if counts:
    counter.restore({"counts": dict(counts), "cache": {}})
  return counter


def load_dataset_into_reverb(
  config: run_config_lib.RunConfig,
  episode_signature: Dict[str, Any],
  reverb_clients: Sequence[Any],
  shards: Optional[Sequence[int]] = None,
) -> None:
  """Inserts the episodes of the run's replay `shards` (default all; the clients in the same order), as the
  learners read them (rlds_reader) and padded to the table's signature, into their Reverb servers. Streamed: one
  episode in memory at once."""
  shards = range(config.num_replay_shards) if shards is None else shards
  episodes = rlds_reader.iter_episodes(config.dataset_dirs, scaling=config.scaling(), **config.read_options())
  counts = batches.insert_sharded_episodes(
    {k: c.server_address for k, c in zip(shards, reverb_clients)},
    episodes,
    episode_signature,
    config.num_replay_shards,
  )
  where = ", ".join(f"{n} into shard {k}" for k, n in counts.items())
  print(f"[dataset_loader] inserted episodes from {config.dataset_dir}: {where}", flush=True)


class LearnerWorker(core.VariableSource):
  """Runs the run's `num_steps` learner updates in total (counting steps restored from a checkpoint)."""

  def __init__(
    self,
    config: run_config_lib.RunConfig,
    episode_signature: Dict[str, Any],
    reverb_clients: Sequence[Any],
    counter: Any,
  ):
    self._counter = counter
    self._config = config
    self._checkpointer = checkpointing.for_run(config.workdir)
    restored = self._checkpointer.latest()
    self._start_step = restored["step"] if restored else 0
    self._last_checkpoint = self._start_step
    # A restarted learner may have counted steps past its last checkpoint: count from the checkpoint again,
    # so that the evaluators and the steps limiter see the steps this learner really holds.
    counted = int(counter.get_counts().get("learner_steps", 0))
    if counted != self._start_step:
      counter.increment(learner_steps=self._start_step - counted)

    builder = config.make_builder()
    networks = builder.make_networks(*config.specs(), config.observation_stats)
    # A resumed run draws a fresh batch stream rather than replaying the first one.
    iterator = batches.make_reverb_iterator(
      [c.server_address for c in reverb_clients],
      episode_signature,
      builder.batch_kind,
      builder.config.batch_size,
      builder.config.discount,
      seed=config.seed + self._start_step,
      episode_reuse=config.episode_reuse,
      num_episodes=config.spec().num_episodes,
    )
    # Metrics of every `log_every`-th step; the learner's own count starts where the checkpoint left off.
    logger = loggers.EveryNSteps(
      # No terminal line: the progress line says where the learner is; its metrics are in CSV and TensorBoard.
      loggers.make_logger(config, "learner", steps_key="learner_steps", print_every_s=None),
      "learner_steps",
      config.log_every,
    )
    self._learner = builder.make_learner(
      networks,
      iterator,
      config.load_success_examples(),
      jax.random.PRNGKey(config.seed),
      counter=make_counter({"learner_steps": self._start_step}),
      logger=logger,
    )
    if restored:
      self._learner.restore(restored["learner"])
      print(f"[learner] resumed from step {self._start_step}", flush=True)

  def get_variables(self, names: Sequence[str]) -> List[Any]:
    # Plain numpy arrays travel over courier; device arrays do not.
    return jax.device_get(self._learner.get_variables(names))

  def run(self):
    """Launchpad entry point: trains, then keeps serving parameters until the program is stopped."""
    with failures.stop_program_on_failure(self._config.workdir, "learner"):
      try:
        self.train(lp.stop_event().is_set)
      except learner_lib.DivergenceError as e:
        failures.stop_program(self._config.workdir, "learner", self.describe_divergence(e))
    lp.wait_for_stop()

  def describe_divergence(self, error: learner_lib.DivergenceError) -> str:
    divergence = {"step": error.step, "non_finite": error.non_finite, "last_checkpoint": self._last_checkpoint}
    return failures.describe_divergence(divergence, self._config.num_steps)

  def _checkpoint(self, step: int) -> None:
    state = self._learner.save()
    learner_lib.check_finite(state, step)  # A checkpoint never holds a diverged state.
    self._checkpointer.save(step, state, {"learner_steps": step})
    self._last_checkpoint = step

  def train(self, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Runs the remaining learner steps; returns the final step.

    Stopped early (e.g. Ctrl-C), it checkpoints the step it reached so that a restart loses nothing. At the
    first NaN or infinity in the learner's metrics or state it records the divergence in the workdir
    (failures.record_divergence) and raises DivergenceError, with no checkpoint written from that step on.
    """
    try:
      return self._train(should_stop)
    except learner_lib.DivergenceError as e:
      failures.record_divergence(self._config.workdir, e.step, e.non_finite, self._last_checkpoint)
      raise

  def _train(self, should_stop: Callable[[], bool]) -> int:
    synced = self._start_step
    step = self._start_step
    started = time.time()
    while step < self._config.num_steps:
      if should_stop():
        if step > self._start_step:
          self._checkpoint(step)
          print(f"[learner] stopped at step {step}; checkpoint saved", flush=True)
        return step
      # Several updates per call, cut so that every checkpoint and log step is reached exactly.
      updates = min(
        self._config.num_sgd_steps_per_step,
        self._config.num_steps - step,
        self._config.log_every - step % self._config.log_every,
        self._config.checkpoint_every - step % self._config.checkpoint_every,
      )
      self._learner.step(updates)
      step += updates
      if step % self._config.checkpoint_every == 0 or step == self._config.num_steps:
        self._checkpoint(step)
      # The last increment comes after the final checkpoint: the steps limiter stops the program on it.
      if step % self._config.log_every == 0 or step == self._config.num_steps:
        self._counter.increment(learner_steps=step - synced)
        synced = step
        rate = (step - self._start_step) / max(time.time() - started, 1e-9)
        eta = terminal.format_duration((self._config.num_steps - step) / max(rate, 1e-9))
        print(f"[learner] step {step}/{self._config.num_steps} ({rate:.1f} steps/s, ETA {eta})", flush=True)
    return step


class Evaluator:
  """Evaluates the latest policy for `episodes_per_eval` episodes every `eval_every` learner steps."""

  def __init__(
    self,
    config: run_config_lib.RunConfig,
    learner: Any,
    counter: Any,
    label: str,
    seed: int,
    episodes_per_eval: Optional[int] = None,
  ):
    self._config = config
    self._env_seed = seed
    self._env = None  # Made on the thread that renders: an OpenGL context belongs to one thread.
    self._workdir = config.workdir
    self._label = label
    builder = config.make_builder()
    networks = builder.make_networks(*config.specs(), config.observation_stats)
    self._policy = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
    self._variables = variable_client.VariableClient(learner, "policy")
    self._counter = counter
    self._episodes_per_eval = episodes_per_eval or config.episodes_per_eval
    self._eval_every = config.eval_every
    self._video_every = config.video_every
    self._rounds = 0
    self._key = jax.random.PRNGKey(seed)
    self._logger = loggers.make_logger(config, label, steps_key="learner_steps", print_every_s=0.0)

  def _learner_steps(self) -> int:
    return int(self._counter.get_counts().get("learner_steps", 0))

  def _make_env(self) -> None:
    if self._env is None:
      self._env = rollout.make_evaluation_env(self._config, self._env_seed)

  def close(self) -> None:
    """Frees the environment (and its GL context): call on the thread that rendered with it."""
    if self._env is not None:
      self._env.close()
      self._env = None

  def run_episode(self, params, frames: Optional[List[np.ndarray]] = None) -> Tuple[bool, bool]:
    """One deterministic-policy episode; returns (success at any step, success at the final step)."""
    self._make_env()
    any_step, final, self._key = rollout.run_episode(self._env, self._policy, params, self._key, frames)
    return any_step, final

  def evaluate_round(
    self, should_stop: Callable[[], bool] = lambda: False, record_video: Optional[bool] = None
  ) -> Optional[Dict[str, float]]:
    """One round with the latest parameters; returns its logged row (None if stopped midway, or if the parameters
    hold NaN or infinity: a diverged policy is not evaluated).

    Its first episode is written as a GIF to <workdir>/videos/ on every `video_every`-th round (or when
    `record_video`).
    """
    learner_steps = self._learner_steps()
    self._make_env()
    if record_video is None:
      record_video = self._video_every > 0 and self._rounds % self._video_every == 0
    record_video = record_video and self._env.can_render
    self._rounds += 1
    self._variables.update_and_wait()
    bad = learner_lib.non_finite(self._variables.params)
    if bad:
      what = ", ".join(f"{name} is {value}" for name, value in bad.items())
      print(
        f"[{self._label}] not evaluating the diverged parameters of learner step {learner_steps}: {what}", flush=True
      )
      return None
    outcomes = []
    while len(outcomes) < self._episodes_per_eval:
      if should_stop():
        return None
      frames = [] if record_video and not outcomes else None
      outcomes.append(self.run_episode(self._variables.params, frames))
      if frames:
        video.write_gif(frames, video.video_path(self._workdir, self._label, learner_steps))
    any_step, final = np.mean(outcomes, axis=0)
    row = {
      "learner_steps": learner_steps,
      "success_rate": float(any_step),
      "success_rate_final_step": float(final),
      "episodes": len(outcomes),
    }
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
      finally:
        self.close()

    worker = threading.Thread(target=evaluate, daemon=True)
    worker.start()
    while not stop.wait(1.0) and worker.is_alive():
      pass
    # The worker stops between episodes and frees its GL context itself. Exiting while it still renders let
    # the exit handlers free that context under it: a segfault at the end of about 4 runs in 10.
    worker.join(EVALUATOR_STOP_S)
    if worker.is_alive():
      print(f"[{self._label}] evaluation did not stop within {EVALUATOR_STOP_S:.0f} s; exiting anyway", flush=True)
    if errors:
      with failures.stop_program_on_failure(self._workdir, self._label):
        raise errors[0]
