"""The Launchpad internals the supervisor relies on, in one place.

Launchpad's local multi-processing launcher hands each node's command to a terminal and cannot tell how a node
ends (launch/supervisor.py says why that matters). The supervisor starts the processes itself, so it needs the
launcher's steps up to that hand-over: give every node its launch context, connect the nodes' handles, bind their
addresses and turn each group into executables. Those calls are private to dm-launchpad (pinned in
requirements.txt); `tests/test_launchpad_local.py` runs a two-node program through them and fails when a new
version changes them.
"""

import dataclasses
from typing import Any, Dict, List

import launchpad as lp
from launchpad import context as lp_context
from launchpad.nodes.python import local_multi_processing


@dataclasses.dataclass(frozen=True)
class NodeCommand:
  title: str  # "<group>/<index>", e.g. "learner/0".
  command: List[str]  # The process to start.
  env: Dict[str, str]  # Environment variables to add to the supervisor's own.


def process_resources(env: Dict[str, str]) -> Any:
  """A group's launch resources: its processes get `env` on top of the launcher's environment."""
  return local_multi_processing.PythonProcess(env=env)


def node_commands(program: lp.Program, resources: Dict[str, Any]) -> List[NodeCommand]:
  """Every node's command, as Launchpad's local multi-processing launch would run it (`resources`: per group
  label, from `process_resources`)."""
  for label, group in program.groups.items():
    for node in group:
      node._initialize_context(  # pylint: disable=protected-access
        lp_context.LaunchType.LOCAL_MULTI_PROCESSING,
        launch_config=resources.get(label),
      )
  for label, group in program.groups.items():
    for node in group:
      for handle in node.input_handles:
        handle.connect(node, label)
  for node in program.get_all_nodes():
    node.bind_addresses()
  commands = []
  for label, group in program.groups.items():
    for executable in group[0].to_executables(group, label, group[0].launch_context):
      env = {k: str(v) for k, v in executable.env_overrides.items()}
      commands.append(NodeCommand(executable.title, list(executable.command_as_list), env))
  return commands
