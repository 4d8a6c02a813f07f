"""The Launchpad internals behind launch/launchpad_local.py still give runnable node commands (a dm-launchpad
upgrade that changes them fails here, not in a run)."""

import os
import signal
import subprocess
import time

from launch import launchpad_local
from tests.programs import two_courier_nodes


def test_node_commands_start_a_two_node_program_whose_nodes_reach_each_other(tmp_path):
  out = tmp_path / "answer.txt"
  program = two_courier_nodes.make_program(str(out))
  commands = launchpad_local.node_commands(program, {"caller": launchpad_local.process_resources({"LAEO_X": "1"})})
  assert sorted(c.title for c in commands) == ["caller/0", "echo/0"]
  caller = next(c for c in commands if c.title == "caller/0")
  assert caller.env.get("LAEO_X") == "1" and os.path.basename(caller.command[0]).startswith("python")
  stopped = []  # lp.stop() in a node sends SIGTERM to the launcher: this process (the supervisor relies on it).
  previous = signal.signal(signal.SIGTERM, lambda *_: stopped.append(True))
  processes = [
    subprocess.Popen(
      c.command, env={**os.environ, **c.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    for c in commands
  ]
  try:
    deadline = time.time() + 120
    while not stopped and time.time() < deadline:
      time.sleep(0.2)
    assert stopped, [p.stderr.read1(4000).decode(errors="replace") for p in processes if p.poll() is not None]
    assert out.read_text() == "42"  # The caller reached the echo node over courier, then stopped the program.
  finally:
    signal.signal(signal.SIGTERM, previous)
    for p in processes:
      p.kill()
      p.wait()
