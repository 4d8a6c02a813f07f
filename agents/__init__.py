"""Offline example-based control agents: LAEO and the ORIL / PURL / BC baselines.

Usage:
  builder = agents.make_builder('laeo', bc_coef=0.05)
  builder.batch_kind       # 'future' or 'transition'
  networks = builder.make_networks(observation_spec, action_spec)
  learner = builder.make_learner(networks, iterator, success_examples, key)
  policy = builder.make_policy(networks)  # fn(params, key, obs, evaluation)
"""

from typing import Any, Dict, Tuple, Type

from agents.common import config_utils

AGENT_NAMES: Tuple[str, ...] = ("laeo", "oril", "purl", "bc")
PRESET_NAMES: Tuple[str, ...] = ("laptop", "paper")


def _registry() -> Dict[str, Tuple[Type, Type, Dict[str, Any], Dict[str, Dict[str, Any]]]]:
  """name -> (builder class, config class, fields the name fixes, size presets)."""
  # Imported lazily so `import agents` stays cheap.
  from agents import bc, laeo, td3bc_reward  # pylint: disable=g-import-not-at-top
  from agents.bc import config as bc_config  # pylint: disable=g-import-not-at-top
  from agents.laeo import config as laeo_config  # pylint: disable=g-import-not-at-top
  from agents.td3bc_reward import config as td3bc_config  # pylint: disable=g-import-not-at-top

  # ORIL and PURL are one agent, TD3+BC on a learned reward, whose classifier loss the name chooses.
  reward = (td3bc_reward.RewardTD3BCBuilder, td3bc_reward.RewardTD3BCConfig)
  return {
    "laeo": (laeo.LaeoBuilder, laeo.LaeoConfig, {}, laeo_config.PRESETS),
    "oril": (*reward, {"classifier_loss": "bce"}, td3bc_config.PRESETS),
    "purl": (*reward, {"classifier_loss": "pu"}, td3bc_config.PRESETS),
    "bc": (bc.BcBuilder, bc.BcConfig, {}, bc_config.PRESETS),
  }


def _check_name(name: str) -> None:
  if name not in AGENT_NAMES:
    raise ValueError(f"Unknown agent {name!r}; valid names: {list(AGENT_NAMES)}.")


def config_class(name: str) -> Type:
  """The config dataclass of agent `name`."""
  _check_name(name)
  return _registry()[name][1]


def preset(name: str, preset_name: str) -> Dict[str, Any]:
  """The config fields that size preset `preset_name` sets for agent `name`."""
  _check_name(name)
  if preset_name not in PRESET_NAMES:
    raise ValueError(f'Unknown preset {preset_name!r}; valid presets: {", ".join(PRESET_NAMES)}.')
  return dict(_registry()[name][3][preset_name])


def make_config(name: str, **config_overrides):
  """Config of agent `name`: its defaults and the fields its name fixes, with the given fields overridden.

  Raises ValueError for an unknown agent or field, or an override of a field the name fixes.
  """
  _check_name(name)
  _, config_cls, fixed, _ = _registry()[name]
  clash = sorted(k for k in fixed if k in config_overrides and config_overrides[k] != fixed[k])
  if clash:
    others = [n for n in AGENT_NAMES if n != name and _registry()[n][1] is config_cls]
    raise ValueError(
      f"{clash} is what makes agent {name!r} itself; choose the agent by name instead " f"(one of {others})."
    )
  return config_utils.make_config(config_cls, **{**config_overrides, **fixed})


def make_builder(name: str, **config_overrides):
  """Builder of agent `name`; keyword arguments override config fields.

  Example: make_builder('laeo', bc_coef=0.05) (the paper text's lambda).
  """
  config = make_config(name, **config_overrides)
  return _registry()[name][0](config)
