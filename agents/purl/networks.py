"""Purl networks (shared with agents.td3bc_reward)."""
from agents.td3bc_reward.networks import make_actor  # pylint: disable=unused-import
from agents.td3bc_reward.networks import make_networks  # pylint: disable=unused-import
from agents.td3bc_reward.networks import RewardTD3BCNetworks as PurlNetworks  # pylint: disable=unused-import
