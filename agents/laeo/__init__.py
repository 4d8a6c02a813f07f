"""LAEO: contrastive example-based control (offline)."""

from agents.laeo.builder import LaeoBuilder
from agents.laeo.config import LaeoConfig
from agents.laeo.learning import LaeoLearner
from agents.laeo.learning import LaeoTrainingState
from agents.laeo.networks import LaeoNetworks
from agents.laeo.networks import make_networks
