"""The Atari torso (laptop channels) as ONE host callback into TensorFlow (oneDNN; forward, and weight gradients
with the forward recomputed) against agents/common/conv.py: gradients compared, both timed at batch 64 and 128."""

import os, sys, time

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tensorflow as tf
import numpy as np, jax, jax.numpy as jnp, functools
from agents.common import allocator, conv

if os.environ.get("KEEP", "1") == "1":  # As learner processes do (KEEP=0: glibc's defaults).
  allocator.keep_freed_memory()
rng = np.random.default_rng(0)
ch = (16, 32, 32)
strides = [4, 2, 1]
shapes = [(8, 8, 3, ch[0]), (4, 4, ch[0], ch[1]), (3, 3, ch[1], ch[2])]
params = [
  (
    jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.1),
    jnp.asarray(rng.normal(size=s[-1:]).astype(np.float32) * 0.1),
  )
  for s in shapes
]


def tf_torso(x, *wb):
  for i, s in enumerate(strides):
    x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, wb[2 * i], s, "SAME"), wb[2 * i + 1]))
  return x


fwd_fn = tf.function(tf_torso, jit_compile=False)


@tf.function
def bwd_fn(x, dy, *wb):
  with tf.GradientTape() as tape:
    tape.watch(wb)
    y = tf_torso(x, *wb)
  return tape.gradient(y, wb, output_gradients=dy)


def flat(params):
  return [a for wb in params for a in wb]


def host(fn):
  return lambda *a: jax.tree_util.tree_map(np.asarray, fn(*[tf.constant(np.asarray(v)) for v in a]))


@jax.custom_vjp
def torso_tf(params, x):
  out = jax.ShapeDtypeStruct((x.shape[0], 8, 8, ch[-1]), jnp.float32)
  return jax.pure_callback(host(fwd_fn), out, x, *flat(params))


def _f(params, x):
  return torso_tf(params, x), (params, x)


def _b(res, dy):
  params, x = res
  shapes_ = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in flat(params)]
  g = jax.pure_callback(lambda *a: [np.asarray(t) for t in host(bwd_fn)(*a)], shapes_, x, dy, *flat(params))
  it = iter(g)
  return [(next(it), next(it)) for _ in params], jnp.zeros_like(x)


torso_tf.defvjp(_f, _b)


def torso_jax(params, x):
  for (w, b), s in zip(params, strides):
    x = jax.nn.relu(conv.conv2d(x, w, s, "SAME") + b)
  return x


def timeit(f, n=10):
  f()
  f()
  res = []
  for _ in range(5):
    w0 = time.perf_counter()
    for _ in range(n):
      f()
    res.append((time.perf_counter() - w0) / n * 1e3)
  return min(res)


for B in (64, 128):
  x = jnp.asarray(rng.random((B, 64, 64, 3), dtype=np.float32))
  for name, t in (("jax", torso_jax), ("tf1", torso_tf)):
    g = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(t(p, x)))))
    f = jax.jit(t)
    if name == "tf1":
      a = jax.tree_util.tree_leaves(g(params, x))
      b = jax.tree_util.tree_leaves(jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(torso_jax(p, x)))))(params, x))
      print("max rel", max(float(jnp.max(jnp.abs(u - v)) / jnp.max(jnp.abs(v))) for u, v in zip(a, b)))
    print(
      B,
      name,
      "grad %.1f ms  fwd %.1f ms"
      % (timeit(lambda: jax.block_until_ready(g(params, x))), timeit(lambda: jax.block_until_ready(f(params, x)))),
    )
