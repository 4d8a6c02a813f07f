"""A real SLURM cluster on this machine, for tests: munged, slurmctld and three slurmd nodes (n1, n2, n3).

Everything lives in one directory (its own munge key and socket, slurm.conf, state, spool and logs) and runs as
the caller's child processes, so nothing of the machine's own munge or SLURM is touched. Needs root (slurmd
starts job steps as the submitting user) and Debian's slurm-wlm and munge packages (.ci/run installs them).
Commands reach it through the SLURM_CONF that `Cluster.env` sets.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from typing import Dict, Iterator, List

from tests.helpers import free_ports

NODES = ("n1", "n2", "n3")
CPUS_PER_NODE = 4  # Declared, not real: every node is this machine (config_overrides lets slurmd accept it).
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol")


def missing_programs() -> List[str]:
  return [p for p in DAEMONS if shutil.which(p) is None and not os.path.exists(f"/usr/sbin/{p}")]


def _program(name: str) -> str:
  return shutil.which(name) or f"/usr/sbin/{name}"


def _slurm_conf(root: str, host: str, munge_socket: str) -> str:
  ports = free_ports(len(NODES) + 1)
  nodes = "\n".join(
    f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={p} CPUs={CPUS_PER_NODE} State=UNKNOWN"
    for n, p in zip(NODES, ports[1:])
  )
  return f"""ClusterName=laeotest
SlurmctldHost={host}
SlurmctldPort={ports[0]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd_%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd_%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=2,sched_interval=2
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=30
MinJobAge=600
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
  """A running cluster; `env` is the environment in which sbatch, squeue, scontrol... talk to it."""

  def __init__(self, root: str):
    self.root = root
    self.conf = os.path.join(root, "slurm.conf")
    self.env: Dict[str, str] = {**os.environ, "SLURM_CONF": self.conf}
    self._daemons: List[subprocess.Popen] = []

  def _start(self, *command: str) -> None:
    log = open(os.path.join(self.root, "log", os.path.basename(command[0]) + ".out"), "a")  # noqa: SIM115
    self._daemons.append(
      subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    )

  def run(self, *command: str, check: bool = True) -> str:
    proc = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
      raise RuntimeError(f"{' '.join(command)} failed: {proc.stdout}{proc.stderr}")
    return proc.stdout

  def start(self, timeout_s: float = 90.0) -> None:
    for folder in ("state", "spool", "log", "munge"):
      os.makedirs(os.path.join(self.root, folder), exist_ok=True)
    munge = os.path.join(self.root, "munge")
    key, sock = os.path.join(munge, "munge.key"), os.path.join(munge, "munge.socket")
    with open(key, "wb") as f:
      f.write(os.urandom(128))
    os.chmod(key, 0o600)
    os.chmod(munge, 0o700)
    with open(self.conf, "w") as f:
      f.write(_slurm_conf(self.root, socket.gethostname(), sock))
    for node in NODES:
      os.makedirs(os.path.join(self.root, "spool", node), exist_ok=True)
    self._start(
      _program("munged"),
      "--foreground",
      "--force",
      f"--key-file={key}",
      f"--socket={sock}",
      f"--pid-file={munge}/munged.pid",
      f"--log-file={self.root}/log/munged.log",
      f"--seed-file={munge}/munged.seed",
    )
    deadline = time.time() + timeout_s
    while not os.path.exists(sock):
      if time.time() > deadline:
        raise RuntimeError(f"munged did not start: {self._log('munged.out')}")
      time.sleep(0.2)
    self._start(_program("slurmctld"), "-D", "-c", "-i")
    for node in NODES:
      self._start(_program("slurmd"), "-D", "-N", node)
    while True:
      states = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).split()
      if states[1::2] == ["idle"] * len(NODES):
        return
      if time.time() > deadline:
        raise RuntimeError(
          f"The cluster's nodes are not idle after {timeout_s:.0f} s ({states}):\n{self._log('slurmctld.log')}"
        )
      time.sleep(1.0)

  def _log(self, name: str) -> str:
    path = os.path.join(self.root, "log", name)
    if not os.path.exists(path):
      return ""
    with open(path, errors="replace") as f:
      return f.read()[-3000:]

  def stop(self) -> None:
    """Cancels every job, then stops the daemons (slurmd last but one: it ends its jobs' steps; munged last)."""
    if self._daemons:
      self.run("scancel", "--full", "--user=root", check=False)
      deadline = time.time() + 60
      while self.run("squeue", "-h", check=False).strip() and time.time() < deadline:
        time.sleep(1.0)
    for daemon in reversed(self._daemons):
      if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
          daemon.wait(30)
        except subprocess.TimeoutExpired:
          os.killpg(daemon.pid, signal.SIGKILL)
          daemon.wait()
    self._daemons.clear()


@contextlib.contextmanager
def running_cluster(root: str) -> Iterator[Cluster]:
  cluster = Cluster(root)
  try:
    cluster.start()
    yield cluster
  finally:
    cluster.stop()
