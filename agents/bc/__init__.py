"""Behavioural cloning with a tanh-Gaussian policy (maximum likelihood)."""

from agents.bc.builder import BcBuilder
from agents.bc.config import BcConfig
from agents.bc.learning import BcLearner
from agents.bc.learning import BcTrainingState
from agents.bc.networks import BcNetworks
from agents.bc.networks import make_networks
