"""Helpers to build agent configs from keyword overrides with clear errors."""

import dataclasses

# Channels of the three conv layers of an image encoder: the paper's Atari torso, and the laptop preset's
# half-width torso (a quarter of the FLOPs).
ATARI_CHANNELS = (32, 64, 64)
SMALL_CHANNELS = (16, 32, 32)
# Padding of the torso's convolutions: 'SAME' is Acme's Atari torso (the authors' encoder; a 64x64 image keeps an
# 8x8 grid), 'VALID' leaves a 4x4 grid.
TORSO_PADDINGS = ("SAME", "VALID")
# The image encoder of each size preset, the same for every agent: the paper's Atari torso, and half its channels
# with the same padding (chosen by scripts/diagnose_image_critic.py, results/image_critic_diagnostic.csv).
TORSO_PRESETS = {
  "paper": {"torso_channels": ATARI_CHANNELS, "torso_padding": "SAME"},
  "laptop": {"torso_channels": SMALL_CHANNELS, "torso_padding": "SAME"},
}


def check_torso(channels, padding) -> None:
  """Raises ValueError unless (channels, padding) describe a three-layer conv torso."""
  if len(channels) != 3:
    raise ValueError(f"torso_channels needs three conv layers, got {tuple(channels)}.")
  if padding not in TORSO_PADDINGS:
    raise ValueError(f"torso_padding must be one of {TORSO_PADDINGS}, got {padding!r}.")


def field_names(config_cls):
  return [f.name for f in dataclasses.fields(config_cls)]


def make_config(config_cls, **overrides):
  """config_cls(**overrides), rejecting unknown fields with a clear message.

  Lists are converted to tuples so that hidden sizes coming from command-line
  or JSON parsing stay hashable.
  """
  valid = field_names(config_cls)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise ValueError(f"Unknown config field(s) {unknown} for {config_cls.__name__}; " f"valid fields: {valid}.")
  overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
  return config_cls(**overrides)
