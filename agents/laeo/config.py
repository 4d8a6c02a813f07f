"""LAEO configuration."""

import dataclasses
from typing import Tuple

from agents.common import config_utils

Q_ESTIMATORS = ("logmeanexp", "single_example")


@dataclasses.dataclass(frozen=True)
class LaeoConfig:
  """Hyper-parameters of LAEO (contrastive example-based control).

  Attributes:
    batch_size: batch size B of 'future' batches (read by the data pipeline;
      the B x B NCE logit matrix uses all B futures as each other's negatives).
    learning_rate: Adam learning rate of both critic and policy.
    discount: gamma of the geometric future-state sampling done by the data
      pipeline (LAEO's update itself has no bootstrapping).
    hidden_sizes: hidden layers of the phi(s, a) and psi(s_f) MLPs.
    repr_dim: dimension of the phi / psi representations.
    policy_hidden_sizes: hidden layers of the tanh-Gaussian policy MLP.
    bc_coef: lambda in (1 - lambda) * E[-Q(s, pi(s))] + lambda * E[-log pi(a|s)].
      0.5 (default) is the authors' released command and measured best here
      (results/defaults_check.csv); 0.05 is the paper text (--config=bc_coef=0.05).
    q_estimator: 'logmeanexp' -> Q(s,a) = log mean_k exp f(s, a, s*_k) over all
      success examples (paper Eq. 7); 'single_example' -> the authors'
      released variant, Q(s,a) = f(s, a, s*) with one success example drawn
      uniformly per batch element.
    num_q_success_examples: 'logmeanexp' only: the log-mean-exp of each update runs over this many success
      examples drawn without replacement (a fresh subset per update, shared by the batch) instead of all of them;
      0 (default) = all. A subset's log-mean-exp underestimates the full one (Jensen); its bias is measured in
      results/q_subset_bias.md. It saves encoding every success example at
      every step, most of the cost for images.
    log_std_min, log_std_max: clipping range of the policy log-std.
    action_clip_eps: data actions are clipped to (-1+eps, 1-eps) before atanh.
    torso_channels: channels of the three conv layers of every image encoder
      (ignored for vector observations); (32, 64, 64) is the paper's Atari torso.
    torso_padding: 'SAME' (Acme's Atari torso, the authors' encoder: an 8x8 grid from 64x64 images) or 'VALID'
      (a 4x4 grid).
  """

  batch_size: int = 1024
  learning_rate: float = 3e-4
  discount: float = 0.99
  hidden_sizes: Tuple[int, ...] = (1024, 1024)
  repr_dim: int = 256
  policy_hidden_sizes: Tuple[int, ...] = (1024, 1024)
  bc_coef: float = 0.5
  q_estimator: str = "logmeanexp"
  num_q_success_examples: int = 0
  log_std_min: float = -5.0
  log_std_max: float = 2.0
  action_clip_eps: float = 1e-6
  torso_channels: Tuple[int, int, int] = config_utils.ATARI_CHANNELS
  torso_padding: str = "SAME"

  def __post_init__(self):
    config_utils.check_torso(self.torso_channels, self.torso_padding)
    if self.q_estimator not in Q_ESTIMATORS:
      raise ValueError(f"q_estimator must be one of {Q_ESTIMATORS}, " f"got {self.q_estimator!r}.")
    if self.num_q_success_examples < 0:
      raise ValueError(f"num_q_success_examples must be >= 0 (0: all), got {self.num_q_success_examples}.")
    if not 0.0 <= self.bc_coef <= 1.0:
      raise ValueError(f"bc_coef must lie in [0, 1], got {self.bc_coef}.")
    if self.log_std_min > self.log_std_max:
      raise ValueError("log_std_min must not exceed log_std_max.")


# Size presets (`--preset`): 'paper' is the paper's 1024-wide networks and batch 1024 (the same for every
# agent, so the baselines are compared like for like) with the Atari conv torso; 'laptop' fits a 2-core CPU
# and its conv torso has half the channels (a quarter of the FLOPs).
PRESETS = {
  "paper": {
    "hidden_sizes": (1024, 1024),
    "repr_dim": 256,
    "policy_hidden_sizes": (1024, 1024),
    "batch_size": 1024,
    **config_utils.TORSO_PRESETS["paper"],
  },
  "laptop": {
    "hidden_sizes": (256, 256),
    "repr_dim": 64,
    "policy_hidden_sizes": (256, 256),
    "batch_size": 256,
    **config_utils.TORSO_PRESETS["laptop"],
  },
}
