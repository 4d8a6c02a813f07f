"""Oril builder."""
from agents.oril.config import OrilConfig
from agents.oril.learning import OrilLearner
from agents.td3bc_reward.builder import RewardTD3BCBuilder


class OrilBuilder(RewardTD3BCBuilder):
  """TD3+BC on a classifier reward with OrilConfig defaults."""
  config_cls = OrilConfig
  learner_cls = OrilLearner

  def __init__(self, config: OrilConfig = None):
    super().__init__(config)
