"""Multi-host launch: replay, learner and evaluator roles on three network namespaces ("hosts").

Each namespace has only its own loopback and one veth link to a bridge; the roles reach each other at
private addresses that exist inside these namespaces only. That needs root and iproute2 (as in CI here);
without them the roles run as three processes on this host's loopback rather than being skipped.
"""

import csv
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from data_pipeline import generate
from data_pipeline import rlds_reader
from launch import run_config as run_config_lib
from tests.helpers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBNET = "10.231.77"

NAMESPACES = os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args):
  subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def hosts():
  """Three namespaces on one bridge (itself in a fourth namespace); yields [(name, address)].

  Without root or iproute2: three processes of this host, [(None, "127.0.0.1")] * 3.
  """
  if not NAMESPACES:
    yield [(None, "127.0.0.1")] * 3
    return
  tag = uuid.uuid4().hex[:6]
  switch = f"laeo-sw-{tag}"
  names = [f"laeo-h{i}-{tag}" for i in range(3)]
  created = []
  try:
    for ns in [switch, *names]:
      _ip("netns", "add", ns)
      created.append(ns)
      _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", switch, "link", "add", "br0", "type", "bridge")
    _ip("-n", switch, "link", "set", "br0", "up")
    for i, ns in enumerate(names):
      _ip("link", "add", f"lh{i}{tag}", "type", "veth", "peer", "name", f"lp{i}{tag}")
      _ip("link", "set", f"lh{i}{tag}", "netns", ns)
      _ip("link", "set", f"lp{i}{tag}", "netns", switch)
      _ip("-n", switch, "link", "set", f"lp{i}{tag}", "master", "br0")
      _ip("-n", switch, "link", "set", f"lp{i}{tag}", "up")
      _ip("-n", ns, "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", f"lh{i}{tag}")
      _ip("-n", ns, "link", "set", f"lh{i}{tag}", "up")
    yield [(ns, f"{SUBNET}.{i + 1}") for i, ns in enumerate(names)]
  finally:
    for ns in created:
      subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _bc_run(tmp_path, num_steps):
  """A tiny BC run's saved config on 8 FetchReach episodes; returns (config, path of its run_config.json)."""
  dataset_dir = str(tmp_path / "data")
  generate.generate_dataset(
    "fetch_reach", "medium", 8, dataset_dir, seed=0, num_success_examples=10, show_progress=False
  )
  config = run_config_lib.RunConfig(
    agent="bc",
    env="fetch_reach",
    dataset_dir=dataset_dir,
    workdir=str(tmp_path / "run"),
    num_steps=num_steps,
    episodes_per_eval=2,
    checkpoint_every=50,
    log_every=50,
    overrides={"policy_hidden_sizes": (16,), "batch_size": 16},
    num_sgd_steps_per_step=5,
    observation_stats=rlds_reader.observation_stats([dataset_dir]),
    dataset_spec=rlds_reader.describe([dataset_dir]).to_dict(),
  )
  run_config_lib.save_run_config(config)
  return config, os.path.join(config.workdir, "run_config.json")


def _start_role(role, namespace, run_config, flags):
  return subprocess.Popen(
    [
      *(["ip", "netns", "exec", namespace] if namespace else []),
      sys.executable,
      os.path.join(ROOT, "launch", "distributed.py"),
      f"--role={role}",
      f"--run_config={run_config}",
      *flags,
    ],
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    cwd=ROOT,
    env={**os.environ, "MUJOCO_GL": "egl"},
  )


def _role_flags(replay_ip, learner_ip, linger_s=5):
  counter, reverb, learner = free_ports(3)  # Free here; in namespaces any port is.
  return {
    "replay": [f"--counter_port={counter}", f"--reverb_port={reverb}", f"--linger_s={linger_s}"],
    "learner": [
      f"--counter_address={replay_ip}:{counter}",
      f"--reverb_address={replay_ip}:{reverb}",
      f"--learner_port={learner}",
      f"--linger_s={linger_s}",
    ],
    "evaluator": [f"--counter_address={replay_ip}:{counter}", f"--learner_address={learner_ip}:{learner}"],
  }


def _communicate_all(procs, timeout_s):
  deadline = time.time() + timeout_s  # One limit for all roles together.
  return {role: proc.communicate(timeout=max(deadline - time.time(), 1.0))[0] for role, proc in procs.items()}


def _kill_all(procs):
  for proc in procs.values():
    if proc.poll() is None:
      proc.kill()


def test_roles_on_three_hosts_train_evaluate_and_exit(hosts, tmp_path):
  config, run_config = _bc_run(tmp_path, num_steps=150)
  (replay_ns, replay_ip), (learner_ns, learner_ip), (evaluator_ns, _) = hosts
  flags = _role_flags(replay_ip, learner_ip)
  namespaces = {"replay": replay_ns, "learner": learner_ns, "evaluator": evaluator_ns}
  procs = {}
  try:
    for role, ns in namespaces.items():
      procs[role] = _start_role(role, ns, run_config, flags[role])
    outputs = _communicate_all(procs, 400)
  finally:
    _kill_all(procs)
  for role, proc in procs.items():
    assert proc.returncode == 0, f"{role} failed:\n{outputs[role][-3000:]}"
  with open(os.path.join(config.workdir, "logs", "learner", "logs.csv")) as f:
    assert [int(float(r["learner_steps"])) for r in csv.DictReader(f)] == [50, 100, 150]
  with open(os.path.join(config.workdir, "logs", "evaluator_0", "logs.csv")) as f:
    assert list(csv.DictReader(f))
  assert "ckpt_0000000150" in os.listdir(os.path.join(config.workdir, "checkpoints"))


def test_learner_and_evaluator_exit_with_failure_when_the_replay_host_dies_midrun(tmp_path):
  config, run_config = _bc_run(tmp_path, num_steps=1_000_000)
  flags = _role_flags("127.0.0.1", "127.0.0.1")
  procs = {}
  try:
    for role in ("replay", "learner", "evaluator"):
      extra = ["--peer_timeout_s=10"] if role != "replay" else []
      procs[role] = _start_role(role, None, run_config, flags[role] + extra)
    checkpoints = os.path.join(config.workdir, "checkpoints")
    deadline = time.time() + 300
    while not (os.path.isdir(checkpoints) and os.listdir(checkpoints)):  # Training is under way.
      assert time.time() < deadline and procs["learner"].poll() is None, "the run never checkpointed"
      time.sleep(1)
    procs["replay"].kill()  # The host of Reverb and of the run's counter is gone.
    started = time.time()
    outputs = _communicate_all({r: procs[r] for r in ("learner", "evaluator")}, 120)
  finally:
    _kill_all(procs)
  assert time.time() - started < 120
  for role in ("learner", "evaluator"):
    assert procs[role].returncode == 1, f"{role} exited {procs[role].returncode}:\n{outputs[role][-3000:]}"
  with open(os.path.join(config.workdir, "node_failures.txt")) as f:
    failures = f.read()
  assert "[evaluator_0]" in failures  # The run's record names who saw the peer go.


def test_a_run_serves_only_the_calls_its_peers_make_and_refuses_the_rest_over_the_network():
  import courier
  import numpy as np

  from launch import nodes

  class Learner:
    runs = 0

    def get_variables(self, names):
      return [np.ones(2) for _ in names]

    def run(self):  # A second training loop, if anyone could start it.
      Learner.runs += 1

    def train(self):
      Learner.runs += 1

  servers = []
  try:
    for kind, instance in (("learner", Learner()), ("counter", nodes.make_counter({"learner_steps": 5}))):
      server = courier.Server()
      nodes.bind_served(server, instance, kind)
      server.Start()
      servers.append(server)
    learner = courier.Client(f"127.0.0.1:{servers[0].port}", call_timeout=10)
    counter = courier.Client(f"127.0.0.1:{servers[1].port}", call_timeout=10)
    np.testing.assert_array_equal(learner.get_variables(["policy"])[0], np.ones(2))
    assert counter.get_counts()["learner_steps"] == 5
    for forbidden in (learner.run, learner.train, lambda: counter.restore({"counts": {}, "cache": {}})):
      with pytest.raises(Exception, match="(?i)not found|unimplemented|unknown"):
        forbidden()
    assert Learner.runs == 0
    assert counter.get_counts()["learner_steps"] == 5
  finally:
    for server in servers:
      server.Stop()
