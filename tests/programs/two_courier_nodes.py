"""A two-node Launchpad program used by tests/test_stack.py and tests/test_launchpad_local.py.

`Echo` serves a courier method; `Caller` calls it over courier, writes the answer to a file and stops the
program. Launched with local multi-processing, each node is its own process.
"""

import sys

import launchpad as lp


class Echo:
  def ping(self, x):
    return x + 1


class Caller:
  def __init__(self, echo, out_path):
    self._echo = echo
    self._out_path = out_path

  def run(self):
    answer = self._echo.ping(41)
    with open(self._out_path, "w") as f:
      f.write(str(answer))
    lp.stop()


def make_program(out_path) -> lp.Program:
  program = lp.Program("two_courier_nodes")
  echo = program.add_node(lp.CourierNode(Echo), label="echo")
  program.add_node(lp.CourierNode(Caller, echo, out_path), label="caller")
  return program


def main(out_path):
  lp.launch(make_program(out_path), launch_type=lp.LaunchType.LOCAL_MULTI_PROCESSING, terminal="current_terminal")


if __name__ == "__main__":
  main(sys.argv[1])
