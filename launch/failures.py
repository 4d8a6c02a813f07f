"""How a node's error reaches the person who launched the run.

A node that raises records its traceback in `<workdir>/node_failures.txt` and ends its process with status 1
(`stop_program_on_failure`). The supervisor (launch/supervisor.py) sees the process end, as it sees a node
killed by a signal, restarts the node or stops the program, and reports the recorded traceback.

A learner that diverges (NaN or infinity in its metrics or state) also records where in
`<workdir>/diverged.json`: the supervisor reports the divergence, never restarts such a learner, and the next
start of the run may change its agent config (launch/run_config.py) to resume from before the divergence.
"""

import contextlib
import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, Mapping, Optional

FAILURE_FILE = "node_failures.txt"
DIVERGENCE_FILE = "diverged.json"


def failure_path(workdir: str) -> str:
  return os.path.join(workdir, FAILURE_FILE)


def divergence_path(workdir: str) -> str:
  return os.path.join(workdir, DIVERGENCE_FILE)


def clear_failures(workdir: str) -> None:
  """Forgets the failures (and the divergence) of an earlier attempt of this run."""
  for path in (failure_path(workdir), divergence_path(workdir)):
    if os.path.exists(path):
      os.remove(path)


def record_divergence(workdir: str, step: int, non_finite: Mapping[str, str], last_checkpoint: int) -> None:
  """Notes that this attempt's learner diverged at `step` ({name: value} of what is not finite), its latest
  checkpoint being `last_checkpoint` (0: none)."""
  os.makedirs(workdir, exist_ok=True)
  tmp = divergence_path(workdir) + ".tmp"
  with open(tmp, "w") as f:
    json.dump({"step": int(step), "non_finite": dict(non_finite), "last_checkpoint": int(last_checkpoint)}, f)
  os.replace(tmp, divergence_path(workdir))


def read_divergence(workdir: str) -> Optional[Dict[str, Any]]:
  """The divergence of the run's last attempt ({'step', 'non_finite', 'last_checkpoint'}), or None."""
  try:
    with open(divergence_path(workdir)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def describe_divergence(divergence: Mapping[str, Any], num_steps: int) -> str:
  """What a person is told of a divergence, and how to go on."""
  what = ", ".join(f"{name} is {value}" for name, value in divergence["non_finite"].items())
  last = divergence["last_checkpoint"]
  kept = (
    f"wrote no checkpoint after it; its latest, step {last}, holds finite values"
    if last
    else "it has no checkpoint yet"
  )
  go_on = f"resume from step {last}" if last else "start again from step 0"
  return (
    f"The learner diverged at learner step {divergence['step']} of {num_steps}: {what}. The run stopped there and "
    f"{kept}. Change the agent config (e.g. a lower --config=learning_rate=...) and rerun the command to {go_on} "
    "(a diverged run accepts a changed --config)."
  )


def stop_program(workdir: str, node: str, message: str) -> None:
  """Records `message` as the node's error in `<workdir>/node_failures.txt`, prints it and ends the node's
  process with status 1 (a known failure, told without a traceback)."""
  os.makedirs(workdir, exist_ok=True)
  with open(failure_path(workdir), "a") as f:
    f.write(f"[{node}] {message}\n")
  print(f"[{node}] {message}", flush=True)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(1)  # pylint: disable=protected-access


def read_failures(workdir: str) -> Optional[str]:
  if not os.path.exists(failure_path(workdir)):
    return None
  with open(failure_path(workdir)) as f:
    return f.read()


@contextlib.contextmanager
def stop_program_on_failure(workdir: str, node: str):
  """Records a node's error in `<workdir>/node_failures.txt` and ends the node's process with status 1.

  Exiting at once, rather than raising, ends the process even where other threads (a courier server, a
  Reverb client) would keep it alive.
  """
  try:
    yield
  except Exception:  # pylint: disable=broad-except
    os.makedirs(workdir, exist_ok=True)
    with open(failure_path(workdir), "a") as f:
      f.write(f"[{node}] {traceback.format_exc()}\n")
    traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)  # pylint: disable=protected-access


def guarded(workdir: str, node: str, make: Callable[..., Any], *args) -> Any:
  """`make(*args)` under `stop_program_on_failure` (for constructing Launchpad nodes)."""
  with stop_program_on_failure(workdir, node):
    return make(*args)
