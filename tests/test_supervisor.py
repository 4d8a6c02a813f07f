"""The supervisor's exits, restarts and stops, over fake node processes (tests/programs/fake_nodes.py)."""

import os
import signal
import subprocess
import sys
import threading
import time

from tests.programs import fake_nodes

FAKE = fake_nodes.__file__


def alive(workdir) -> list:
  """Pids of fake node processes of this workdir that still run."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        command = f.read().split(b"\0")
    except OSError:
      continue
    if any(a.startswith(b"--node=") for a in command) and f"--workdir={workdir}".encode() in command:
      found.append(int(pid))
  return found


def signal_self_after(seconds: float, sig: int) -> None:
  threading.Timer(seconds, lambda: os.kill(os.getpid(), sig)).start()


def test_sigterm_stops_every_node_and_exits_143(tmp_path, monkeypatch):
  supervisor = fake_nodes.supervisor(
    str(tmp_path), "replay/0:sleeper,learner/0:sleeper,evaluator/0:sleeper", patch=monkeypatch.setattr
  )
  signal_self_after(1.5, signal.SIGTERM)
  outcome = supervisor.run()
  assert outcome.exit_code == 143 and "Stopped by SIGTERM at learner step 0 of 10" in outcome.message
  assert alive(tmp_path) == []


def test_a_node_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, capsys, monkeypatch):
  supervisor = fake_nodes.supervisor(str(tmp_path), "learner/0:stubborn,evaluator/0:sleeper", patch=monkeypatch.setattr)
  signal_self_after(1.5, signal.SIGTERM)
  start = time.time()
  outcome = supervisor.run()
  assert outcome.exit_code == 143 and time.time() - start < 10
  assert "learner/0 did not stop within 1 s of SIGTERM: killing it" in capsys.readouterr().out
  assert alive(tmp_path) == []


def test_an_evaluator_that_dies_is_restarted_and_the_run_goes_on(tmp_path, capsys, monkeypatch):
  supervisor = fake_nodes.supervisor(
    str(tmp_path), "learner/0:sleeper,evaluator/0:crash_once", max_restarts=1, patch=monkeypatch.setattr
  )
  signal_self_after(2.5, signal.SIGTERM)
  outcome = supervisor.run()
  assert outcome.exit_code == 143  # Still running when stopped: the restarted evaluator stayed up.
  assert "evaluator/0 exited with code 1; restarting it from the last checkpoint (step 0), restart 1 of 1" in (
    capsys.readouterr().out
  )
  assert alive(tmp_path) == []


def test_a_node_that_keeps_dying_ends_the_run_with_exit_1_once_out_of_restarts(tmp_path, capsys, monkeypatch):
  supervisor = fake_nodes.supervisor(
    str(tmp_path), "learner/0:sleeper,evaluator/0:crasher", max_restarts=2, patch=monkeypatch.setattr
  )
  outcome = supervisor.run()
  assert outcome.exit_code == 1
  assert outcome.message.startswith("evaluator/0 exited with code 3, so the run stopped at its last checkpoint")
  assert "fake node crasher up" in outcome.message  # The dead node's last output.
  assert capsys.readouterr().out.count("restarting it from the last checkpoint") == 2
  assert alive(tmp_path) == []


def test_a_dead_replay_node_is_never_restarted(tmp_path, capsys, monkeypatch):
  supervisor = fake_nodes.supervisor(
    str(tmp_path), "replay/0:crasher,learner/0:sleeper", max_restarts=5, patch=monkeypatch.setattr
  )
  outcome = supervisor.run()
  assert outcome.exit_code == 1 and outcome.message.startswith("replay/0 exited with code 3")
  assert "restarting" not in capsys.readouterr().out  # Its episodes are gone with it: the run stops at once.
  assert alive(tmp_path) == []


def test_ctrl_c_exits_130_and_a_second_ctrl_c_kills_nodes_that_do_not_stop(tmp_path):
  def run(nodes, interrupts):
    proc = subprocess.Popen(
      [sys.executable, FAKE, "--run", f"--workdir={tmp_path}", f"--nodes={nodes}"],
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    deadline = time.time() + 120
    while len(alive(tmp_path)) < 2 and time.time() < deadline:  # Nodes start after its handlers are installed.
      time.sleep(0.1)
    time.sleep(0.5)
    interrupted = time.time()
    for _ in range(interrupts):
      proc.send_signal(signal.SIGINT)
      time.sleep(0.2)
    out, _ = proc.communicate(timeout=60)
    return proc.returncode, out, time.time() - interrupted

  code, out, _ = run("learner/0:sleeper,evaluator/0:sleeper", 1)
  assert code == 130 and "Interrupted at learner step 0 of 10 (checkpointed)" in out, out
  assert alive(tmp_path) == []
  # The stubborn learner would hold a single Ctrl-C for the whole grace period; a second one kills it at once.
  code, out, seconds = run("learner/0:stubborn,evaluator/0:sleeper", 2)
  assert code == 130 and "did not stop within" not in out and seconds < 10, (out, seconds)
  assert alive(tmp_path) == []
