"""PurlConfig: RewardTD3BCConfig with classifier_loss='pu' by default.

All fields and their meaning are documented in
agents.td3bc_reward.config.RewardTD3BCConfig.
"""
import dataclasses

from agents.td3bc_reward.config import RewardTD3BCConfig


@dataclasses.dataclass(frozen=True)
class PurlConfig(RewardTD3BCConfig):
  """PURL (positive-unlabeled reward learning).

  Success classifier trained with the non-negative PU risk.
  Same (flat) fields as RewardTD3BCConfig.
  """
  classifier_loss: str = 'pu'
