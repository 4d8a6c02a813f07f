"""Purl builder."""
from agents.purl.config import PurlConfig
from agents.purl.learning import PurlLearner
from agents.td3bc_reward.builder import RewardTD3BCBuilder


class PurlBuilder(RewardTD3BCBuilder):
  """TD3+BC on a classifier reward with PurlConfig defaults."""
  config_cls = PurlConfig
  learner_cls = PurlLearner

  def __init__(self, config: PurlConfig = None):
    super().__init__(config)
