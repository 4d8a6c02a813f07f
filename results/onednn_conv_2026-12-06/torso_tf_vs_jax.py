"""The Atari torso (laptop channels), forward and weight gradients of 192 images: TensorFlow (oneDNN on or off by
TF_ENABLE_ONEDNN_OPTS) against agents/common/conv.py (python torso_tf_vs_jax.py tf|jax)."""

import os, sys, time

which = sys.argv[1]
import numpy as np

B = 192
rng = np.random.default_rng(0)
x = rng.random((B, 64, 64, 3), dtype=np.float32)
ch = (16, 32, 32)
shapes = [(8, 8, 3, ch[0]), (4, 4, ch[0], ch[1]), (3, 3, ch[1], ch[2])]
strides = [4, 2, 1]
ws = [rng.normal(size=s).astype(np.float32) * 0.1 for s in shapes]
g = rng.normal(size=(B, 8, 8, ch[2])).astype(np.float32)


def timeit(f, n=20):
  f()
  f()
  best = []
  for _ in range(4):
    t0 = time.process_time()
    w0 = time.perf_counter()
    for _ in range(n):
      f()
    best.append(((time.process_time() - t0) / n * 1e3, (time.perf_counter() - w0) / n * 1e3))
  return min(best, key=lambda t: t[1])


if which == "tf":
  import tensorflow as tf

  tw = [tf.Variable(w) for w in ws]
  tx = tf.constant(x)
  tg = tf.constant(g)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      h = tx
      for w, s in zip(tw, strides):
        h = tf.nn.relu(tf.nn.conv2d(h, w, s, "SAME"))
      loss = tf.reduce_sum(h * tg)
    return tape.gradient(loss, tw)

  f = lambda: [t.numpy() for t in step()]
else:
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
  import jax, jax.numpy as jnp
  from agents.common import allocator, conv

  if os.environ.get("KEEP", "1") == "1":  # As learner processes do (KEEP=0: glibc's defaults).
    allocator.keep_freed_memory()

  @jax.jit
  def step(ws):
    def loss(ws):
      h = jnp.asarray(x)
      for w, s in zip(ws, strides):
        h = jax.nn.relu(conv.conv2d(h, w, s, "SAME"))
      return jnp.sum(h * g)

    return jax.grad(loss)(ws)

  jws = [jnp.asarray(w) for w in ws]
  f = lambda: jax.block_until_ready(step(jws))
cpu, wall = timeit(f)
print(which, os.environ.get("TF_ENABLE_ONEDNN_OPTS"), f"cpu {cpu:.1f} ms wall {wall:.1f} ms")
