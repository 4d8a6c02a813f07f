"""TD3+BC on a learned success-classifier reward; shared by ORIL and PURL."""

from agents.td3bc_reward.builder import RewardTD3BCBuilder
from agents.td3bc_reward.config import RewardTD3BCConfig
from agents.td3bc_reward.learning import RewardTD3BCLearner
from agents.td3bc_reward.learning import RewardTD3BCTrainingState
from agents.td3bc_reward.networks import RewardTD3BCNetworks
from agents.td3bc_reward.networks import make_networks
