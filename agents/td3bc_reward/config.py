"""Configuration of TD3+BC on a learned reward (ORIL / PURL)."""

import dataclasses
from typing import Tuple

from agents.common import config_utils

CLASSIFIER_LOSSES = ("bce", "pu")


@dataclasses.dataclass(frozen=True)
class RewardTD3BCConfig:
  """TD3+BC on a learned reward: ORIL (classifier_loss 'bce') and PURL ('pu'), the agents.make_builder names.

  A reward classifier r(s) is trained on success examples (positives) vs
  dataset states (unlabeled / negatives); TD3+BC is then trained on the
  predicted reward r = sigmoid(classifier(next_observation)).

  Attributes:
    batch_size: transition batch size (read by the data pipeline); the
      classifier sees the batch's next_observations as unlabeled data and as
      many success examples, drawn uniformly with replacement.
    learning_rate: Adam learning rate of actor, critics and classifier.
    discount: gamma of the TD target r + gamma * discount_t * Q'(s', a').
    policy_hidden_sizes / critic_hidden_sizes / classifier_hidden_sizes:
      hidden layers of the deterministic tanh actor, each twin critic and the
      reward classifier.
    classifier_loss: 'bce' (ORIL: positives vs dataset-as-negatives) or 'pu'
      (PURL: non-negative PU risk with class prior pu_eta).
    pu_eta: class prior eta of the PU loss (ignored by 'bce').
    classifier_steps: number of initial updates that train ONLY the
      classifier (pretraining); afterwards classifier, critics and actor are
      all updated in every step (classifier first, then the critics use the
      freshly updated classifier). 0 = fully joint training.
    bc_alpha: TD3+BC alpha; actor loss = -alpha/mean|Q| * Q(s, pi(s)) +
      mean((pi(s) - a)^2).
    tau: Polyak rate of the target networks.
    policy_delay: the actor and targets are updated every policy_delay steps.
    target_noise, target_noise_clip: target policy smoothing noise std/clip.
    exploration_noise: std of the Gaussian noise added by the non-evaluation
      policy (evaluation is deterministic).
    torso_channels: channels of the three conv layers of every image encoder
      (ignored for vector observations); (32, 64, 64) is the paper's Atari torso.
    torso_padding: 'SAME' (Acme's Atari torso, the authors' encoder: an 8x8 grid from 64x64 images) or 'VALID'
      (a 4x4 grid).
  """

  batch_size: int = 256
  learning_rate: float = 3e-4
  discount: float = 0.99
  policy_hidden_sizes: Tuple[int, ...] = (256, 256)
  critic_hidden_sizes: Tuple[int, ...] = (256, 256)
  classifier_hidden_sizes: Tuple[int, ...] = (256, 256)
  classifier_loss: str = "bce"
  pu_eta: float = 0.5
  classifier_steps: int = 0
  bc_alpha: float = 2.5
  tau: float = 0.005
  policy_delay: int = 2
  target_noise: float = 0.2
  target_noise_clip: float = 0.5
  exploration_noise: float = 0.1
  torso_channels: Tuple[int, int, int] = config_utils.ATARI_CHANNELS
  torso_padding: str = "SAME"

  def __post_init__(self):
    config_utils.check_torso(self.torso_channels, self.torso_padding)
    if self.classifier_loss not in CLASSIFIER_LOSSES:
      raise ValueError(f"classifier_loss must be one of {CLASSIFIER_LOSSES}, " f"got {self.classifier_loss!r}.")
    if not 0.0 < self.pu_eta < 1.0:
      raise ValueError(f"pu_eta must lie in (0, 1), got {self.pu_eta}.")
    if self.policy_delay < 1:
      raise ValueError("policy_delay must be >= 1.")
    if self.classifier_steps < 0:
      raise ValueError("classifier_steps must be >= 0.")


# Size presets (`--preset`): 'paper' is the paper's 1024-wide networks and batch 1024 (the same for every
# agent, so the baselines are compared like for like) with the Atari conv torso; 'laptop' fits a 2-core CPU
# and its conv torso has half the channels (a quarter of the FLOPs).
PRESETS = {
  "paper": {
    "policy_hidden_sizes": (1024, 1024),
    "critic_hidden_sizes": (1024, 1024),
    "classifier_hidden_sizes": (1024, 1024),
    "batch_size": 1024,
    **config_utils.TORSO_PRESETS["paper"],
  },
  "laptop": {
    "policy_hidden_sizes": (256, 256),
    "critic_hidden_sizes": (256, 256),
    "classifier_hidden_sizes": (256, 256),
    "batch_size": 256,
    **config_utils.TORSO_PRESETS["laptop"],
  },
}
