"""PURL (positive-unlabeled reward learning):
success classifier trained with the non-negative PU risk;
then TD3+BC on the predicted reward (code shared in agents.td3bc_reward)."""
from agents.purl.builder import PurlBuilder
from agents.purl.config import PurlConfig
from agents.purl.learning import PurlLearner
from agents.purl.networks import PurlNetworks
from agents.purl.networks import make_networks
