"""Shared network pieces: observation encoder (standardised vector, Atari conv torso, or both for packed fields)."""

from typing import Mapping, Optional, Sequence

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from dm_env import specs

from agents.common import config_utils
from agents.common import conv
from agents.common import distributions
from data_pipeline import step_format


def is_image_spec(observation_spec: specs.Array) -> bool:
  """Observations with shape [H, W, C] are images; everything else is a vector."""
  return len(observation_spec.shape) == 3


def has_images(observation_spec: specs.Array) -> bool:
  """True when the networks encode an image: an [H, W, C] observation or a packed one with an image field."""
  layout = getattr(observation_spec, "layout", None)
  return is_image_spec(observation_spec) or (layout is not None and bool(layout.images))


# Per-dimension {'mean': [...], 'std': [...]} of a dataset's vector observations (see
# data_pipeline.rlds_writer.observation_stats); networks standardise observations with it.
ObservationStats = Optional[Mapping[str, Sequence[float]]]

# Channels of the Atari torso's three conv layers: the paper's, and a quarter of its FLOPs for CPUs.
ATARI_CHANNELS = config_utils.ATARI_CHANNELS
SMALL_CHANNELS = config_utils.SMALL_CHANNELS


class AtariTorso(hk.Module):
  """Conv torso: c0 8x8 s4, c1 4x4 s2, c2 3x3 s1 (ReLU), flattened.

  With the default channels (32, 64, 64) and 'SAME' padding (Acme's Atari torso, the authors' encoder) a
  64x64x3 input gives an 8*8*64 = 4096 dimensional feature vector; with 'VALID' padding 4*4*64 = 1024.
  """

  def __init__(self, channels: Sequence[int] = ATARI_CHANNELS, padding: str = "SAME", name: str = "atari_torso"):
    super().__init__(name=name)
    config_utils.check_torso(channels, padding)
    self._channels = tuple(channels)
    self._padding = padding

  KERNELS, STRIDES = (8, 4, 3), (4, 2, 1)

  def __call__(self, x) -> jnp.ndarray:
    """x: images [B, H, W, C] in [0, 1], or those images as `prepare_images` made them."""
    for channels, kernel, stride in zip(self._channels, self.KERNELS, self.STRIDES):
      x = jax.nn.relu(Conv2D(channels, kernel, stride, self._padding)(x))
    return x.reshape(x.shape[:-3] + (-1,))


def prepare_images(observation_spec: specs.Array, torso_padding: str = "SAME"):
  """fn(obs [B, ...]) -> what every Encoder of `observation_spec` reads in place of obs, the same features.

  Image observations come back scaled and cut into the first conv layer's input blocks (conv.Blocks) when that
  layer runs as a matmul (on CPU under XLA); anything else, images under other conv implementations included,
  unchanged: the Encoder scales raw images itself. For images that every update reads unchanged (the success
  examples), so that the cut is made once (results/image_update_2026-12-03c.md).
  """
  image = is_image_spec(observation_spec) and getattr(observation_spec, "layout", None) is None
  uint8 = np.dtype(observation_spec.dtype) == np.uint8

  def prepare(obs):
    if not image or not conv.cuts_blocks(AtariTorso.STRIDES[0]):
      return obs  # The Encoder scales raw images itself.
    return conv.prepare(_scaled_image(obs, uint8), AtariTorso.KERNELS[0], AtariTorso.STRIDES[0], torso_padding)

  return prepare


def _scaled_image(obs: jnp.ndarray, uint8: bool) -> jnp.ndarray:
  x = obs.astype(jnp.float32)
  return x / 255.0 if uint8 else x


class Conv2D(hk.Module):
  """hk.Conv2D's parameters (names, shapes, initialisers: the same checkpoints and seeds) computed by
  `conv.conv2d`, which keeps strided convolutions off XLA's slow CPU convolutions."""

  def __init__(self, channels: int, kernel: int, stride: int, padding: str, name: Optional[str] = None):
    super().__init__(name=name)
    self._channels, self._kernel, self._stride, self._padding = channels, kernel, stride, padding

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    shape = (self._kernel, self._kernel, x.shape[-1], self._channels)
    w_init = hk.initializers.TruncatedNormal(stddev=1.0 / np.sqrt(np.prod(shape[:-1])))
    w = hk.get_parameter("w", shape, x.dtype, init=w_init)
    b = hk.get_parameter("b", (self._channels,), x.dtype, init=jnp.zeros)
    return conv.conv2d(x, w, self._stride, self._padding) + b


class Encoder(hk.Module):
  """Maps a batch of observations [B, *obs_shape] to features [B, D].

  Vector observations are cast to float32, standardised with `observation_stats`
  ((x - mean) / std, when given: raw Fetch positions vary by centimetres around
  ~1, too little for an MLP to resolve in a short run) and flattened. Image observations
  (rank-3 spec) are cast to float32 (divided by 255 when the spec is uint8)
  and passed through an AtariTorso with `torso_channels` and `torso_padding`. Packed observations of several
  fields (data_pipeline.step_format.PackedSpec) are unpacked: each image through a torso of its own, the vector
  fields joined and standardised, then all features joined. One Encoder instance = one set of torso weights,
  so calling the same instance from several heads shares the torso.
  """

  def __init__(
    self,
    observation_spec: specs.Array,
    name: str = "encoder",
    torso_channels: Sequence[int] = ATARI_CHANNELS,
    observation_stats: ObservationStats = None,
    torso_padding: str = "SAME",
  ):
    super().__init__(name=name)
    self._torso_channels = tuple(torso_channels)
    self._torso_padding = torso_padding
    self._stats = check_observation_stats(observation_spec, observation_stats)
    self._image = is_image_spec(observation_spec)
    self._uint8 = np.dtype(observation_spec.dtype) == np.uint8
    self._ndim = len(observation_spec.shape)
    self._layout = getattr(observation_spec, "layout", None)

  @classmethod
  def from_config(
    cls, observation_spec: specs.Array, config, observation_stats: ObservationStats = None, name="encoder"
  ):
    """An Encoder with an agent config's `torso_channels` and `torso_padding`."""
    return cls(
      observation_spec,
      name=name,
      torso_channels=config.torso_channels,
      observation_stats=observation_stats,
      torso_padding=config.torso_padding,
    )

  def __call__(self, obs) -> jnp.ndarray:
    """obs [B, *obs_shape], or what prepare_images made of it."""
    if self._layout is not None:
      return self._packed(obs)
    if self._image:
      x = obs if isinstance(obs, conv.Blocks) else _scaled_image(obs, self._uint8)
      return AtariTorso(self._torso_channels, self._torso_padding)(x)
    x = obs.astype(jnp.float32)
    if self._stats is not None:
      x = (x - self._stats[0]) / self._stats[1]
    return x.reshape(x.shape[: x.ndim - self._ndim] + (-1,))

  def _packed(self, obs: jnp.ndarray) -> jnp.ndarray:
    images, vectors = [], []
    for field, value in step_format.unpack(obs, self._layout):
      if field.kind == step_format.IMAGE:
        torso = AtariTorso(self._torso_channels, self._torso_padding, name=f"atari_torso_{len(images)}")
        images.append(torso(value.astype(jnp.float32) / 255.0))
      else:
        vectors.append(value)
    features = images
    if vectors:
      x = jnp.concatenate(vectors, axis=-1)
      features.append(x if self._stats is None else (x - self._stats[0]) / self._stats[1])
    return jnp.concatenate(features, axis=-1)


def mlp(hidden_sizes: Sequence[int], output_size: int, name: str) -> hk.nets.MLP:
  """ReLU MLP with a linear output layer."""
  return hk.nets.MLP(tuple(hidden_sizes) + (output_size,), activation=jax.nn.relu, activate_final=False, name=name)


class StackedMLP(hk.Module):
  """`num` independent ReLU MLPs (linear output layer) run as one batched matmul per layer.

  Each member has hk.nets.MLP's initialisation (truncated normal weights of stddev 1/sqrt(fan_in), zero
  biases), drawn independently; weights are stored stacked, w_i [num, in, out] and b_i [num, out]. Input
  [B, in] is shared by every member, [num, B, in] is one input each; the output is [num, B, output_size].
  On a CPU one [2, 256, 256] x [2, 256, 256] batched dot runs ~1.6x faster than two plain ones.
  """

  def __init__(self, num: int, hidden_sizes: Sequence[int], output_size: int, name: str):
    super().__init__(name=name)
    self._num = num
    self._sizes = tuple(hidden_sizes) + (output_size,)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for i, size in enumerate(self._sizes):
      fan_in = x.shape[-1]
      init = hk.initializers.TruncatedNormal(1.0 / np.sqrt(fan_in))
      w = hk.get_parameter(f"w_{i}", (self._num, fan_in, size), x.dtype, init)
      b = hk.get_parameter(f"b_{i}", (self._num, size), x.dtype, jnp.zeros)
      if x.ndim == 2:
        # A shared input meets every member's weights in ONE plain matmul [B, in] x [in, num * out]: on XLA's
        # CPU backend 2-4x faster than the einsum "bi,kio->kbo" (image features are 2048 wide).
        y = x @ w.transpose(1, 0, 2).reshape(fan_in, self._num * size)
        x = y.reshape(x.shape[0], self._num, size).transpose(1, 0, 2)
      else:
        x = jnp.einsum("kbi,kio->kbo", x, w)
      x = x + b[:, None, :]
      if i + 1 < len(self._sizes):
        x = jax.nn.relu(x)
    return x


def dummy_observation(observation_spec: specs.Array, batch: int = 1):
  return np.zeros((batch,) + tuple(observation_spec.shape), observation_spec.dtype)


def dummy_action(action_spec: specs.Array, batch: int = 1):
  return np.zeros((batch,) + tuple(action_spec.shape), np.float32)


def batched_policy(observation_spec: specs.Array, batched_fn):
  """Wraps fn(params, key, obs[B, ...], evaluation) to accept unbatched obs too."""
  obs_ndim = len(observation_spec.shape)

  def policy(params, key, observation, evaluation=True):
    observation = jnp.asarray(observation)
    if observation.ndim == obs_ndim:
      return batched_fn(params, key, observation[None], evaluation)[0]
    return batched_fn(params, key, observation, evaluation)

  return policy


def make_tanh_gaussian_policy(
  observation_spec: specs.Array,
  action_spec: specs.Array,
  config,
  observation_stats: ObservationStats = None,
) -> hk.Transformed:
  """apply(params, obs[B, ...]) -> (mean [B, A], log_std [B, A]).

  Encoder (own torso for images) -> ReLU MLP (`config.policy_hidden_sizes`) -> linear 2A outputs; the log-std is
  clipped to [`config.log_std_min`, `config.log_std_max`].
  """
  action_dim = int(np.prod(action_spec.shape))

  def forward(obs):
    x = Encoder.from_config(observation_spec, config, observation_stats, name="policy_encoder")(obs)
    out = mlp(config.policy_hidden_sizes, 2 * action_dim, name="policy_mlp")(x)
    mean, log_std = jnp.split(out, 2, axis=-1)
    log_std = jnp.clip(log_std, config.log_std_min, config.log_std_max)
    return mean, log_std

  return hk.without_apply_rng(hk.transform(forward))


def make_tanh_gaussian_actor(observation_spec: specs.Array, policy_apply):
  """fn(params, key, obs, evaluation) -> action; tanh(mean) when evaluating.

  `evaluation` may be a Python bool or a traced boolean.
  """

  def batched(params, key, obs, evaluation):
    mean, log_std = policy_apply(params, obs)
    sample, _ = distributions.tanh_gaussian_sample(key, mean, log_std)
    mode = distributions.tanh_gaussian_mode(mean)
    return jnp.where(jnp.asarray(evaluation), mode, sample)

  return batched_policy(observation_spec, batched)


def check_observation_stats(observation_spec: specs.Array, observation_stats: ObservationStats):
  """(mean, std) float32 arrays shaped like the observation, or None; raises on stats that do not fit."""
  if observation_stats is None:
    return None
  layout = getattr(observation_spec, "layout", None)
  if is_image_spec(observation_spec) or (layout is not None and not layout.vector_size):
    raise ValueError("observation_stats standardise vector observations; images are scaled to [0, 1].")
  shape = (layout.vector_size,) if layout is not None else observation_spec.shape
  try:
    mean, std = (np.asarray(observation_stats[k], np.float32).reshape(shape) for k in ("mean", "std"))
  except (KeyError, ValueError) as e:
    raise ValueError(f'observation_stats need "mean" and "std" of shape {shape}: {e}') from e
  if not np.all(std > 0):
    raise ValueError('observation_stats["std"] must be positive.')
  return mean, std


def check_action_spec(action_spec: specs.Array) -> None:
  """All agents emit tanh-squashed actions: bounded specs must be [-1, 1]."""
  if isinstance(action_spec, specs.BoundedArray):
    if not (np.allclose(action_spec.minimum, -1.0) and np.allclose(action_spec.maximum, 1.0)):
      raise ValueError(
        "Actions must be normalised to [-1, 1]; got bounds " f"{action_spec.minimum}, {action_spec.maximum}."
      )
