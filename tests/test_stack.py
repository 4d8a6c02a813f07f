"""Proves that the pinned stack works together in one process and under Launchpad subprocesses."""

import os
import subprocess
import sys

import numpy as np
import tensorflow as tf  # Imported first on purpose: MuJoCo rendering below must coexist with it.

HERE = os.path.dirname(os.path.abspath(__file__))


def test_pinned_versions_are_the_ones_installed():
  import haiku
  import jax
  import launchpad  # noqa: F401  (import must succeed next to TF 2.8)
  import mujoco
  import reverb  # noqa: F401

  assert tf.__version__ == "2.8.4"
  assert jax.__version__ == "0.4.25"
  assert haiku.__version__ == "0.0.12"
  assert mujoco.__version__ == "3.3.0"
  assert sys.version_info[:2] == (3, 10)


def test_reverb_server_insert_and_sample():
  import reverb

  table = reverb.Table(
    name="t",
    sampler=reverb.selectors.Uniform(),
    remover=reverb.selectors.Fifo(),
    max_size=10,
    rate_limiter=reverb.rate_limiters.MinSize(1),
  )
  server = reverb.Server([table])
  try:
    client = reverb.Client(f"localhost:{server.port}")
    client.insert([np.arange(3, dtype=np.float32)], priorities={"t": 1.0})
    sample = next(iter(client.sample("t", num_samples=1)))
    np.testing.assert_array_equal(sample[0].data[0], np.arange(3, dtype=np.float32))
    assert client.server_info()["t"].current_size == 1
  finally:
    server.stop()


def test_launchpad_two_courier_nodes_exchange_a_call_and_stop(tmp_path):
  out = tmp_path / "answer.txt"
  tag = f"LAEO_STACK_TEST={tmp_path}".encode()  # Inherited by the launcher and both node processes.
  proc = subprocess.run(
    [sys.executable, os.path.join(HERE, "programs", "two_courier_nodes.py"), str(out)],
    capture_output=True,
    text=True,
    timeout=180,
    env={**os.environ, "LAEO_STACK_TEST": str(tmp_path)},
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert out.read_text() == "42"
  # No node process may outlive the launcher: look for the tag in every live process's environment.
  leftovers = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        tagged = tag in f.read().split(b"\0")
      with open(f"/proc/{pid}/stat") as f:
        zombie = f.read().rsplit(") ", 1)[1].split()[0] == "Z"
    except OSError:
      continue
    if tagged and not zombie:
      leftovers.append(pid)
  assert not leftovers


def test_jitted_haiku_optax_update_reduces_loss():
  import haiku as hk
  import jax
  import jax.numpy as jnp
  import optax

  net = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([16, 1])(x)))
  x = jnp.linspace(-1.0, 1.0, 32)[:, None]
  y = 3.0 * x
  params = net.init(jax.random.PRNGKey(0), x)
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  def loss_fn(p):
    return jnp.mean((net.apply(p, x) - y) ** 2)

  @jax.jit
  def update(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = opt.update(grads, s)
    return optax.apply_updates(p, updates), s, loss

  first = float(loss_fn(params))
  for _ in range(200):
    params, opt_state, _ = update(params, opt_state)
  assert float(loss_fn(params)) < 0.1 * first


def test_mujoco_fetch_step_and_offscreen_render_next_to_tensorflow():
  assert os.environ.get("MUJOCO_GL") == "egl"
  import gymnasium as gym
  import gymnasium_robotics

  gym.register_envs(gymnasium_robotics)
  assert "tensorflow" in sys.modules
  env = gym.make("FetchPush-v4", render_mode="rgb_array", width=64, height=64)
  try:
    obs, _ = env.reset(seed=0)
    obs2, *_ = env.step(np.ones(4, dtype=np.float32))
    assert obs["observation"].shape == (25,)
    assert not np.allclose(obs["observation"], obs2["observation"])
    image = env.render()
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image.std() > 1.0  # A real picture, not a blank buffer.
  finally:
    env.close()
