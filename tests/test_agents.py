"""Agent tests: registry/config plumbing, smoke runs, overfitting, checkpoints.

Tiny networks (hidden (16,), repr 8, batch 8) keep jit compilation cheap; each
(agent, observation kind) learner is compiled once and shared via fixtures.
"""

import collections
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

import agents
from agents.common import config_utils
from agents.common import distributions
from agents.common import learner as common_learner
from agents.bc import learning as bc_learning
from agents.laeo import learning as laeo_learning
from agents.td3bc_reward import learning as td3_learning

OBS_DIM = 4
ACT_DIM = 2
BATCH = 8
NUM_SUCCESS = 5

TINY = {
  "laeo": dict(hidden_sizes=(16,), repr_dim=8, policy_hidden_sizes=(16,), batch_size=BATCH, learning_rate=3e-3),
  "oril": dict(policy_hidden_sizes=(16,), critic_hidden_sizes=(16,), classifier_hidden_sizes=(16,), batch_size=BATCH),
  "purl": dict(policy_hidden_sizes=(16,), critic_hidden_sizes=(16,), classifier_hidden_sizes=(16,), batch_size=BATCH),
  "bc": dict(policy_hidden_sizes=(16,), batch_size=BATCH),
}
ACTION_SPEC = specs.BoundedArray((ACT_DIM,), np.float32, -1.0, 1.0)
OBS_SPECS = {
  "state": specs.Array((OBS_DIM,), np.float32),
  "image": specs.Array((64, 64, 3), np.uint8),
}


def _obs(rng, kind, n):
  if kind == "image":
    return rng.integers(0, 256, (n, 64, 64, 3)).astype(np.uint8)
  return rng.normal(size=(n, OBS_DIM)).astype(np.float32)


def make_batch(rng, batch_kind, obs_kind, n=BATCH):
  batch = dict(observation=_obs(rng, obs_kind, n), action=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32))
  if batch_kind == "future":
    batch["future_observation"] = _obs(rng, obs_kind, n)
  else:
    batch["next_observation"] = _obs(rng, obs_kind, n)
    batch["discount"] = np.ones((n,), np.float32)
  return batch


class Feeder:
  """Iterator whose batches the test controls (fixed, or fresh random)."""

  def __init__(self, batch_kind, obs_kind, seed=0):
    self.rng = np.random.default_rng(seed)
    self.batch_kind, self.obs_kind = batch_kind, obs_kind
    self.fixed = None

  def __iter__(self):
    return self

  def __next__(self):
    if self.fixed is not None:
      return self.fixed
    return make_batch(self.rng, self.batch_kind, self.obs_kind)


class RecordingLogger:
  def __init__(self):
    self.data = []

  def write(self, data):
    self.data.append(data)

  def close(self):
    pass


def recording_config(config):
  """Same config, but remembers which fields were read (after construction)."""
  names = {f.name for f in dataclasses.fields(config)}
  accessed = set()

  class Recording(type(config)):
    def __getattribute__(self, name):
      if name in names:
        accessed.add(name)
      return object.__getattribute__(self, name)

  rec = Recording(**{n: getattr(config, n) for n in names})
  accessed.clear()
  return rec, accessed


Setup = collections.namedtuple(
  "Setup", "builder networks learner feeder logger counter accessed " "success initial_state"
)


def _setup(name, obs_kind, seed=0):
  config = agents.make_config(name, **TINY[name])
  config, accessed = recording_config(config)
  builder = agents.make_builder(name).__class__(config)
  obs_spec = OBS_SPECS[obs_kind]
  networks = builder.make_networks(obs_spec, ACTION_SPEC)
  feeder = Feeder(builder.batch_kind, obs_kind, seed)
  success = _obs(np.random.default_rng(123), obs_kind, NUM_SUCCESS)
  logger, counter = RecordingLogger(), common_learner.StepCounter()
  learner = builder.make_learner(networks, feeder, success, jax.random.PRNGKey(seed), counter=counter, logger=logger)
  return Setup(builder, networks, learner, feeder, logger, counter, accessed, success, learner.save())


_CACHE = {}


def get_setup(name, obs_kind):
  if (name, obs_kind) not in _CACHE:
    _CACHE[(name, obs_kind)] = _setup(name, obs_kind)
  return _CACHE[(name, obs_kind)]


def _leaves_equal(a, b):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


# ---------------------------------------------------------------- registry ---


def test_registry_and_config_errors():
  assert set(agents.AGENT_NAMES) == {"laeo", "oril", "purl", "bc"}
  with pytest.raises(ValueError, match="laeo"):
    agents.make_builder("sac")
  with pytest.raises(ValueError, match="not_a_field"):
    agents.make_builder("laeo", not_a_field=1)
  assert agents.make_builder("laeo", bc_coef=0.05).config.bc_coef == 0.05
  assert agents.make_builder("laeo").config.bc_coef == 0.5
  assert agents.make_builder("laeo").batch_kind == "future"
  for name in ("oril", "purl", "bc"):
    assert agents.make_builder(name).batch_kind == "transition"
  assert agents.make_builder("oril").config.classifier_loss == "bce"
  assert agents.make_builder("purl").config.classifier_loss == "pu"
  assert agents.make_builder("purl").config.pu_eta == 0.5
  # Lists (e.g. from flags) become tuples.
  assert agents.make_builder("bc", policy_hidden_sizes=[8, 8]).config.policy_hidden_sizes == (8, 8)
  with pytest.raises(ValueError):
    agents.make_builder("laeo", q_estimator="mean")
  with pytest.raises(ValueError):
    agents.make_builder("purl", classifier_loss="hinge")
  # ORIL and PURL are one agent whose name picks the classifier loss: the name cannot be overridden.
  with pytest.raises(ValueError, match="'purl'"):
    agents.make_builder("oril", classifier_loss="pu")
  assert agents.make_builder("oril", classifier_loss="bce").config.classifier_loss == "bce"
  # Every agent has both size presets, naming only its own fields; 'paper' is 1024-wide for every agent.
  for name in agents.AGENT_NAMES:
    fields = set(config_utils.field_names(agents.config_class(name)))
    for preset in agents.PRESET_NAMES:
      assert set(agents.preset(name, preset)) <= fields
      agents.make_builder(name, **agents.preset(name, preset))
    assert agents.preset(name, "paper")["policy_hidden_sizes"] == (1024, 1024)
    assert agents.preset(name, "paper")["batch_size"] == 1024
  with pytest.raises(ValueError, match="Unknown preset"):
    agents.preset("laeo", "huge")
  b = agents.make_builder("laeo", batch_size=32, discount=0.9)
  assert (b.batch_size, b.discount) == (32, 0.9)
  with pytest.raises(ValueError, match="normalised"):
    b.make_networks(OBS_SPECS["state"], specs.BoundedArray((ACT_DIM,), np.float32, -2.0, 2.0))


# ------------------------------------------------------------------ smoke ---


@pytest.mark.parametrize("obs_kind", ["state", "image"])
@pytest.mark.parametrize("name", ["laeo", "oril", "purl", "bc"])
def test_smoke_and_checkpoint(name, obs_kind):
  s = get_setup(name, obs_kind)
  learner = s.learner
  init = s.initial_state
  num_steps = 3
  for _ in range(num_steps):
    learner.step()
  assert s.counter.get_counts()["learner_steps"] == num_steps
  assert len(s.logger.data) == num_steps
  for record in s.logger.data:
    for key, value in record.items():
      assert np.all(np.isfinite(value)), (key, value)
  if name == "laeo":
    for key in ("critic_loss", "binary_accuracy", "categorical_accuracy", "logits_pos", "logits_neg", "policy_loss"):
      assert key in s.logger.data[-1]
  state = learner.save()
  for field in state._fields:
    if field.endswith("params"):
      assert not _leaves_equal(getattr(init, field), getattr(state, field)), field

  # Policy: batched and unbatched, deterministic at evaluation, in [-1, 1].
  policy = s.builder.make_policy(s.networks)
  (params,) = learner.get_variables(["policy"])
  obs = _obs(np.random.default_rng(1), obs_kind, 3)
  a_eval = policy(params, jax.random.PRNGKey(0), obs, True)
  assert a_eval.shape == (3, ACT_DIM)
  np.testing.assert_allclose(policy(params, jax.random.PRNGKey(1), obs, True), a_eval)
  a_single = policy(params, jax.random.PRNGKey(0), obs[0], True)
  assert a_single.shape == (ACT_DIM,)
  np.testing.assert_allclose(a_single, a_eval[0], atol=1e-5)
  a_explore = policy(params, jax.random.PRNGKey(0), obs, False)
  assert a_explore.shape == (3, ACT_DIM)
  assert not np.allclose(a_explore, a_eval)
  assert np.all(np.abs(a_explore) <= 1.0)

  # Save / restore round trip gives an identical next update.
  saved = learner.save()
  fixed = make_batch(np.random.default_rng(7), s.builder.batch_kind, obs_kind)
  s.feeder.fixed = fixed
  learner.step()
  after_1 = learner.save()
  learner.step()  # move away
  learner.restore(saved)
  assert _leaves_equal(learner.save(), saved)
  learner.step()
  after_2 = learner.save()
  s.feeder.fixed = None
  assert _leaves_equal(after_1, after_2)
  assert not _leaves_equal(saved.policy_params, after_2.policy_params)

  # Every config field was read by the builder / networks / learner / policy
  # (batch_size and discount reach the data pipeline via the builder).
  assert s.builder.batch_size == BATCH
  s.builder.discount  # pylint: disable=pointless-statement
  fields = {f.name for f in dataclasses.fields(s.builder.config)}
  if getattr(s.builder.config, "classifier_loss", None) == "bce":
    fields.discard("pu_eta")  # documented: pu_eta is ignored by 'bce'.
  assert fields - s.accessed == set(), fields - s.accessed


# ------------------------------------------------------- LAEO overfitting ---


def test_laeo_categorical_accuracy_rises_on_fixed_batch():
  s = get_setup("laeo", "state")
  s.learner.restore(s.initial_state)
  s.feeder.fixed = make_batch(np.random.default_rng(3), "future", "state")
  try:
    s.learner.step()
    first = float(s.logger.data[-1]["categorical_accuracy"])
    for _ in range(200):
      s.learner.step()
    last = s.logger.data[-1]
  finally:
    s.feeder.fixed = None
  assert first < 0.75, first
  assert float(last["categorical_accuracy"]) >= 0.75, (first, last)
  assert float(last["binary_accuracy"]) > 0.9
  assert float(last["logits_pos"]) > float(last["logits_neg"])


# ------------------------------------------------------------------ seeds ---


def test_same_seed_same_learner_and_different_seed_differs():
  name = "laeo"
  builder = agents.make_builder(name, **TINY[name])
  networks = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC)
  success = _obs(np.random.default_rng(123), "state", NUM_SUCCESS)
  learners = [
    builder.make_learner(
      networks, Feeder("future", "state", seed=5), success, jax.random.PRNGKey(seed), logger=RecordingLogger()
    )
    for seed in (42, 42, 43)
  ]
  for learner in learners:
    for _ in range(2):
      learner.step()
  states = [learner.save() for learner in learners]
  assert _leaves_equal(states[0], states[1])
  assert not _leaves_equal(states[0].policy_params, states[2].policy_params)


@pytest.mark.parametrize("name,module", [("oril", td3_learning), ("bc", bc_learning)])
def test_initial_state_is_seeded(name, module):
  config = agents.make_config(name, **TINY[name])
  networks = agents.make_builder(name, **TINY[name]).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  a, b, c = (module.make_initial_state(networks, config, jax.random.PRNGKey(k)) for k in (0, 0, 1))
  assert _leaves_equal(a, b)
  assert not _leaves_equal(a.policy_params, c.policy_params)


# -------------------------------------- config fields have their effect ---


def _param_shapes(params):
  return {f"{m}/{k}": v.shape for m, d in params.items() for k, v in d.items()}


def test_laeo_config_fields_have_effect():
  rng = np.random.default_rng(0)
  batch = make_batch(rng, "future", "state")
  batch["action"][0] = [1.0, -1.0]  # at the bound: exercises action_clip_eps
  success = jnp.asarray(_obs(rng, "state", NUM_SUCCESS))
  key = jax.random.PRNGKey(0)

  def setup(**kw):
    config = agents.make_config("laeo", **{**TINY["laeo"], **kw})
    nets = agents.make_builder("laeo", **{**TINY["laeo"], **kw}).make_networks(OBS_SPECS["state"], ACTION_SPEC)
    state = laeo_learning.make_initial_state(nets, config, key)
    return config, nets, state

  def policy_metrics(config, nets, state, succ=success):
    return laeo_learning.policy_loss_fn(nets, config, state.policy_params, state.critic_params, batch, succ, key)[1]

  config, nets, state = setup()
  base = policy_metrics(config, nets, state)
  # bc_coef: loss interpolates between the Q term and the BC term.
  for coef, term in ((0.0, "actor_q_loss"), (1.0, "bc_loss")):
    m = policy_metrics(dataclasses.replace(config, bc_coef=coef), nets, state)
    np.testing.assert_allclose(m["policy_loss"], m[term], rtol=1e-5)
  # q_estimator: identical with a single success example, different otherwise.
  single = dataclasses.replace(config, q_estimator="single_example")
  one = success[:1]
  np.testing.assert_allclose(
    policy_metrics(single, nets, state, one)["q_value"], policy_metrics(config, nets, state, one)["q_value"], rtol=1e-5
  )
  assert not np.allclose(policy_metrics(single, nets, state)["q_value"], base["q_value"])
  # action_clip_eps changes the log-prob of the boundary action.
  m = policy_metrics(dataclasses.replace(config, action_clip_eps=1e-2), nets, state)
  assert not np.allclose(m["bc_loss"], base["bc_loss"])
  # Architecture fields.
  _, _, s2 = setup(hidden_sizes=(12,), repr_dim=6, policy_hidden_sizes=(10,))
  shapes = _param_shapes(s2.critic_params)
  assert shapes["phi/w_0"] == (2, OBS_DIM + ACT_DIM, 12)
  assert shapes["psi/w_1"] == (2, 12, 6)
  assert _param_shapes(s2.policy_params)["policy_mlp/~/linear_0/w"] == (OBS_DIM, 10)
  # log-std clipping range.
  for kw, bound in ((dict(log_std_min=2.0), 2.0), (dict(log_std_max=-5.0), -5.0)):
    _, n3, s3 = setup(**kw)
    _, log_std = n3.policy.apply(s3.policy_params, batch["observation"])
    np.testing.assert_allclose(log_std, bound)


@pytest.mark.parametrize("name", ["oril", "purl"])
def test_td3bc_reward_config_fields_have_effect(name):
  rng = np.random.default_rng(0)
  batch = make_batch(rng, "transition", "state")
  success = jnp.asarray(_obs(rng, "state", NUM_SUCCESS))
  key = jax.random.PRNGKey(0)
  config = agents.make_config(name, **TINY[name])
  builder = agents.make_builder(name, **TINY[name])
  nets = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC)
  state = td3_learning.make_initial_state(nets, config, key)

  def clf(cfg):
    return td3_learning.classifier_loss_fn(nets, cfg, state.classifier_params, success, batch["next_observation"])[0]

  other = "pu" if config.classifier_loss == "bce" else "bce"
  assert not np.allclose(clf(config), clf(dataclasses.replace(config, classifier_loss=other)))
  pu = dataclasses.replace(config, classifier_loss="pu")
  assert not np.allclose(clf(pu), clf(dataclasses.replace(pu, pu_eta=0.2)))

  def actor(cfg):
    return td3_learning.actor_loss_fn(nets, cfg, state.policy_params, state.critic_params, batch)[1]

  np.testing.assert_allclose(
    actor(dataclasses.replace(config, bc_alpha=5.0))["bc_lambda"], 2 * actor(config)["bc_lambda"], rtol=1e-5
  )

  reward = jnp.ones((BATCH,))

  def target(cfg):
    return td3_learning.td_target(nets, cfg, state.policy_params, state.critic_params, batch, reward, key)

  base = target(config)
  for field, value in (("discount", 0.5), ("target_noise", 0.05), ("target_noise_clip", 0.01)):
    assert not np.allclose(target(dataclasses.replace(config, **{field: value})), base), field
  np.testing.assert_allclose(target(dataclasses.replace(config, discount=0.0)), reward)

  def flags(cfg, steps):
    return [tuple(bool(f) for f in td3_learning.phase_flags(cfg, jnp.int32(t))) for t in range(steps)]

  assert flags(config, 4) == [(True, False), (True, True)] * 2
  assert flags(dataclasses.replace(config, policy_delay=1), 2) == [(True, True)] * 2
  assert flags(dataclasses.replace(config, classifier_steps=2), 4) == [
    (False, False),
    (False, False),
    (True, False),
    (True, True),
  ]

  nets2 = agents.make_builder(
    name, policy_hidden_sizes=(3,), critic_hidden_sizes=(5,), classifier_hidden_sizes=(7,)
  ).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  state2 = td3_learning.make_initial_state(nets2, config, key)
  assert _param_shapes(state2.policy_params)["policy_mlp/~/linear_0/w"] == (OBS_DIM, 3)
  assert _param_shapes(state2.critic_params)["q/w_0"] == (2, OBS_DIM + ACT_DIM, 5)
  assert _param_shapes(state2.classifier_params)["classifier_mlp/~/linear_0/w"] == (OBS_DIM, 7)

  # exploration_noise scales the deviation of the non-evaluation policy.
  obs = batch["observation"]
  deviations = []
  for noise in (0.01, 0.3):
    policy = agents.make_builder(name, **TINY[name], exploration_noise=noise).make_policy(nets)
    a_eval = policy(state.policy_params, key, obs, True)
    a_expl = policy(state.policy_params, key, obs, False)
    deviations.append(float(jnp.mean(jnp.abs(a_expl - a_eval))))
  assert deviations[1] > 5 * deviations[0]


@pytest.mark.parametrize("name,module", [("laeo", laeo_learning), ("oril", td3_learning), ("bc", bc_learning)])
def test_learning_rate_sets_adam_step(name, module):
  # The first Adam step moves every parameter by learning_rate.
  opt = module.make_optimizer(agents.make_config(name, learning_rate=0.123))
  params = {"w": jnp.ones(3)}
  updates, _ = opt.update(params, opt.init(params))
  np.testing.assert_allclose(updates["w"], -0.123, rtol=1e-4)


@pytest.mark.parametrize("name", ["laeo", "oril", "bc"])
def test_networks_standardise_vector_observations_with_the_stats(name):
  rng = np.random.default_rng(0)
  stats = {"mean": rng.normal(size=OBS_DIM).tolist(), "std": rng.uniform(0.1, 3.0, OBS_DIM).tolist()}
  builder = agents.make_builder(name, **TINY[name])
  raw = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC)
  standardised = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC, stats)
  module = {"laeo": laeo_learning, "oril": td3_learning, "bc": bc_learning}[name]
  config = agents.make_config(name, **TINY[name])
  state = module.make_initial_state(raw, config, jax.random.PRNGKey(0))
  obs = _obs(rng, "state", BATCH)
  z = (obs - np.float32(stats["mean"])) / np.float32(stats["std"])
  # Same parameters (standardising adds none); outputs on x equal the raw networks' on (x - mean) / std.
  assert _leaves_equal(state, module.make_initial_state(standardised, config, jax.random.PRNGKey(0)))
  key = jax.random.PRNGKey(1)
  act = lambda nets, o: builder.make_policy(nets)(state.policy_params, key, o, evaluation=True)
  np.testing.assert_allclose(act(standardised, obs), act(raw, z), rtol=1e-4, atol=1e-5)
  assert not np.allclose(act(standardised, obs), act(raw, obs), atol=1e-3)
  if name == "laeo":
    action = rng.uniform(-1, 1, (BATCH, ACT_DIM)).astype(np.float32)
    np.testing.assert_allclose(
      standardised.phi(state.critic_params, obs, action), raw.phi(state.critic_params, z, action), rtol=1e-4, atol=1e-5
    )
  if name == "oril":
    np.testing.assert_allclose(
      standardised.classifier.apply(state.classifier_params, obs),
      raw.classifier.apply(state.classifier_params, z),
      rtol=1e-4,
      atol=1e-5,
    )
  with pytest.raises(ValueError, match="vector observations"):
    builder.make_networks(OBS_SPECS["image"], ACTION_SPEC, stats)


@pytest.mark.parametrize("name", ["laeo", "oril", "bc"])
def test_torso_padding_reaches_every_image_encoder(name):
  """'SAME' (the paper's Atari torso) keeps an 8x8 grid of a 64x64 image, 'VALID' a 4x4 one; every encoder of the
  agent (policy, critic, classifier) takes the configured padding, so the first MLP layer after it has
  8*8*C or 4*4*C inputs."""
  module = {"laeo": laeo_learning, "oril": td3_learning, "bc": bc_learning}[name]
  channels = (4, 8, 8)
  fan_ins = {}
  for padding in config_utils.TORSO_PADDINGS:
    config = agents.make_config(name, **TINY[name], torso_channels=channels, torso_padding=padding)
    networks = agents.make_builder(name, **TINY[name], torso_channels=channels, torso_padding=padding).make_networks(
      OBS_SPECS["image"], ACTION_SPEC
    )
    state = module.make_initial_state(networks, config, jax.random.PRNGKey(0))
    shapes = {
      k: v
      for field in state._fields
      if field.endswith("params")
      for k, v in _param_shapes(getattr(state, field)).items()
    }
    convs = {k: v for k, v in shapes.items() if "conv2_d_2/w" in k}
    assert convs and all(v == (3, 3, 8, 8) for v in convs.values())
    # Each torso feeds an MLP whose first weight has 8*grid*grid (+ action) inputs.
    first = {k: v for k, v in shapes.items() if k.endswith(("linear_0/w", "/w_0"))}
    fan_ins[padding] = sorted({v[-2] - (ACT_DIM if v[-2] % 8 else 0) for v in first.values()})
  assert fan_ins == {"SAME": [8 * 8 * 8], "VALID": [4 * 4 * 8]}
  with pytest.raises(ValueError, match="torso_padding"):
    agents.make_config(name, torso_padding="CIRCULAR")
  assert agents.preset(name, "paper")["torso_padding"] == "SAME"


@pytest.mark.parametrize("name", ["laeo", "oril", "bc"])
def test_several_updates_in_one_call_equal_as_many_single_calls(name):
  single, fused = _setup(name, "state", seed=3), _setup(name, "state", seed=3)
  for _ in range(5):
    single.learner.step()
  fused.learner.step(2)
  fused.learner.step(3)
  # Same batches, same keys, same order: the same parameters, counts and last metrics.
  for a, b in zip(jax.tree_util.tree_leaves(single.learner.save()), jax.tree_util.tree_leaves(fused.learner.save())):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
  assert not _leaves_equal(fused.learner.save(), fused.initial_state)
  assert single.counter.get_counts()["learner_steps"] == fused.counter.get_counts()["learner_steps"] == 5
  assert [d["learner_steps"] for d in fused.logger.data] == [2, 5]
  last_single, last_fused = single.logger.data[-1], fused.logger.data[-1]
  # LAEO's learner is pipelined: its policy stage's metrics lag a call (test_pipelined_learner_...).
  lagging = set(LAEO_POLICY_METRICS) if name == "laeo" else set()
  for key in set(last_single) - lagging:
    np.testing.assert_allclose(last_single[key], last_fused[key], rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="num_updates"):
    fused.learner.step(0)


def test_laeo_q_over_a_subset_of_the_success_examples():
  rng = np.random.default_rng(0)
  success = jnp.asarray(_obs(rng, "state", 7))
  config = agents.make_config("laeo", **TINY["laeo"])
  key = jax.random.PRNGKey(3)
  # 0 (the default) and M >= N: every example; M < N: M distinct examples of the set, a fresh draw per key.
  for m in (0, 7, 9):
    np.testing.assert_array_equal(
      laeo_learning.q_success_subset(dataclasses.replace(config, num_q_success_examples=m), success, key), success
    )
  sub_config = dataclasses.replace(config, num_q_success_examples=3)
  draws = [np.asarray(laeo_learning.q_success_subset(sub_config, success, jax.random.PRNGKey(k))) for k in range(5)]
  rows = {tuple(r) for r in np.asarray(success)}
  for d in draws:
    assert d.shape == (3, OBS_DIM) and len({tuple(r) for r in d}) == 3 and {tuple(r) for r in d} <= rows
  assert len({d.tobytes() for d in draws}) > 1
  # The Q-term is the log-mean-exp over the drawn examples.
  nets = agents.make_builder("laeo", **TINY["laeo"]).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  params = laeo_learning.make_initial_state(nets, config, key).critic_params
  obs = _obs(rng, "state", BATCH)
  action = rng.uniform(-1, 1, (BATCH, ACT_DIM)).astype(np.float32)
  features = nets.encode(params, obs)
  q = laeo_learning.q_values(nets, sub_config, params, features, action, success, key)
  subset = laeo_learning.q_success_subset(sub_config, success, key)
  full_over_subset = laeo_learning.q_values(nets, config, params, features, action, subset, key)
  np.testing.assert_allclose(q, full_over_subset, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="num_q_success_examples"):
    agents.make_config("laeo", num_q_success_examples=-1)


# ------------------------------------------------- the pipelined learner ---

LAEO_POLICY_METRICS = ("policy_loss", "actor_q_loss", "q_value", "bc_loss", "policy_log_std")


def test_pipelined_learner_makes_the_sequential_updates():
  """LAEO's critic and policy stages overlap across calls on two threads; every update is still the whole
  sequential update (make_update_fn) of the same batch, checkpoints are whole and the logged policy metrics
  are those of the last update the policy stage finished."""
  config = agents.make_config("laeo", **TINY["laeo"])
  networks = agents.make_builder("laeo", **TINY["laeo"]).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  success = _obs(np.random.default_rng(123), "state", NUM_SUCCESS)
  logger = RecordingLogger()
  learner = laeo_learning.LaeoLearner(
    networks, config, Feeder("future", "state", 9), success, jax.random.PRNGKey(4), logger=logger
  )
  assert isinstance(learner, common_learner.PipelinedLearner)
  update = laeo_learning.make_update_fn(networks, config)
  state, feeder, expected = learner.save(), Feeder("future", "state", 9), []
  for _ in range(10):
    state, metrics = update(state, {k: jnp.asarray(v) for k, v in next(feeder).items()}, jnp.asarray(success))
    expected.append((state, jax.device_get(metrics)))

  def assert_state(got, updates):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected[updates - 1][0])):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

  def assert_metrics(row, critic_updates, policy_updates):
    for key, value in row.items():
      if key != "learner_steps":
        done = policy_updates if key in LAEO_POLICY_METRICS else critic_updates
        np.testing.assert_allclose(value, expected[done - 1][1][key], rtol=1e-4, atol=1e-5, err_msg=key)

  learner.step(2)  # The first call runs its own policy stage: its row is whole.
  assert_metrics(logger.data[-1], 2, 2)
  learner.step(3)  # Critic at 5; the policy stage of 3-5 waits for the next call.
  assert_metrics(logger.data[-1], 5, 2)
  (policy_params,) = learner.get_variables(["policy"])
  assert _leaves_equal(policy_params, expected[1][0].policy_params)  # Served as they are: at update 2.
  learner.step(1)
  assert_metrics(logger.data[-1], 6, 5)
  assert_state(learner.save(), 6)  # save() runs the pending policy stage first.
  learner.step(2)
  assert_metrics(logger.data[-1], 8, 6)
  learner.step(2)
  assert_metrics(logger.data[-1], 10, 8)
  assert_state(learner.state, 10)
  saved = learner.save()
  learner.step(1)
  learner.restore(saved)  # Drops the pending stage: the restored state is what runs next.
  assert_state(learner.save(), 10)
  assert [r["learner_steps"] for r in logger.data] == [2, 5, 6, 8, 10, 11]


@pytest.mark.parametrize("implementation", ["auto", "lax"])
def test_laeo_image_learner_runs_its_stages_in_sequence(implementation):
  """An image update keeps the cores busy by itself, so LAEO's image learner does not overlap its stages: after
  every call the state, the policy it serves and every logged metric are those of the call's last update. Also
  under 'lax' convolutions, the accelerators' form (where the learner's prepared success examples are images)."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  with conv.implementation(implementation):
    _check_laeo_image_learner_in_sequence()


def _check_laeo_image_learner_in_sequence():
  config = agents.make_config("laeo", **TINY["laeo"], torso_channels=(4, 4, 4))
  networks = agents.make_builder("laeo", **TINY["laeo"], torso_channels=(4, 4, 4)).make_networks(
    OBS_SPECS["image"], ACTION_SPEC
  )
  success = _obs(np.random.default_rng(7), "image", 5)
  logger = RecordingLogger()
  learner = laeo_learning.LaeoLearner(
    networks, config, Feeder("future", "image", 3), success, jax.random.PRNGKey(1), logger=logger
  )
  update = laeo_learning.make_update_fn(networks, config)
  state, feeder, expected = learner.save(), Feeder("future", "image", 3), []
  for _ in range(3):
    state, metrics = update(state, {k: jnp.asarray(v) for k, v in next(feeder).items()}, jnp.asarray(success))
    expected.append((state, jax.device_get(metrics)))
  for calls, updates in ((2, 2), (1, 3)):
    learner.step(calls)
    (policy_params,) = learner.get_variables(["policy"])
    for a, b in zip(
      jax.tree_util.tree_leaves(policy_params), jax.tree_util.tree_leaves(expected[updates - 1][0].policy_params)
    ):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    for key in LAEO_POLICY_METRICS + ("critic_loss",):
      np.testing.assert_allclose(logger.data[-1][key], expected[updates - 1][1][key], rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree_util.tree_leaves(learner.save()), jax.tree_util.tree_leaves(expected[2][0])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_stacked_mlp_is_independent_mlps_in_one_matmul_per_layer():
  """Member k of a StackedMLP computes the ReLU MLP of its own weights, on a shared input or on its own; the
  members' weights are drawn independently with hk.Linear's truncated normal of stddev 1/sqrt(fan_in)."""
  import haiku as hk  # pylint: disable=g-import-not-at-top

  from agents.common import networks as common_networks  # pylint: disable=g-import-not-at-top

  net = hk.without_apply_rng(hk.transform(lambda x: common_networks.StackedMLP(3, (64, 32), 5, name="m")(x)))
  x = np.random.default_rng(0).normal(size=(7, 400)).astype(np.float32)
  params = net.init(jax.random.PRNGKey(0), x)["m"]
  assert {k: v.shape for k, v in params.items()} == {
    "w_0": (3, 400, 64),
    "b_0": (3, 64),
    "w_1": (3, 64, 32),
    "b_1": (3, 32),
    "w_2": (3, 32, 5),
    "b_2": (3, 5),
  }
  w = np.asarray(params["w_0"])
  assert abs(w.std() - 0.88 / np.sqrt(400)) < 0.003  # A normal truncated at 2 stddev keeps 0.88 of its stddev.
  assert np.abs(w).max() <= 2 / np.sqrt(400) + 1e-6
  assert not np.allclose(w[0], w[1]) and abs(np.corrcoef(w[0].ravel(), w[1].ravel())[0, 1]) < 0.02
  assert all(np.all(np.asarray(params[f"b_{i}"]) == 0) for i in range(3))

  def member(k, h):
    for i in range(3):
      h = h @ np.asarray(params[f"w_{i}"][k]) + np.asarray(params[f"b_{i}"][k])
      h = np.maximum(h, 0) if i < 2 else h
    return h

  out = np.asarray(net.apply({"m": params}, x))
  assert out.shape == (3, 7, 5)
  for k in range(3):
    np.testing.assert_allclose(out[k], member(k, x), rtol=1e-4, atol=1e-5)
  own = np.stack([x, -x, 2 * x])  # One input per member.
  out = np.asarray(net.apply({"m": params}, own))
  for k in range(3):
    np.testing.assert_allclose(out[k], member(k, own[k]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["laeo", "bc"])
def test_restoring_a_state_of_other_networks_is_refused_and_changes_nothing(name):
  s = get_setup(name, "state")
  before = s.learner.save()
  params = dict(before.critic_params if name == "laeo" else before.policy_params)
  module = sorted(params)[0]
  params[module + "_old"] = params.pop(module)  # Another layout, as an older version's checkpoint has.
  field = "critic_params" if name == "laeo" else "policy_params"
  with pytest.raises(ValueError, match="does not fit this learner"):
    s.learner.restore(before._replace(**{field: params}))
  assert _leaves_equal(s.learner.save(), before)


@pytest.mark.parametrize("name", ["laeo", "bc"])
def test_a_checkpointed_state_restores_into_a_learner(name, tmp_path):
  from launch import checkpointing

  s = get_setup(name, "state")
  saved = s.learner.save()
  checkpointing.Checkpointer(str(tmp_path)).save(3, saved, {})
  stored = checkpointing.Checkpointer(str(tmp_path)).latest()["learner"]  # Dicts and lists, as Orbax reads them.
  s.learner.step()
  s.learner.restore(stored)
  restored = s.learner.save()
  assert type(restored) is type(saved) and _leaves_equal(restored, saved)
  assert [x.dtype for x in jax.tree_util.tree_leaves(restored)] == [x.dtype for x in jax.tree_util.tree_leaves(saved)]


@pytest.mark.parametrize("name", ["laeo", "bc"])
def test_a_diverging_learner_stops_naming_the_step_and_the_metric(name):
  config = agents.make_config(name, **{**TINY[name], "learning_rate": 1e9})
  builder = agents.make_builder(name).__class__(config)
  networks = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC)
  logger, counter = RecordingLogger(), common_learner.StepCounter()
  learner = builder.make_learner(
    networks,
    Feeder(builder.batch_kind, "state"),
    _obs(np.random.default_rng(123), "state", NUM_SUCCESS),
    jax.random.PRNGKey(0),
    counter=counter,
    logger=logger,
  )
  with pytest.raises(common_learner.DivergenceError) as raised:
    for _ in range(50):
      learner.step(2)
  error = raised.value
  assert error.step == counter.get_counts()["learner_steps"] and error.step % 2 == 0
  # The call that diverged was logged, and is the first whose metrics are not all finite.
  assert [all(np.isfinite(v).all() for v in row.values()) for row in logger.data] == [True] * (len(logger.data) - 1) + [
    False
  ]
  assert error.non_finite and all(not np.isfinite(logger.data[-1][k]).all() for k in error.non_finite)
  listed = ", ".join(f"{k} is {v}" for k, v in error.non_finite.items())
  assert str(error) == f"The learner diverged at step {error.step}: {listed}."
  # A state is checked whole, naming the path of a non-finite entry.
  state = get_setup(name, "state").initial_state
  common_learner.check_finite(state, 7)
  params = jax.tree_util.tree_map(np.array, state.policy_params)
  module = sorted(params)[0]
  params[module]["w"][0, 0] = np.nan
  with pytest.raises(common_learner.DivergenceError, match=re.escape(f"step 7: policy_params/{module}/w is nan")):
    common_learner.check_finite(state._replace(policy_params=params), 7)


# ------------------------------------------- updates against references ---


def _log_mean_exp(x, axis):
  m = x.max(axis=axis, keepdims=True)
  return (m + np.log(np.mean(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def test_laeo_policy_loss_is_the_twin_min_log_mean_exp_q_and_the_bc_term_by_hand():
  """The policy's Q-term from phi and psi in numpy: Q_k(s, a) = log mean_n exp(phi_k(s, a) . psi_k(s*_n)), the
  smaller twin, at the policy's sampled action (an independent reference: a max over twins, or a mean instead of
  the log-mean-exp, fails it)."""
  rng = np.random.default_rng(3)
  config = agents.make_config("laeo", **TINY["laeo"])
  networks = agents.make_builder("laeo", **TINY["laeo"]).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  state = laeo_learning.make_initial_state(networks, config, jax.random.PRNGKey(7))
  batch = make_batch(rng, "future", "state")
  examples = _obs(rng, "state", NUM_SUCCESS)
  key = jax.random.PRNGKey(11)
  _, metrics = laeo_learning.policy_loss_fn(
    networks, config, state.policy_params, state.critic_params, batch, examples, key
  )
  sample_key, _ = jax.random.split(key)
  mean, log_std = networks.policy.apply(state.policy_params, batch["observation"])
  action, _ = distributions.tanh_gaussian_sample(sample_key, mean, log_std)
  phi = np.asarray(networks.phi(state.critic_params, batch["observation"], action))  # [2, B, R]
  psi = np.asarray(networks.psi(state.critic_params, examples))  # [2, N, R]
  q_twins = _log_mean_exp(np.einsum("kbr,knr->kbn", phi, psi), axis=-1)  # [2, B]
  assert np.abs(q_twins[0] - q_twins[1]).max() > 1e-3  # The twins differ, so min, max and mean differ.
  expected_q_loss = -np.mean(q_twins.min(axis=0))
  np.testing.assert_allclose(metrics["actor_q_loss"], expected_q_loss, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(
    metrics["policy_loss"],
    (1 - config.bc_coef) * expected_q_loss + config.bc_coef * float(metrics["bc_loss"]),
    rtol=1e-5,
    atol=1e-6,
  )


@pytest.mark.parametrize("name", ["oril", "purl"])
def test_td3bc_reward_is_the_classifiers_success_probability_of_the_next_state(name):
  """With discount 0 the critic's target is the predicted reward alone: sigmoid of the freshly updated
  classifier's logit of the next observation (1 - sigmoid, an inverted reward, fails it)."""
  rng = np.random.default_rng(4)
  config = agents.make_config(name, **TINY[name])
  networks = agents.make_builder(name, **TINY[name]).make_networks(OBS_SPECS["state"], ACTION_SPEC)
  state = td3_learning.make_initial_state(networks, config, jax.random.PRNGKey(5))
  batch = make_batch(rng, "transition", "state")
  batch["discount"] = np.zeros_like(batch["discount"])
  examples = _obs(rng, "state", NUM_SUCCESS)
  new_state, metrics = td3_learning.make_update_fn(networks, config)(state, batch, examples)
  logits = np.asarray(networks.classifier.apply(new_state.classifier_params, batch["next_observation"]))
  reward = 1.0 / (1.0 + np.exp(-logits))
  q = np.asarray(networks.critic.apply(state.critic_params, batch["observation"], batch["action"]))  # [2, B]
  expected = np.sum(np.mean((q - reward[None]) ** 2, axis=-1))
  np.testing.assert_allclose(metrics["critic_loss"], expected, rtol=1e-5, atol=1e-6)


def test_td3bc_reward_actor_step_under_cond_and_by_select_give_the_same_updates():
  """Images take the delayed actor step on every update and keep it where it applies (XLA's CPU backend runs
  convolutions inside lax.cond slowly); vectors keep lax.cond. Three updates from the same state and batches,
  the second training the actor and the others not, give the same parameters and metrics either way."""
  rng = np.random.default_rng(6)
  overrides = dict(TINY["oril"], classifier_steps=0, policy_delay=2, torso_channels=(4, 4, 4))
  config = agents.make_config("oril", **overrides)
  networks = agents.make_builder("oril", **overrides).make_networks(OBS_SPECS["image"], ACTION_SPEC)
  batches = [make_batch(rng, "transition", "image") for _ in range(3)]
  examples = _obs(rng, "image", NUM_SUCCESS)
  results = {}
  for under_cond in (True, False):
    update = td3_learning.make_update_fn(networks, config, actor_under_cond=under_cond)
    state = td3_learning.make_initial_state(networks, config, jax.random.PRNGKey(7))
    history = []
    for batch in batches:
      state, metrics = update(state, batch, examples)
      history.append((state.policy_params, state.target_policy_params, state.target_critic_params, metrics))
    results[under_cond] = history
  initial = td3_learning.make_initial_state(networks, config, jax.random.PRNGKey(7)).policy_params
  policies = [initial] + [h[0] for h in results[False]]
  moves = [
    max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(*map(jax.tree_util.tree_leaves, pair)))
    for pair in zip(policies, policies[1:])
  ]
  assert moves[0] == 0.0 and moves[1] > 0 and moves[2] == 0.0, moves  # policy_delay 2: the second update only.
  for cond_state, select_state in zip(results[True], results[False]):
    for a, b in zip(jax.tree_util.tree_leaves(cond_state), jax.tree_util.tree_leaves(select_state)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_td3bc_reward_takes_the_actor_step_under_cond_for_vectors_only():
  """The default: lax.cond (the actor's gradient only where it applies) for vector observations, none for images."""
  rng = np.random.default_rng(8)
  for kind, expect_cond in (("state", True), ("image", False)):
    overrides = dict(TINY["oril"], torso_channels=(4, 4, 4))
    config = agents.make_config("oril", **overrides)
    networks = agents.make_builder("oril", **overrides).make_networks(OBS_SPECS[kind], ACTION_SPEC)
    state = td3_learning.make_initial_state(networks, config, jax.random.PRNGKey(0))
    update = td3_learning.make_update_fn(networks, config)
    jaxpr = str(jax.make_jaxpr(update)(state, make_batch(rng, "transition", kind), _obs(rng, kind, NUM_SUCCESS)))
    assert ("cond[" in jaxpr) == expect_cond, kind


_FAULTS_PROGRAM = """
import resource, sys
import jax, jax.numpy as jnp, numpy as np
from agents.common import learner
if sys.argv[1] == "learner":
  learner.GenericLearner(lambda key: (), lambda s, b, e: (s, {}), (), iter(()), None, None, counter=0, logger=0)
x = jnp.asarray(np.random.default_rng(0).random((64, 64, 64, 16)), jnp.float32)  # 16 MiB, like an image batch's
f = jax.jit(lambda x: jnp.sum(jnp.tanh(jnp.sort(x * 2.0 + 1.0, axis=1)), axis=0))
for _ in range(3):
  jax.block_until_ready(f(x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  jax.block_until_ready(f(x))
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def test_a_learner_process_reuses_freed_buffers_instead_of_faulting_them_in_again():
  """glibc's defaults hand a freed 16 MiB temporary back to the kernel, so every call faults its pages in again
  (~8000 minor faults per call); once a learner exists in the process, later calls reuse them."""
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  faults = {}
  for mode in ("plain", "learner"):
    out = subprocess.run(
      [sys.executable, "-c", _FAULTS_PROGRAM, mode], cwd=root, capture_output=True, text=True, check=True, timeout=300
    )
    faults[mode] = float(out.stdout.split()[-1])
  assert faults["plain"] > 1000, faults
  assert faults["learner"] < 100, faults


@pytest.mark.parametrize(
  "shape, kernel, stride, padding",
  [
    ((64, 64, 3), 8, 4, "SAME"),  # the Atari torso's first layer
    ((16, 16, 16), 4, 2, "SAME"),  # its second
    ((64, 64, 3), 8, 4, "VALID"),
    ((15, 15, 16), 4, 2, "VALID"),  # VALID that leaves the last row and column unused
    ((37, 53, 3), 8, 4, "SAME"),  # a camera of its own size, not square
    ((20, 31, 5), 3, 2, "SAME"),  # a kernel that is not a multiple of the stride
    ((9, 9, 4), 5, 3, "VALID"),
    ((8, 8, 32), 3, 1, "SAME"),  # its third, stride 1: patches
    ((7, 10, 4), 4, 1, "SAME"),  # an even kernel pads one more after than before
    ((7, 10, 4), 3, 1, "VALID"),
  ],
)
def test_conv_as_matmul_is_lax_conv_with_the_same_gradients(shape, kernel, stride, padding):
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((3,) + shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], 6)) / kernel, jnp.float32)
  ref, ref_vjp = jax.vjp(lambda x, w: conv.lax_conv(x, w, stride, padding), x, w)
  with conv.implementation("matmul"):
    out, vjp = jax.vjp(lambda x, w: conv.conv2d(x, w, stride, padding), x, w)
  assert out.shape == ref.shape
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
  cotangent = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
  for got, want in zip(vjp(cotangent), ref_vjp(cotangent)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
  "shape, kernel, stride, padding",
  [((64, 64, 3), 8, 4, "SAME"), ((64, 64, 3), 8, 4, "VALID"), ((37, 53, 3), 8, 4, "SAME"), ((20, 31, 5), 3, 2, "SAME")],
)
def test_prepared_blocks_are_the_images_to_conv2d(shape, kernel, stride, padding):
  """conv.prepare cuts images into a strided layer's input blocks once: conv2d of the Blocks is lax's conv of the
  images with the same weight gradient, under either implementation; a subset taken by tree_map keeps the
  geometry; Blocks reaching a layer of another geometry are refused."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((4,) + shape), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], 6)) / kernel, jnp.float32)
  ref, ref_vjp = jax.vjp(lambda w: conv.lax_conv(x, w, stride, padding), w)
  cotangent = jnp.asarray(rng.standard_normal(ref.shape), jnp.float32)
  with conv.implementation("matmul"):
    blocks = conv.prepare(x, kernel, stride, padding)
    assert isinstance(blocks, conv.Blocks) and blocks.shape == x.shape and blocks.dtype == x.dtype
    np.testing.assert_array_equal(blocks.images(), x)
    out, vjp = jax.vjp(lambda w: jax.jit(conv.conv2d, static_argnums=(2, 3))(blocks, w, stride, padding), w)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(vjp(cotangent)[0], ref_vjp(cotangent)[0], rtol=1e-4, atol=1e-4)
    subset = jax.tree_util.tree_map(lambda rows: rows[jnp.asarray([2, 0])], blocks)
    np.testing.assert_allclose(conv.conv2d(subset, w, stride, padding), ref[jnp.asarray([2, 0])], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="Blocks cut for"):
      conv.conv2d(blocks, w, stride + 1, padding)
  with conv.implementation("lax"):
    assert conv.prepare(x, kernel, stride, padding) is x
    np.testing.assert_allclose(conv.conv2d(blocks, w, stride, padding), ref, rtol=1e-4, atol=1e-4)


def test_laeo_prepares_its_image_success_examples_once():
  """LaeoLearner holds the success examples cut into the first layer's blocks (every update encodes them again
  with new critic parameters, never anew from pixels; that they give the raw images' features is
  test_prepared_images_give_the_raw_images_features). Vector observations pass unchanged."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  with conv.implementation("matmul"):  # The form these blocks belong to (CPU's).
    config = agents.make_config("laeo", **TINY["laeo"], torso_channels=(4, 4, 4))
    builder = agents.make_builder("laeo", **TINY["laeo"], torso_channels=(4, 4, 4))
    networks = builder.make_networks(OBS_SPECS["image"], ACTION_SPEC)
    rng = np.random.default_rng(3)
    success = _obs(rng, "image", 5)
    learner = laeo_learning.LaeoLearner(
      networks,
      config,
      Feeder("future", "image"),
      success,
      jax.random.PRNGKey(1),
      counter=common_learner.StepCounter(),
      logger=RecordingLogger(),
    )
    assert isinstance(learner.success_examples, conv.Blocks) and learner.success_examples.shape == success.shape
    key, subset_config = jax.random.PRNGKey(4), dataclasses.replace(config, num_q_success_examples=3)
    subset = laeo_learning.q_success_subset(subset_config, learner.success_examples, key)
    raw_subset = laeo_learning.q_success_subset(subset_config, jnp.asarray(success), key)
    assert isinstance(subset, conv.Blocks) and subset.shape == raw_subset.shape == (3, 64, 64, 3)
    np.testing.assert_allclose(subset.images(), raw_subset / 255.0, rtol=1e-6)
    state_networks = builder.make_networks(OBS_SPECS["state"], ACTION_SPEC)
    vectors = jnp.asarray(_obs(rng, "state", 3))
    assert state_networks.prepare(vectors) is vectors


@pytest.mark.parametrize("implementation", ["matmul", "lax"])
def test_prepared_images_give_the_raw_images_features(implementation):
  """Under every conv implementation, the encoders and the policy read prepared images as the raw ones (the
  prepared form is the Blocks of scaled images only where the first layer runs as a matmul)."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  with conv.implementation(implementation):
    config = agents.make_config("laeo", **TINY["laeo"], torso_channels=(4, 4, 4))
    networks = agents.make_builder("laeo", **TINY["laeo"], torso_channels=(4, 4, 4)).make_networks(
      OBS_SPECS["image"], ACTION_SPEC
    )
    state = laeo_learning.make_initial_state(networks, config, jax.random.PRNGKey(0))
    obs = jnp.asarray(_obs(np.random.default_rng(3), "image", 4))
    prepared = networks.prepare(obs)
    assert isinstance(prepared, conv.Blocks) == (implementation == "matmul")
    np.testing.assert_allclose(
      networks.encode(state.critic_params, prepared), networks.encode(state.critic_params, obs), rtol=1e-5, atol=1e-6
    )
    for got, want in zip(
      networks.policy.apply(state.policy_params, prepared), networks.policy.apply(state.policy_params, obs)
    ):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _image_cuts(jaxpr) -> int:
  """How many times a jaxpr (and the jaxprs inside it) cuts 3-channel images into a strided layer's blocks."""
  n = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "transpose" and tuple(eqn.params["permutation"]) == (0, 1, 3, 2, 4, 5):
      n += eqn.invars[0].aval.shape[-1] == 3
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else [value]:
        if hasattr(sub, "jaxpr") and hasattr(sub, "consts"):  # A ClosedJaxpr (its module moved in newer jax).
          n += _image_cuts(sub.jaxpr)
        elif hasattr(sub, "eqns"):
          n += _image_cuts(sub)
  return n


def test_laeo_image_update_never_cuts_the_success_examples_again():
  """LaeoLearner holds its success examples cut into blocks, so its update cuts one set of images fewer than the
  same update given them raw; the images it still cuts are the batch's."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  with conv.implementation("matmul"):  # The form these blocks belong to (CPU's).
    builder = agents.make_builder("laeo", **TINY["laeo"], torso_channels=(4, 4, 4))
    networks = builder.make_networks(OBS_SPECS["image"], ACTION_SPEC)
    success = _obs(np.random.default_rng(7), "image", 5)
    learner = builder.make_learner(
      networks,
      Feeder(builder.batch_kind, "image"),
      success,
      jax.random.PRNGKey(1),
      counter=common_learner.StepCounter(),
      logger=RecordingLogger(),
    )
    batch = {k: jnp.asarray(v) for k, v in next(Feeder(builder.batch_kind, "image")).items()}

    def cuts(success_examples):
      update = learner._update_fn  # pylint: disable=protected-access
      return _image_cuts(jax.make_jaxpr(update)(learner.save(), batch, success_examples).jaxpr)

    assert cuts(learner.success_examples) == cuts(jnp.asarray(success)) - 1 > 0


def test_atari_torso_keeps_hk_conv2d_parameters_and_runs_its_layers_as_matmuls_on_cpu():
  """Same parameter names, shapes and initial values as hk.Conv2D layers (checkpoints restore, seeds reproduce),
  the same features; in the matmul form (CPU's) the two strided layers are matmuls, and the stride-1 layer is a
  convolution in a forward pass alone and matmuls when differentiated."""
  import haiku as hk  # pylint: disable=g-import-not-at-top

  from agents.common import conv  # pylint: disable=g-import-not-at-top
  from agents.common import networks as common_networks  # pylint: disable=g-import-not-at-top

  class Reference(hk.Module):
    def __call__(self, x):
      for channels, kernel, stride in zip((16, 32, 32), (8, 4, 3), (4, 2, 1)):
        x = jax.nn.relu(hk.Conv2D(channels, kernel, stride=stride, padding="SAME")(x))
      return x.reshape(x.shape[0], -1)

  x = jnp.asarray(np.random.default_rng(0).random((5, 64, 64, 3)), jnp.float32)
  torso = hk.without_apply_rng(hk.transform(lambda x: common_networks.AtariTorso((16, 32, 32), "SAME")(x)))
  reference = hk.without_apply_rng(hk.transform(lambda x: Reference(name="atari_torso")(x)))
  params, ref_params = torso.init(jax.random.PRNGKey(3), x), reference.init(jax.random.PRNGKey(3), x)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref_params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, ref_params)
  with conv.implementation("matmul"):
    np.testing.assert_allclose(torso.apply(params, x), reference.apply(params, x), rtol=1e-4, atol=1e-5)
    convs = str(jax.make_jaxpr(torso.apply)(params, x)).count("conv_general_dilated")
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(torso.apply(p, x) ** 2)))
    assert "convolution" not in grad.lower(params, x).as_text()
    grads = grad(params, x)
  with conv.implementation("lax"):
    lax_convs = str(jax.make_jaxpr(torso.apply)(params, x)).count("conv_general_dilated")
  assert (convs, lax_convs) == (1, 3)
  ref_grad = jax.grad(lambda p, x: jnp.sum(reference.apply(p, x) ** 2))(params, x)
  jax.tree_util.tree_map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4), grads, ref_grad)


def test_conv_implementation_switch_is_not_undone_by_jax_reusing_a_trace():
  """jax reuses a function's trace across jit wrappers; a switch of implementation must still take effect."""
  from agents.common import conv  # pylint: disable=g-import-not-at-top

  x, w = jnp.ones((2, 16, 16, 3)), jnp.ones((4, 4, 3, 5))

  def f(x, w):
    return conv.conv2d(x, w, 2, "SAME")

  def lowered_has_conv():
    return "convolution" in jax.jit(f).lower(x, w).as_text()

  auto_has_conv = jax.default_backend() != "cpu"  # auto: a matmul on CPU, lax's convolution on accelerators
  assert lowered_has_conv() == auto_has_conv
  with conv.implementation("lax"):
    assert lowered_has_conv()
  with conv.implementation("matmul"):
    assert not lowered_has_conv()
  assert lowered_has_conv() == auto_has_conv


@pytest.mark.parametrize(
  "name, obs_kind",
  [("laeo", "state"), ("oril", "state"), ("purl", "state"), ("bc", "state"), ("laeo", "image"), ("oril", "image")],
)
def test_a_learner_resumed_from_a_checkpoint_trains_on_exactly_as_one_never_stopped(name, obs_kind, tmp_path):
  # A run stopped at an odd step (TD3's policy updates every other step) and resumed in a fresh learner from its
  # Orbax checkpoint must make the same updates on the same batches as a run that never stopped.
  from launch import checkpointing

  config = agents.make_config(name, **TINY[name])
  builder = agents.make_builder(name).__class__(config)
  networks = builder.make_networks(OBS_SPECS[obs_kind], ACTION_SPEC)
  rng = np.random.default_rng(7)
  batches = [make_batch(rng, builder.batch_kind, obs_kind) for _ in range(6)]
  success = _obs(np.random.default_rng(123), obs_kind, NUM_SUCCESS)

  def learner(first_batch):
    return builder.make_learner(
      networks,
      iter(batches[first_batch:]),
      success,
      jax.random.PRNGKey(0),
      counter=common_learner.StepCounter(),
      logger=RecordingLogger(),
    )

  never_stopped = learner(0)
  for _ in range(6):
    never_stopped.step()
  stopped = learner(0)
  for _ in range(3):
    stopped.step()
  checkpointing.Checkpointer(str(tmp_path)).save(3, stopped.save(), {})
  resumed = learner(3)
  resumed.restore(checkpointing.Checkpointer(str(tmp_path)).latest()["learner"])
  for _ in range(3):
    resumed.step()
  for a, b in zip(jax.tree_util.tree_leaves(never_stopped.save()), jax.tree_util.tree_leaves(resumed.save())):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)
