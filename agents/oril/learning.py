"""Oril learner (shared TD3+BC-on-learned-reward implementation)."""
from agents.td3bc_reward import learning as _learning
from agents.td3bc_reward.learning import make_initial_state  # pylint: disable=unused-import
from agents.td3bc_reward.learning import make_update_fn  # pylint: disable=unused-import
from agents.td3bc_reward.learning import RewardTD3BCTrainingState as OrilTrainingState  # pylint: disable=unused-import


class OrilLearner(_learning.RewardTD3BCLearner):
  """Learner for Oril; see agents.td3bc_reward.learning."""
