"""How a node's error reaches the person who launched the run.

A node that raises records its traceback in `<workdir>/node_failures.txt` and ends its process with status 1
(`stop_program_on_failure`). The supervisor (launch/supervisor.py) sees the process end, as it sees a node
killed by a signal, restarts the node or stops the program, and reports the recorded traceback.
"""

import contextlib
import os
import sys
import traceback
from typing import Any, Callable, Optional

FAILURE_FILE = "node_failures.txt"


class NodeFailure(RuntimeError):
  """A node of the program failed; the message says which, how, and where the run can resume from."""


def failure_path(workdir: str) -> str:
  return os.path.join(workdir, FAILURE_FILE)


def clear_failures(workdir: str) -> None:
  """Forgets the failures of an earlier attempt of this run."""
  if os.path.exists(failure_path(workdir)):
    os.remove(failure_path(workdir))


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
