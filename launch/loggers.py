"""Where a node's metrics go: CSV, TensorBoard and the terminal; Weights & Biases when the run asks for it."""

import os
from typing import Any, Dict, Optional

from acme.utils import loggers as acme_loggers
from acme.utils.loggers import tf_summary

from launch.run_config import RunConfig


def make_logger(
  config: RunConfig, label: str, steps_key: str, print_every_s: Optional[float] = 10.0
) -> acme_loggers.Logger:
  """CSV (`<workdir>/logs/<label>/logs.csv`), TensorBoard (`<workdir>/tb/<label>`), a terminal line (unless
  `print_every_s` is None) and, when `config.wandb_project` is set, W&B (one run per node, grouped by workdir)."""
  workdir = config.workdir
  to = [
    acme_loggers.CSVLogger(workdir, label=label, add_uid=False, flush_every=1),
    tf_summary.TFSummaryLogger(os.path.join(workdir, "tb", label), label=label, steps_key=steps_key),
  ]
  if print_every_s is not None:
    to.append(acme_loggers.TerminalLogger(label=label, time_delta=print_every_s, print_fn=print))
  if config.wandb_project:
    to.append(WandbLogger(config, label, steps_key))
  return acme_loggers.Dispatcher(to)


class WandbLogger(acme_loggers.Logger):
  """Logs each write to a W&B run named after the node, resumed when the run is (its id is stable)."""

  def __init__(self, config: RunConfig, label: str, steps_key: str):
    import wandb  # pylint: disable=g-import-not-at-top  (optional dependency)

    run_name = os.path.basename(os.path.normpath(config.workdir))
    self._steps_key = steps_key
    self._run = wandb.init(
      project=config.wandb_project,
      group=run_name,
      name=f"{run_name}/{label}",
      id=f"{run_name}-{label}".replace("/", "-"),
      resume="allow",
      dir=config.workdir,
      config={"agent": config.agent, "env": config.env, "seed": config.seed, **config.overrides},
    )

  def write(self, data: Dict[str, Any]):
    self._run.log({k: float(v) for k, v in data.items() if k != self._steps_key}, step=int(data[self._steps_key]))

  def close(self):
    self._run.finish()


class EveryNSteps(acme_loggers.Logger):
  """Passes on the writes whose `steps_key` count is a multiple of `every`."""

  def __init__(self, to: acme_loggers.Logger, steps_key: str, every: int):
    self._to, self._steps_key, self._every = to, steps_key, every

  def write(self, data):
    if int(data[self._steps_key]) % self._every == 0:
      self._to.write(data)

  def close(self):
    self._to.close()
