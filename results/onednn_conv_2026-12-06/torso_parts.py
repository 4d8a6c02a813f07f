"""The torso calls of a batch-64 LAEO image update, timed with each convolution (python torso_parts.py matmul
onednn matmul onednn)."""

import os, sys, time

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tensorflow as tf
import numpy as np, jax, jax.numpy as jnp
from agents.common import allocator, conv

if os.environ.get("KEEP", "1") == "1":  # As learner processes do (KEEP=0: glibc's defaults).
  allocator.keep_freed_memory()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torso_callbacks import tfconv

rng = np.random.default_rng(0)
ch = (16, 32, 32)
strides = [4, 2, 1]
shapes = [(8, 8, 3, ch[0]), (4, 4, ch[0], ch[1]), (3, 3, ch[1], ch[2])]
ws = [jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.1) for s in shapes]


def torso(ws, x):
  for w, s in zip(ws, strides):
    x = jax.nn.relu(CONV(x, w, s, "SAME"))
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


for impl in sys.argv[1:]:
  CONV = conv.conv2d if impl == "matmul" else tfconv
  for B, grad in ((128, True), (64, True), (264, False)):
    x = jnp.asarray(rng.random((B, 64, 64, 3), dtype=np.float32))
    if grad:
      f = jax.jit(jax.grad(lambda ws, x: jnp.sum(torso(ws, x) ** 2)))
    else:
      f = jax.jit(lambda ws, x: torso(ws, x))
    print(impl, B, "grad" if grad else "fwd", "%.1f ms" % timeit(lambda: jax.block_until_ready(f(ws, x))))
