"""What a person sees of a run: node output minus library noise, and a progress line with the latest success.

Every line still goes, unfiltered, to `<workdir>/logs/nodes/<node>.log`; `--verbose` shows them all here too.
"""

import re
from typing import Optional

# Lines that say nothing to the person running an experiment: absl INFO/WARNING/DEBUG records (errors and
# fatals stay), library deprecation warnings, Reverb's and Launchpad's lifecycle chatter.
_NOISE = re.compile(
  r"^([IWD]\d{4} \d\d:\d\d:\d\d"
  r"|WARNING:absl:"
  r"|\[reverb/cc/"
  r"|.*(Deprecat|deprecat)"
  r"|\s+(warnings\.warn|np\.bool8|if \(distutils|distutils\.version)"
  r"|.*environment's reward functions were updated"
  r"|Waiting for workers to stop"
  r"|.*(Unable to initialize backend|No OpenGL_accelerate module))"
)
_LEARNER = re.compile(r"^\[learner\] step (\d+)/(\d+)")
_EVALUATION = re.compile(r"Learner Steps = (\d+) \| Success Rate = ([\d.]+) \| Success Rate Final Step = ([\d.]+)")


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


class Terminal:
  """Turns node output lines into what the terminal shows (None: nothing)."""

  def __init__(self, verbose: bool = False):
    self._verbose = verbose
    self._last_evaluation: Optional[str] = None

  def render(self, node_title: str, line: str) -> Optional[str]:
    line = line.rstrip("\n").split("\r")[-1]
    evaluation = _EVALUATION.search(line)
    if evaluation:
      step, any_step, final = evaluation.groups()
      self._last_evaluation = f"success {float(any_step):.2f} (final step {float(final):.2f}) at step {step}"
    if not self._verbose and (not line.strip() or _NOISE.match(line)):
      return None
    if _LEARNER.match(line) and self._last_evaluation:
      line = f"{line} | last evaluation: {self._last_evaluation}"
    return line if _LEARNER.match(line) or line.startswith("[") else f"[{node_title}] {line}"
