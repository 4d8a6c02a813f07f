"""Pulls parameters from a learner (an acme.core.VariableSource, local or a courier client).

Acme's own VariableClient lives in `acme.jax.variable_utils`, which cannot be imported in this stack: it
pulls in tensorflow_probability, whose JAX-compatible releases refuse TensorFlow 2.8. This keeps its
interface (`update`, `update_and_wait`, `params`) for the synchronous use the evaluators need.
"""

from typing import Any

from acme import core


class VariableClient:
  def __init__(self, source: core.VariableSource, key: str, update_period: int = 1):
    self._source = source
    self._key = key
    self._update_period = update_period
    self._calls = 0
    self._params = None

  def update(self, wait: bool = False) -> None:
    """Fetches new parameters every `update_period` calls (always on the first call or when waiting)."""
    del wait  # Fetching is synchronous.
    if self._params is None or self._calls % self._update_period == 0:
      self._params = self._source.get_variables([self._key])[0]
    self._calls += 1

  def update_and_wait(self) -> None:
    self._params = self._source.get_variables([self._key])[0]

  @property
  def params(self) -> Any:
    if self._params is None:
      self.update_and_wait()
    return self._params
