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
on its own once the learner has counted `num_steps` (status 0), or when a peer it needs is gone: every
remote call has a time limit, and the learner watches its Reverb server (status 1, unless the run's final
checkpoint exists, i.e. the peer left after the run finished).
"""

import os
import sys
import threading
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

from agents.common import learner as learner_lib  # noqa: E402
from data_pipeline import reverb_pipeline  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import nodes  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402

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
flags.DEFINE_float("linger_s", 30.0, "learner and replay roles: seconds to keep serving after the last step.")
flags.DEFINE_float(
  "peer_timeout_s",
  60.0,
  "Seconds a remote call (or the learner's Reverb server) may go " "unanswered before this role gives up on its peer.",
)


def _client(address: str) -> courier.Client:
  return courier.Client(address, call_timeout=FLAGS.peer_timeout_s)


def _run_finished(config: run_config_lib.RunConfig) -> bool:
  return checkpointing.for_run(config.workdir).latest_step() >= config.num_steps


def _watch_reverb(address: str, timeout_s: float, poll_s: float = 5.0) -> None:
  """Ends this process (status 1) once the Reverb server has not answered for `timeout_s` seconds.

  A learner whose server is gone would otherwise wait for a sample forever.
  """
  client = reverb.Client(address)
  last_answer = time.time()
  while True:
    time.sleep(poll_s)
    try:
      client.server_info(timeout=poll_s)
      last_answer = time.time()
    except Exception:  # pylint: disable=broad-except
      if time.time() - last_answer > timeout_s:
        print(f"[learner] the Reverb server at {address} has not answered for {timeout_s:.0f} s; exiting", flush=True)
        os._exit(1)  # pylint: disable=protected-access


def _wait_until_done(counter, num_steps: int, poll_s: float = 1.0) -> None:
  while counter.get_counts().get("learner_steps", 0) < num_steps:
    time.sleep(poll_s)


def _require(**addresses):
  missing = [f"--{name}" for name, value in addresses.items() if not value]
  if missing:
    raise app.UsageError(f"--role={FLAGS.role} needs {', '.join(missing)}.")


def run_replay(config: run_config_lib.RunConfig) -> None:
  latest = checkpointing.for_run(config.workdir).latest()
  counter = nodes.make_counter(latest["counts"] if latest else {})
  counter_server = courier_utils.make_courier_server(counter, port=FLAGS.counter_port)
  counter_server.Start()
  spec = config.spec()
  signature = reverb_pipeline.spec_signature(spec)
  server = reverb.Server([reverb_pipeline.make_episode_table(spec.num_episodes, signature)], port=FLAGS.reverb_port)
  try:
    nodes.load_dataset_into_reverb(config, signature, reverb.Client(f"localhost:{FLAGS.reverb_port}"))
    _wait_until_done(counter, config.num_steps)
    time.sleep(FLAGS.linger_s)  # The evaluators read the final count before the counter goes away.
    print("[replay] learner finished; shutting down", flush=True)
  finally:
    server.stop()
    counter_server.Stop()


def run_learner(config: run_config_lib.RunConfig) -> None:
  _require(counter_address=FLAGS.counter_address, reverb_address=FLAGS.reverb_address)
  signature = reverb_pipeline.spec_signature(config.spec())
  threading.Thread(target=_watch_reverb, args=(FLAGS.reverb_address, FLAGS.peer_timeout_s), daemon=True).start()
  learner = nodes.LearnerWorker(config, signature, reverb.Client(FLAGS.reverb_address), _client(FLAGS.counter_address))
  server = courier_utils.make_courier_server(learner, port=FLAGS.learner_port)
  server.Start()
  try:
    learner.train()
    time.sleep(FLAGS.linger_s)  # Evaluators finish their round with the final parameters.
  except learner_lib.DivergenceError as e:
    sys.exit(f"error: {learner.describe_divergence(e)}")
  finally:
    server.Stop()


def run_evaluator(config: run_config_lib.RunConfig) -> None:
  _require(counter_address=FLAGS.counter_address, learner_address=FLAGS.learner_address)
  i = FLAGS.evaluator_id
  counter = _client(FLAGS.counter_address)
  evaluator = nodes.Evaluator(
    config, _client(FLAGS.learner_address), counter, f"evaluator_{i}", config.evaluator_seed(i)
  )
  try:
    evaluator.evaluate_until(lambda: counter.get_counts().get("learner_steps", 0) >= config.num_steps)
    evaluator.evaluate_round()  # The final parameters, while the learner lingers.
  except Exception:  # pylint: disable=broad-except
    if not _run_finished(config):
      raise  # A peer is gone before the run's end: a failure.
    print(f"[evaluator_{i}] a peer left after the run finished; exiting", flush=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.role or not FLAGS.run_config:
    raise app.UsageError("--role and --run_config are required.")
  config = run_config_lib.load_run_config(FLAGS.run_config)
  {"replay": run_replay, "learner": run_learner, "evaluator": run_evaluator}[FLAGS.role](config)


if __name__ == "__main__":
  app.run(main)
