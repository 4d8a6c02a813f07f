"""2-D convolution (NHWC inputs, HWIO kernels, 'SAME' or 'VALID'), fast on XLA's CPU backend too.

XLA's CPU backend runs strided convolutions with few channels, such as the Atari torso's first two layers, at
4-8% of the matmul peak, and the input gradient of a strided one slower still
(results/image_update_2026-12-03.md). On CPU a strided convolution is therefore computed as the same function in
matmuls: space-to-depth by the stride turns a k x k kernel of stride s into t x t taps of stride 1
(t = ceil(k / s)) over s*s*C channels; ONE matmul applies every tap to every input block, and the output sums
t*t shifted slices of that product. Its gradients are matmuls too (a custom VJP). A stride-1 layer that is
differentiated runs as patches (im2col) and one matmul, and keeps the patches for its weight gradient: one
matmul where XLA transposes the input and runs a slow convolution; undifferentiated (a forward alone, such as
the success examples' encoding) it stays XLA's convolution, faster there than building patches. Images that
every update reads unchanged can be cut into blocks once (`prepare`, `Blocks`). Accelerators use
`lax.conv_general_dilated` throughout.
"""

import contextlib
import functools
from typing import Iterator, Tuple

import jax
import jax.numpy as jnp


IMPLEMENTATIONS = ("auto", "lax", "matmul")
_implementation = "auto"


@contextlib.contextmanager
def implementation(name: str) -> Iterator[None]:
  """Within the block, functions traced use `name` for every conv2d: 'lax', 'matmul' (strided layers) or 'auto'
  (matmul for strided layers on CPU). For comparisons and FLOP counts; results agree to float rounding.

  jax reuses a function's trace for every jit of it whatever this module says, so switching clears jax's
  caches (on entry and exit): what is traced inside, or after, sees the implementation then in force.
  """
  global _implementation
  if name not in IMPLEMENTATIONS:
    raise ValueError(f"conv implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
  previous, _implementation = _implementation, name
  if name != previous:
    jax.clear_caches()
  try:
    yield
  finally:
    _implementation = previous
    if name != previous:
      jax.clear_caches()


def _resolved() -> str:
  """The implementation in force: 'lax' or 'matmul'."""
  if _implementation == "auto":
    return "matmul" if jax.default_backend() == "cpu" else "lax"
  return _implementation


def conv2d(x, w: jnp.ndarray, stride: int, padding: str) -> jnp.ndarray:
  """x [B, H, W, C] (or those images as `Blocks`), w [k, k, C, O] -> [B, H', W', O]: lax's convolution, on CPU
  by matmuls when strided."""
  name = _resolved()
  if isinstance(x, Blocks):
    if (x.kernel, x.stride, x.padding) != (w.shape[0], stride, padding):
      raise ValueError(
        f"Blocks cut for kernel {x.kernel}, stride {x.stride}, {x.padding} padding reached a conv2d with kernel "
        f"{w.shape[0]}, stride {stride}, {padding} padding."
      )
    if name == "matmul":
      return _conv_of_blocks(x.rows.reshape(-1, x.rows.shape[-1]), w, stride, x.axes, x.shape[0])
    x = x.images()
  if name == "matmul":
    return strided_conv_as_matmul(x, w, stride, padding) if stride > 1 else unit_stride_conv(x, w, padding)
  return lax_conv(x, w, stride, padding)


def lax_conv(x: jnp.ndarray, w: jnp.ndarray, stride: int, padding: str) -> jnp.ndarray:
  return jax.lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _geometry(n: int, k: int, s: int, padding: str) -> Tuple[int, int, int, int]:
  """Along one axis of length n: (outputs, padding before, taps t, padded length covered by the blocks)."""
  if padding == "SAME":
    out = -(-n // s)
    before = max((out - 1) * s + k - n, 0) // 2
  elif padding == "VALID":
    out, before = (n - k) // s + 1, 0
  else:
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
  taps = -(-k // s)
  return out, before, taps, (out + taps - 1) * s


def _pad_or_crop(x: jnp.ndarray, axis: int, before: int, length: int) -> jnp.ndarray:
  """x along `axis` shifted right by `before` (zeros in front) and then cut or zero-filled to `length`."""
  pads = [(0, 0)] * x.ndim
  pads[axis] = (before, max(length - x.shape[axis] - before, 0))
  x = jnp.pad(x, pads)
  return jax.lax.slice_in_dim(x, 0, length, axis=axis)


def _unpad(x: jnp.ndarray, axis: int, before: int, n: int) -> jnp.ndarray:
  """The inverse of _pad_or_crop's placement: the n entries starting at `before` (zeros where it had cut)."""
  pads = [(0, 0)] * x.ndim
  pads[axis] = (0, max(before + n - x.shape[axis], 0))
  return jax.lax.slice_in_dim(jnp.pad(x, pads), before, before + n, axis=axis)


def _axes(x_shape, k, s, padding):
  """_geometry of the height and the width axes of an input of `x_shape` [B, H, W, C]."""
  return tuple(_geometry(n, k, s, padding) for n in x_shape[1:3])


def _padded(x, axes):
  """[B, H, W, C] placed in the padded [B, lh, lw, C] that `axes` (_axes) describe."""
  (_, bh, _, lh), (_, bw, _, lw) = axes
  return _pad_or_crop(_pad_or_crop(x, 1, bh, lh), 2, bw, lw)


def _unpadded(x, shape, axes):
  """The transpose of _padded: the [B, H, W, C] of `shape` cut back out (zeros where _padded had cut)."""
  (_, bh, _, _), (_, bw, _, _) = axes
  return _unpad(_unpad(x, 1, bh, shape[1]), 2, bw, shape[2])


def _to_blocks(x, s, axes):
  """[B, H, W, C] -> [B*mh*mw, s*s*C]: the padded input cut into s x s blocks, one row per block."""
  b, _, _, c = x.shape
  (_, _, _, lh), (_, _, _, lw) = axes
  x = _padded(x, axes)
  x = x.reshape(b, lh // s, s, lw // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b * (lh // s) * (lw // s), s * s * c)


def _from_blocks(blocks, shape, s, axes):
  """The transpose of _to_blocks: rows of blocks -> [B, H, W, C] (padding dropped)."""
  b, _, _, c = shape
  (_, _, _, lh), (_, _, _, lw) = axes
  x = blocks.reshape(b, lh // s, lw // s, s, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, lh, lw, c)
  return _unpadded(x, shape, axes)


def _kernel_blocks(w, s):
  """[k, k, C, O] -> [s*s*C, t*t*O]: column block (i, j) is tap (i, j)'s kernel over an input block."""
  k, _, c, o = w.shape
  t = -(-k // s)
  w = jnp.pad(w, ((0, t * s - k), (0, t * s - k), (0, 0), (0, 0)))
  return w.reshape(t, s, t, s, c, o).transpose(1, 3, 4, 0, 2, 5).reshape(s * s * c, t * t * o)


def _kernel_from_blocks(blocks, shape, s):
  k, _, c, o = shape
  t = -(-k // s)
  w = blocks.reshape(s, s, c, t, t, o).transpose(3, 0, 4, 1, 2, 5).reshape(t * s, t * s, c, o)
  return w[:k, :k]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv_as_matmul(x, w, stride, padding):
  """lax_conv(x, w, stride, padding) computed as space-to-depth, one matmul and shifted sums (see module doc)."""
  return _forward(x, w, stride, padding)[0]


def _forward(x, w, s, padding):
  axes = _axes(x.shape, w.shape[0], s, padding)
  blocks = _to_blocks(x, s, axes)
  return _conv_of_blocks(blocks, w, s, axes, x.shape[0]), (blocks, w, x.shape)


def _conv_of_blocks(blocks, w, s, axes, batch):
  """The strided conv of the images whose _to_blocks rows are `blocks`: one matmul, then the shifted sums."""
  (oh, _, t, lh), (ow, _, _, lw) = axes
  z = (blocks @ _kernel_blocks(w, s)).reshape(batch, lh // s, lw // s, t, t, w.shape[-1])
  return sum(z[:, i : i + oh, j : j + ow, i, j] for i in range(t) for j in range(t))


def _backward(s, padding, residuals, dy):
  blocks, w, x_shape = residuals
  axes = _axes(x_shape, w.shape[0], s, padding)
  (oh, _, t, lh), (ow, _, _, lw) = axes
  mh, mw = lh // s, lw // s
  # dz[:, I, J, i, j] = dy[:, I - i, J - j]: each tap's share of the output, placed back at its blocks.
  dz = jnp.stack(
    [jnp.pad(dy, ((0, 0), (i, mh - oh - i), (j, mw - ow - j), (0, 0))) for i in range(t) for j in range(t)], axis=3
  ).reshape(blocks.shape[0], t * t * w.shape[-1])
  dw = _kernel_from_blocks(blocks.T @ dz, w.shape, s)
  dx = _from_blocks(dz @ _kernel_blocks(w, s).T, x_shape, s, axes)
  return dx, dw


strided_conv_as_matmul.defvjp(_forward, _backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def unit_stride_conv(x, w, padding):
  """lax_conv(x, w, 1, padding); differentiated, as patches and one matmul (see module doc)."""
  return lax_conv(x, w, 1, padding)


def _unit_forward(x, w, padding):
  k, _, c, o = w.shape
  axes = _axes(x.shape, k, 1, padding)
  (oh, _, _, _), (ow, _, _, _) = axes
  xp = _padded(x, axes)
  patches = jnp.concatenate([xp[:, i : i + oh, j : j + ow] for i in range(k) for j in range(k)], axis=-1)
  patches = patches.reshape(-1, k * k * c)
  return (patches @ w.reshape(k * k * c, o)).reshape(x.shape[0], oh, ow, o), (patches, w, x.shape)


def _unit_backward(padding, residuals, dy):
  patches, w, x_shape = residuals
  k, _, c, o = w.shape
  axes = _axes(x_shape, k, 1, padding)
  (oh, _, _, lh), (ow, _, _, lw) = axes
  dy = dy.reshape(-1, o)
  dw = (patches.T @ dy).reshape(w.shape)
  dpatches = (dy @ w.reshape(k * k * c, o).T).reshape(x_shape[0], oh, ow, k * k, c)
  # Patch (i, j) of output (y, x) is the input at (y + i, x + j): add each back where it was read.
  dx = sum(
    jnp.pad(dpatches[:, :, :, i * k + j], ((0, 0), (i, lh - oh - i), (j, lw - ow - j), (0, 0)))
    for i in range(k)
    for j in range(k)
  )
  return _unpadded(dx, x_shape, axes), dw


unit_stride_conv.defvjp(_unit_forward, _unit_backward)


@jax.tree_util.register_pytree_node_class
class Blocks:
  """Images [B, H, W, C] already cut into the input blocks of one strided layer (`prepare`).

  Cutting images into blocks is a memory-bound shuffle that a strided conv2d otherwise repeats on every call. For
  images that every update reads unchanged (the success examples) it is done once; conv2d of Blocks is conv2d
  of the images (by their matmul, or on the images again under the 'lax' implementation). Blocks of the Atari
  torso's first layer take ~4.5x the bytes of the uint8 images (float32, padded): 11 MB for 200 64x64 images.
  A pytree whose one leaf is `rows` [B, blocks, s*s*C]: under jit and tree_map indexing it keeps its geometry.
  """

  def __init__(self, rows: jnp.ndarray, image_shape: Tuple[int, int, int], kernel: int, stride: int, padding: str):
    self.rows = rows
    self.image_shape = tuple(image_shape)
    self.kernel, self.stride, self.padding = kernel, stride, padding

  @property
  def shape(self) -> Tuple[int, ...]:
    """The images' shape [B, H, W, C]."""
    return (self.rows.shape[0],) + self.image_shape

  @property
  def dtype(self):
    return self.rows.dtype

  @property
  def axes(self):
    return _axes(self.shape, self.kernel, self.stride, self.padding)

  def images(self) -> jnp.ndarray:
    """The images back, [B, H, W, C]."""
    return _from_blocks(self.rows.reshape(-1, self.rows.shape[-1]), self.shape, self.stride, self.axes)

  def tree_flatten(self):
    return (self.rows,), (self.image_shape, self.kernel, self.stride, self.padding)

  @classmethod
  def tree_unflatten(cls, aux, children):
    return cls(children[0], *aux)


def cuts_blocks(stride: int) -> bool:
  """Whether `prepare` cuts images into Blocks for a layer of this stride: a strided layer run as a matmul (CPU)."""
  return stride > 1 and _resolved() == "matmul"


def prepare(x: jnp.ndarray, kernel: int, stride: int, padding: str):
  """Images [B, H, W, C] as the Blocks a conv2d of this geometry reads when it runs as a matmul (a strided layer
  on CPU), else the images themselves."""
  if not cuts_blocks(stride):
    return x
  blocks = _to_blocks(x, stride, _axes(x.shape, kernel, stride, padding))
  return Blocks(blocks.reshape(x.shape[0], -1, blocks.shape[-1]), x.shape[1:], kernel, stride, padding)
