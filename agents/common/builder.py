"""Minimal base for the agent builders (launcher-facing API)."""


class BaseBuilder:
  """Holds a config; subclasses define the networks, learner and policy.

  Subclass API:
    batch_kind: 'future' (observation, action, future_observation) or
      'transition' (observation, action, next_observation, discount).
    make_networks(observation_spec, action_spec, observation_stats=None)
      (observation_stats: see agents.common.networks.ObservationStats)
    make_learner(networks, iterator, success_examples, random_key,
                 counter=None, logger=None)
    make_policy(networks) -> fn(params, key, observation, evaluation) -> action
  """

  batch_kind: str = ""

  def __init__(self, config):
    self._config = config

  @property
  def config(self):
    return self._config

  @property
  def batch_size(self) -> int:
    """Batch size the data pipeline should produce."""
    return self._config.batch_size

  @property
  def discount(self) -> float:
    """Discount used by the data pipeline (future sampling / 'discount')."""
    return self._config.discount
