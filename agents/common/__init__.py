"""Shared building blocks for the offline agents (networks, losses, learner)."""
