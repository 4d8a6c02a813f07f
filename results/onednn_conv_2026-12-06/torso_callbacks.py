"""The Atari torso (laptop channels) by TensorFlow oneDNN convolutions inside jit, as host callbacks with a
custom VJP, against agents/common/conv.py: gradients compared, forward+backward timed (python torso_callbacks.py)."""

import os, sys, time

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import jax, jax.numpy as jnp
from agents.common import conv
import functools


def _tf(fn):
  def run(*args):
    return fn(*[tf.constant(np.asarray(a)) for a in args]).numpy()

  return run


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def tfconv(x, w, s, padding):
  out = jax.ShapeDtypeStruct(jax.eval_shape(lambda: conv.lax_conv(x, w, s, padding)).shape, x.dtype)
  return jax.pure_callback(_tf(lambda x, w: tf.nn.conv2d(x, w, s, padding)), out, x, w)


def _fwd(x, w, s, padding):
  return tfconv(x, w, s, padding), (x, w)


def _bwd(s, padding, res, dy):
  x, w = res
  dx = jax.pure_callback(
    _tf(lambda w, dy: tf.compat.v1.nn.conv2d_backprop_input(tf.constant(list(x.shape)), w, dy, [1, s, s, 1], padding)),
    jax.ShapeDtypeStruct(x.shape, x.dtype),
    w,
    dy,
  )
  dw = jax.pure_callback(
    _tf(lambda x, dy: tf.compat.v1.nn.conv2d_backprop_filter(x, tf.constant(list(w.shape)), dy, [1, s, s, 1], padding)),
    jax.ShapeDtypeStruct(w.shape, w.dtype),
    x,
    dy,
  )
  return dx, dw


tfconv.defvjp(_fwd, _bwd)

if __name__ == "__main__":
  B = int(sys.argv[2]) if len(sys.argv) > 2 else 192
  rng = np.random.default_rng(0)
  x = rng.random((B, 64, 64, 3), dtype=np.float32)
  ch = (16, 32, 32)
  shapes = [(8, 8, 3, ch[0]), (4, 4, ch[0], ch[1]), (3, 3, ch[1], ch[2])]
  strides = [4, 2, 1]
  ws = [jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.1) for s in shapes]
  g = rng.normal(size=(B, 8, 8, ch[2])).astype(np.float32)

  def make(c):
    @jax.jit
    def step(ws):
      def loss(ws):
        h = jnp.asarray(x)
        for w, s in zip(ws, strides):
          h = jax.nn.relu(c(h, w, s, "SAME"))
        return jnp.sum(h * g)

      return jax.grad(loss)(ws)

    return step

  impls = {"jax": make(conv.conv2d), "tf": make(tfconv), "lax": make(conv.lax_conv)}
  a = impls["jax"](ws)
  b = impls["tf"](ws)
  for u, v in zip(a, b):
    print("max rel diff", float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(u))))

  def timeit(f, n=20):
    f()
    f()
    res = []
    for _ in range(4):
      t0 = time.process_time()
      w0 = time.perf_counter()
      for _ in range(n):
        f()
      res.append(((time.process_time() - t0) / n * 1e3, (time.perf_counter() - w0) / n * 1e3))
    return min(res, key=lambda t: t[1])

  for r in range(2):
    for name, st in impls.items():
      print(name, "cpu %.1f wall %.1f ms" % timeit(lambda: jax.block_until_ready(st(ws))))
