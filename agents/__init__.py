"""Offline example-based control agents: LAEO and the ORIL / PURL / BC baselines.

Usage:
  builder = agents.make_builder('laeo', bc_coef=0.05)
  builder.batch_kind       # 'future' or 'transition'
  networks = builder.make_networks(observation_spec, action_spec)
  learner = builder.make_learner(networks, iterator, success_examples, key)
  policy = builder.make_policy(networks)  # fn(params, key, obs, evaluation)
"""
from typing import Dict, Tuple, Type

from agents.common import config_utils

AGENT_NAMES: Tuple[str, ...] = ('laeo', 'oril', 'purl', 'bc')


def _registry() -> Dict[str, Tuple[Type, Type]]:
  # Imported lazily so `import agents` stays cheap.
  from agents.bc import BcBuilder, BcConfig  # pylint: disable=g-import-not-at-top
  from agents.laeo import LaeoBuilder, LaeoConfig  # pylint: disable=g-import-not-at-top
  from agents.oril import OrilBuilder, OrilConfig  # pylint: disable=g-import-not-at-top
  from agents.purl import PurlBuilder, PurlConfig  # pylint: disable=g-import-not-at-top
  return {
      'laeo': (LaeoBuilder, LaeoConfig),
      'oril': (OrilBuilder, OrilConfig),
      'purl': (PurlBuilder, PurlConfig),
      'bc': (BcBuilder, BcConfig),
  }


def _check_name(name: str) -> None:
  if name not in AGENT_NAMES:
    raise ValueError(f'Unknown agent {name!r}; valid names: {list(AGENT_NAMES)}.')


def config_class(name: str) -> Type:
  """The config dataclass of agent `name`."""
  _check_name(name)
  return _registry()[name][1]


def make_config(name: str, **config_overrides):
  """Default config of agent `name` with the given fields overridden.

  Raises ValueError for an unknown agent or an unknown field.
  """
  return config_utils.make_config(config_class(name), **config_overrides)


def make_builder(name: str, **config_overrides):
  """Builder of agent `name`; keyword arguments override config fields.

  Example: make_builder('laeo', bc_coef=0.05) (the paper text's lambda).
  """
  _check_name(name)
  builder_cls, config_cls = _registry()[name]
  return builder_cls(config_utils.make_config(config_cls, **config_overrides))
