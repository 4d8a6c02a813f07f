"""OrilConfig: RewardTD3BCConfig with classifier_loss='bce' by default.

All fields and their meaning are documented in
agents.td3bc_reward.config.RewardTD3BCConfig.
"""
import dataclasses

from agents.td3bc_reward.config import RewardTD3BCConfig


@dataclasses.dataclass(frozen=True)
class OrilConfig(RewardTD3BCConfig):
  """ORIL (offline reinforced imitation learning).

  Success classifier trained with BCE, success examples vs dataset states as negatives.
  Same (flat) fields as RewardTD3BCConfig.
  """
  classifier_loss: str = 'bce'
