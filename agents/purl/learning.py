"""Purl learner (shared TD3+BC-on-learned-reward implementation)."""
from agents.td3bc_reward import learning as _learning
from agents.td3bc_reward.learning import make_initial_state  # pylint: disable=unused-import
from agents.td3bc_reward.learning import make_update_fn  # pylint: disable=unused-import
from agents.td3bc_reward.learning import RewardTD3BCTrainingState as PurlTrainingState  # pylint: disable=unused-import


class PurlLearner(_learning.RewardTD3BCLearner):
  """Learner for Purl; see agents.td3bc_reward.learning."""
