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

With --rendezvous_dir instead of ports and addresses (as launch/slurm.py runs them), every role serves on free
ports of its host, publishes its host:port in that directory and finds its peers' there. Replay may be sharded
(the run's num_replay_shards): one replay role per shard (--shard_index), the first also serving the counter.

Each server binds only the calls the run's peers make (nodes.SERVED); courier and Reverb servers carry no
authentication and listen on every interface of their host.

RUN.json is a run config as written by `launch/local.py` into its workdir (`run_config.json`); the dataset and
workdir paths in it must be readable/writable on every host (e.g. a shared file system). Every role exits
on its own once the learner has counted `num_steps` (status 0), or when a peer it needs is gone: every
remote call has a time limit, and the learner watches its Reverb server (status 1, unless the run's final
checkpoint exists, i.e. the peer left after the run finished).
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from typing import Any, Optional, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import courier  # noqa: E402
import reverb  # noqa: E402

from agents.common import learner as learner_lib  # noqa: E402
from data_pipeline import batches  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import failures  # noqa: E402
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
flags.DEFINE_string(
  "reverb_address", None, "host:port of the Reverb server (learner role); one per replay shard, comma-separated."
)
flags.DEFINE_integer("shard_index", 0, "replay role: which of the run's num_replay_shards this host serves.")
flags.DEFINE_string(
  "rendezvous_dir",
  None,
  "Instead of fixed ports and addresses: serve on free ports, publish host:port here (a directory every host "
  "reads) and find the peers here.",
)
flags.DEFINE_float("rendezvous_timeout_s", 600.0, "Seconds to wait for a peer's address to appear in --rendezvous_dir.")
flags.DEFINE_string("learner_address", None, "host:port of the learner (evaluator role).")
flags.DEFINE_integer("evaluator_id", 0, "evaluator role: index, used for its seed and log label.")
flags.DEFINE_float(
  "stop_grace_s", 20.0, "replay role: seconds it keeps serving after SIGTERM, until the learner has checkpointed."
)
flags.DEFINE_float("linger_s", 30.0, "learner and replay roles: seconds to keep serving after the last step.")
flags.DEFINE_float(
  "peer_timeout_s",
  60.0,
  "Seconds a remote call (or the learner's Reverb server) may go " "unanswered before this role gives up on its peer.",
)


def serve(instance: Any, kind: str, port: Optional[int] = None) -> courier.Server:
  """A started courier server of `instance` answering only nodes.SERVED[kind] (port None: a free one)."""
  server = courier.Server(port=port)
  nodes.bind_served(server, instance, kind)
  server.Start()
  return server


def _client(address: str) -> courier.Client:
  return courier.Client(address, call_timeout=FLAGS.peer_timeout_s)


def _publish(name: str, **ports: int) -> None:
  """Writes {what: host:port} of this role to the rendezvous directory (atomically: readers never see half)."""
  host = socket.gethostname()
  path = os.path.join(FLAGS.rendezvous_dir, f"{name}.json")
  with open(path + ".tmp", "w") as f:
    json.dump({what: f"{host}:{port}" for what, port in ports.items()}, f)
  os.replace(path + ".tmp", path)


def _lookup(name: str, what: str, poll_s: float = 1.0) -> str:
  """The address `what` that role `name` published, waiting for it up to --rendezvous_timeout_s."""
  path = os.path.join(FLAGS.rendezvous_dir, f"{name}.json")
  deadline = time.time() + FLAGS.rendezvous_timeout_s
  while not os.path.exists(path):
    if time.time() > deadline:
      raise TimeoutError(
        f"{name} published no address in {FLAGS.rendezvous_dir} within {FLAGS.rendezvous_timeout_s} s."
      )
    time.sleep(poll_s)
  with open(path) as f:
    return json.load(f)[what]


def _counter_address() -> str:
  return _lookup("replay_0", "counter") if FLAGS.rendezvous_dir else FLAGS.counter_address


def _reverb_addresses(config: run_config_lib.RunConfig) -> Sequence[str]:
  if FLAGS.rendezvous_dir:
    return [_lookup(f"replay_{k}", "reverb") for k in range(config.num_replay_shards)]
  addresses = FLAGS.reverb_address.split(",")
  if len(addresses) != config.num_replay_shards:
    raise app.UsageError(
      f"--reverb_address names {len(addresses)} servers; the run has num_replay_shards={config.num_replay_shards}."
    )
  return addresses


def _run_finished(config: run_config_lib.RunConfig) -> bool:
  return checkpointing.for_run(config.workdir).latest_step() >= config.num_steps


def _accepts_connections(address: str, timeout_s: float) -> bool:
  host, port = address.rsplit(":", 1)
  try:
    with socket.create_connection((host, int(port)), timeout=timeout_s):
      return True
  except OSError:
    return False


def _watch_reverb(addresses: Sequence[str], timeout_s: float, poll_s: float = 5.0) -> None:
  """Ends this process (status 1) once a Reverb server has not accepted a connection for `timeout_s` seconds.

  A learner whose server is gone would otherwise wait for a sample forever. A connection, not a call: a server
  busy serving samples on a loaded host answered no server_info() for a minute while it served the learner.
  """
  last_answer = {a: time.time() for a in addresses}
  while True:
    time.sleep(poll_s)
    for address in addresses:
      if _accepts_connections(address, poll_s):
        last_answer[address] = time.time()
      elif time.time() - last_answer[address] > timeout_s:
        print(f"[learner] the Reverb server at {address} has not answered for {timeout_s:.0f} s; exiting", flush=True)
        os._exit(1)  # pylint: disable=protected-access


def _wait_until_done(counter, num_steps: int, stop: threading.Event, poll_s: float = 1.0) -> None:
  while not stop.is_set() and counter.get_counts().get("learner_steps", 0) < num_steps:
    stop.wait(poll_s)


def _learner_stopped_path(config: run_config_lib.RunConfig) -> str:
  return os.path.join(FLAGS.rendezvous_dir or config.workdir, "learner_stopped")


def _wait_for_learner_to_stop(config: run_config_lib.RunConfig, poll_s: float = 0.5) -> None:
  deadline = time.time() + FLAGS.stop_grace_s
  while not os.path.exists(_learner_stopped_path(config)) and time.time() < deadline:
    time.sleep(poll_s)


def _stop_on_signals() -> threading.Event:
  """An event set by SIGTERM (scancel, a requeue, a preemption) or SIGUSR1 (launch/slurm_job.py stopping the run:
  srun passes SIGUSR1 on to its tasks, while on SIGTERM it kills them)."""
  stop = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGUSR1):
    signal.signal(sig, lambda signum, frame: stop.set())
  return stop


def _require(**addresses):
  missing = [f"--{name}" for name, value in addresses.items() if not value]
  if missing:
    raise app.UsageError(f"--role={FLAGS.role} needs {', '.join(missing)}.")


def run_replay(config: run_config_lib.RunConfig) -> None:
  stop = _stop_on_signals()
  shard = FLAGS.shard_index
  if not 0 <= shard < config.num_replay_shards:
    raise app.UsageError(f"--shard_index={shard}: the run has num_replay_shards={config.num_replay_shards}.")
  rendezvous = FLAGS.rendezvous_dir is not None
  counter, counter_server = None, None
  if shard == 0:  # The first shard's host also keeps the run's counter.
    latest = checkpointing.for_run(config.workdir).latest()
    counter = nodes.make_counter(latest["counts"] if latest else {})
    counter_server = serve(counter, "counter", None if rendezvous else FLAGS.counter_port)
  spec = config.spec()
  signature = batches.spec_signature(spec)
  size = batches.shard_sizes(spec.num_episodes, config.num_replay_shards)[shard]
  server = reverb.Server([batches.make_episode_table(size, signature)], port=None if rendezvous else FLAGS.reverb_port)
  if rendezvous:
    ports = {"reverb": server.port, **({"counter": counter_server.port} if counter_server else {})}
    _publish(f"replay_{shard}", **ports)
  try:
    nodes.load_dataset_into_reverb(config, signature, [reverb.Client(f"localhost:{server.port}")], [shard])
    if counter is None:
      counter = _client(_counter_address())
    try:
      _wait_until_done(counter, config.num_steps, stop)
    except Exception:  # pylint: disable=broad-except
      if not _run_finished(config):
        raise  # The counter's host is gone before the run's end.
    if stop.is_set():
      # The run is being stopped: serve until the learner, which may still need a batch, has checkpointed.
      _wait_for_learner_to_stop(config)
      print(f"[replay_{shard}] stopped", flush=True)
      sys.exit(143)
    time.sleep(FLAGS.linger_s)  # The evaluators read the final count before the counter goes away.
    print(f"[replay_{shard}] learner finished; shutting down", flush=True)
  finally:
    server.stop()
    if counter_server is not None:
      counter_server.Stop()


def run_learner(config: run_config_lib.RunConfig) -> None:
  stop = _stop_on_signals()
  if not FLAGS.rendezvous_dir:
    _require(counter_address=FLAGS.counter_address, reverb_address=FLAGS.reverb_address)
  signature = batches.spec_signature(config.spec())
  addresses = _reverb_addresses(config)
  threading.Thread(target=_watch_reverb, args=(addresses, FLAGS.peer_timeout_s), daemon=True).start()
  learner = nodes.LearnerWorker(config, signature, [reverb.Client(a) for a in addresses], _client(_counter_address()))
  if os.path.exists(_learner_stopped_path(config)):
    os.remove(_learner_stopped_path(config))  # An earlier start's.
  server = serve(learner, "learner", None if FLAGS.rendezvous_dir else FLAGS.learner_port)
  if FLAGS.rendezvous_dir:
    _publish("learner", learner=server.port)
  try:
    step = learner.train(stop.is_set)
    if step < config.num_steps:  # Stopped from outside, the step reached checkpointed.
      with open(_learner_stopped_path(config), "w") as f:
        f.write(f"{step}\n")
      sys.exit(143)
    time.sleep(FLAGS.linger_s)  # Evaluators finish their round with the final parameters.
  except learner_lib.DivergenceError as e:
    failures.stop_program(config.workdir, "learner", learner.describe_divergence(e))
  finally:
    server.Stop()


def run_evaluator(config: run_config_lib.RunConfig) -> None:
  if not FLAGS.rendezvous_dir:
    _require(counter_address=FLAGS.counter_address, learner_address=FLAGS.learner_address)
  i = FLAGS.evaluator_id
  counter = _client(_counter_address())
  learner = FLAGS.learner_address if not FLAGS.rendezvous_dir else _lookup("learner", "learner")
  evaluator = nodes.Evaluator(config, _client(learner), counter, f"evaluator_{i}", config.evaluator_seed(i))
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
  name = FLAGS.role + (f"_{FLAGS.shard_index}" if FLAGS.role == "replay" else "")
  name += f"_{FLAGS.evaluator_id}" if FLAGS.role == "evaluator" else ""
  # An error is recorded in the workdir with the role's name, for whoever reports how the run ended.
  with failures.stop_program_on_failure(config.workdir, name):
    {"replay": run_replay, "learner": run_learner, "evaluator": run_evaluator}[FLAGS.role](config)


if __name__ == "__main__":
  app.run(main)
