"""Runs one role of a run on this host, talking to the other hosts at explicit addresses.

The same workers as the local program (launch/nodes.py), served with Launchpad's courier servers and a
Reverb server on fixed ports, so the roles can live on different machines of a cluster:

  # host A (10.0.0.1): counter on :9001, Reverb on :9002, loads the dataset into Reverb.
  python launch/distributed.py --role=replay --run_config=RUN.json --counter_port=9001 --reverb_port=9002
  # host B: the learner, serving parameters on :9003.
  python launch/distributed.py --role=learner --run_config=RUN.json --counter_address=10.0.0.1:9001 \
      --reverb_address=10.0.0.1:9002 --learner_port=9003
  # hosts C, D, ...: evaluators.
  python launch/distributed.py --role=evaluator --run_config=RUN.json --counter_address=10.0.0.1:9001 \
      --learner_address=10.0.0.2:9003 --evaluator_id=0

RUN.json is a run config as written by `launch/local.py` into its workdir (`run_config.json`); the dataset and
workdir paths in it must be readable/writable on every host (e.g. a shared file system). Every role exits
on its own once the learner has counted `num_steps`.
"""
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import courier  # noqa: E402
import reverb  # noqa: E402
from launchpad.nodes.courier import courier_utils  # noqa: E402

from data_pipeline import reverb_pipeline  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import nodes  # noqa: E402
from launch import program as program_lib  # noqa: E402

ROLES = ("replay", "learner", "evaluator")
FLAGS = flags.FLAGS
flags.DEFINE_enum("role", None, ROLES, "Which part of the run this host runs.")
flags.DEFINE_string("run_config", None, "run_config.json describing the run.")
flags.DEFINE_integer("counter_port", 9001, "replay role: port of the counter's courier server.")
flags.DEFINE_integer("reverb_port", 9002, "replay role: port of the Reverb server.")
flags.DEFINE_integer("learner_port", 9003, "learner role: port of the learner's courier server.")
flags.DEFINE_string("counter_address", None, "host:port of the counter (learner and evaluator roles).")
flags.DEFINE_string("reverb_address", None, "host:port of the Reverb server (learner role).")
flags.DEFINE_string("learner_address", None, "host:port of the learner (evaluator role).")
flags.DEFINE_integer("evaluator_id", 0, "evaluator role: index, used for its seed and log label.")
flags.DEFINE_float("linger_s", 30.0, "learner role: seconds to keep serving parameters after the last step.")


def _wait_until_done(counter, num_steps: int, poll_s: float = 1.0) -> None:
  while counter.get_counts().get("learner_steps", 0) < num_steps:
    time.sleep(poll_s)


def _require(**addresses):
  missing = [f"--{name}" for name, value in addresses.items() if not value]
  if missing:
    raise app.UsageError(f"--role={FLAGS.role} needs {', '.join(missing)}.")


def run_replay(config: program_lib.RunConfig) -> None:
  latest = checkpointing.Checkpointer(os.path.join(config.workdir, "checkpoints")).latest()
  counter = nodes.make_counter(latest["counts"] if latest else {})
  counter_server = courier_utils.make_courier_server(counter, port=FLAGS.counter_port)
  counter_server.Start()
  num_episodes, signature = reverb_pipeline.dataset_signature(config.dataset_dir)
  server = reverb.Server([reverb_pipeline.make_episode_table(num_episodes, signature)], port=FLAGS.reverb_port)
  try:
    nodes.load_dataset_into_reverb(config.dataset_dir, reverb.Client(f"localhost:{FLAGS.reverb_port}"))
    _wait_until_done(counter, config.num_steps)
    print("[replay] learner finished; shutting down", flush=True)
  finally:
    server.stop()
    counter_server.Stop()


def run_learner(config: program_lib.RunConfig) -> None:
  _require(counter_address=FLAGS.counter_address, reverb_address=FLAGS.reverb_address)
  _, signature = reverb_pipeline.dataset_signature(config.dataset_dir)
  learner = nodes.LearnerWorker(
      config.agent, config.overrides, config.env, config.dataset_dir, signature,
      reverb.Client(FLAGS.reverb_address), courier.Client(FLAGS.counter_address), config.workdir,
      config.num_steps, config.seed, config.checkpoint_every, config.log_every, config.observation_stats,
      config.num_sgd_steps_per_step)
  server = courier_utils.make_courier_server(learner, port=FLAGS.learner_port)
  server.Start()
  try:
    learner.train()
    time.sleep(FLAGS.linger_s)  # Evaluators finish their round with the final parameters.
  finally:
    server.Stop()


def run_evaluator(config: program_lib.RunConfig) -> None:
  _require(counter_address=FLAGS.counter_address, learner_address=FLAGS.learner_address)
  i = FLAGS.evaluator_id
  evaluator = nodes.Evaluator(
      config.agent, config.overrides, config.env, courier.Client(FLAGS.learner_address),
      courier.Client(FLAGS.counter_address), config.workdir, config.seed + 1000 * (i + 1),
      config.episodes_per_eval, config.eval_every, f"evaluator_{i}", config.observation_stats)
  counter = courier.Client(FLAGS.counter_address)
  evaluator.evaluate_until(lambda: counter.get_counts().get("learner_steps", 0) >= config.num_steps)
  evaluator.evaluate_round()  # The final parameters, while the learner lingers.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.role or not FLAGS.run_config:
    raise app.UsageError("--role and --run_config are required.")
  config = program_lib.load_run_config(FLAGS.run_config)
  {"replay": run_replay, "learner": run_learner, "evaluator": run_evaluator}[FLAGS.role](config)


if __name__ == "__main__":
  app.run(main)
