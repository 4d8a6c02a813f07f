"""ORIL (offline reinforced imitation learning):
success classifier trained with BCE, success examples vs dataset states as negatives;
then TD3+BC on the predicted reward (code shared in agents.td3bc_reward)."""
from agents.oril.builder import OrilBuilder
from agents.oril.config import OrilConfig
from agents.oril.learning import OrilLearner
from agents.oril.networks import OrilNetworks
from agents.oril.networks import make_networks
