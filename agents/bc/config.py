"""BC configuration."""

import dataclasses
from typing import Tuple

from agents.common import config_utils


@dataclasses.dataclass(frozen=True)
class BcConfig:
  """Behavioural cloning: maximise log pi(a_data | s), pi a tanh-Gaussian.

  The policy network is the same as LAEO's (so BC equals LAEO's policy with
  bc_coef = 1 and no critic).

  Attributes:
    batch_size: transition batch size (read by the data pipeline).
    learning_rate: Adam learning rate.
    discount: only forwarded to the data pipeline (BC does not bootstrap).
    policy_hidden_sizes: hidden layers of the policy MLP.
    log_std_min, log_std_max: clipping range of the policy log-std.
    action_clip_eps: data actions are clipped to (-1+eps, 1-eps) before atanh.
    torso_channels: channels of the three conv layers of every image encoder
      (ignored for vector observations); (32, 64, 64) is the paper's Atari torso.
    torso_padding: 'SAME' (Acme's Atari torso, the authors' encoder: an 8x8 grid from 64x64 images) or 'VALID'
      (a 4x4 grid).
  """

  batch_size: int = 256
  learning_rate: float = 3e-4
  discount: float = 0.99
  policy_hidden_sizes: Tuple[int, ...] = (1024, 1024)
  log_std_min: float = -5.0
  log_std_max: float = 2.0
  action_clip_eps: float = 1e-6
  torso_channels: Tuple[int, int, int] = config_utils.ATARI_CHANNELS
  torso_padding: str = "SAME"

  def __post_init__(self):
    config_utils.check_torso(self.torso_channels, self.torso_padding)
    if self.log_std_min > self.log_std_max:
      raise ValueError("log_std_min must not exceed log_std_max.")


# Size presets (`--preset`): 'paper' is the paper's 1024-wide networks and batch 1024 (the same for every
# agent, so the baselines are compared like for like) with the Atari conv torso; 'laptop' fits a 2-core CPU
# and its conv torso has half the channels (a quarter of the FLOPs).
PRESETS = {
  "paper": {
    "policy_hidden_sizes": (1024, 1024),
    "batch_size": 1024,
    **config_utils.TORSO_PRESETS["paper"],
  },
  "laptop": {
    "policy_hidden_sizes": (256, 256),
    "batch_size": 256,
    **config_utils.TORSO_PRESETS["laptop"],
  },
}
