"""Learning tests: tiny networks, in-memory data, a point-mass task: every agent learns something real.

The task: a point in the plane starts near the origin; an action moves it by 0.1 * a (2-d, in [-1, 1]); success
is x > 0.5 (reachable in 5 steps). The dataset mixes two coherent "checkpoints", as the paper's data do: a
competent one (a third of the episodes) that heads for +x and a wrong one that heads for -y, each with
correlated noise. Cloning the mixture mostly heads the wrong way; LAEO must find the successful behaviour. Success examples
are states with x > 0.5.
"""

import dm_env
from dm_env import specs
import jax
import numpy as np
import pytest

import agents
from data_pipeline import rlds_writer
from launch import in_process
from launch import rollout

HORIZON = 10
TINY = {
  "hidden_sizes": (32, 32),
  "policy_hidden_sizes": (32, 32),
  "critic_hidden_sizes": (32, 32),
  "classifier_hidden_sizes": (32, 32),
  "repr_dim": 16,
  "batch_size": 64,
}


class PointEnv(dm_env.Environment):
  def __init__(self, seed):
    self._rng = np.random.default_rng(seed)
    self._x = np.zeros(2, np.float32)
    self._t = 0

  def reset(self):
    self._x = self._rng.uniform(-0.1, 0.1, 2).astype(np.float32)
    self._t = 0
    return dm_env.restart(self._x.copy())

  def step(self, action):
    self._x = self._x + 0.1 * np.clip(np.asarray(action, np.float32), -1, 1)
    self._t += 1
    if self._t >= HORIZON:
      return dm_env.truncation(0.0, self._x.copy())
    return dm_env.transition(0.0, self._x.copy())

  def success(self):
    return bool(self._x[0] > 0.5)

  def observation_spec(self):
    return specs.Array((2,), np.float32)

  def action_spec(self):
    return specs.BoundedArray((2,), np.float32, -1.0, 1.0)


def make_dataset(num_episodes=300, seed=0):
  rng = np.random.default_rng(seed)
  env = PointEnv(seed)
  episodes = []
  for i in range(num_episodes):
    direction = np.array([1.0, 0.0]) if i % 3 == 0 else np.array([0.0, -1.0])
    noise = np.zeros(2)
    timestep = env.reset()
    observations, actions, successes = [timestep.observation], [], [env.success()]
    while not timestep.last():
      noise = 0.8 * noise + 0.3 * rng.standard_normal(2)
      action = np.clip(0.8 * direction + noise, -1, 1).astype(np.float32)
      timestep = env.step(action)
      observations.append(timestep.observation)
      actions.append(action)
      successes.append(env.success())
    episodes.append(rlds_writer.make_episode(observations, actions, successes))
  states = np.concatenate([e["observation"] for e in episodes])
  examples = states[states[:, 0] > 0.5][:50]
  return episodes, examples


@pytest.fixture(scope="module")
def dataset():
  return make_dataset()


def train(agent, episodes, examples, steps, seed=0, **overrides):
  env = PointEnv(seed)
  config = {k: v for k, v in TINY.items() if k in agents.config_class(agent).__dataclass_fields__}
  builder = agents.make_builder(agent, **config, **overrides)
  unlabelled = [{k: v for k, v in e.items() if k != "success"} for e in episodes]
  networks, learner = in_process.make_learner(
    builder, env.observation_spec(), env.action_spec(), unlabelled, examples, seed
  )
  policy = jax.jit(builder.make_policy(networks), static_argnames="evaluation")
  before = success_rate(policy, learner.get_variables(["policy"])[0])
  for _ in range(steps):
    learner.step()
  return learner, networks, before, success_rate(policy, learner.get_variables(["policy"])[0])


def success_rate(policy, params, episodes=20):
  env, key, wins = PointEnv(123), jax.random.PRNGKey(0), 0
  for _ in range(episodes):
    any_step, _, key = rollout.run_episode(env, policy, params, key)
    wins += any_step
  return wins / episodes


def test_dataset_is_half_successful(dataset):
  episodes, examples = dataset
  rate = np.mean([rlds_writer.episode_success(e["success"]) for e in episodes])
  assert 0.25 <= rate <= 0.4 and len(examples) == 50


def test_laeo_finds_the_successful_behaviour_in_mixed_data(dataset):
  episodes, examples = dataset
  _, _, before, after = train("laeo", episodes, examples, steps=1500)
  assert before <= 0.2  # An untrained policy does not head for +x.
  assert after >= 0.8, (before, after)
  # The same policy without its Q-term (lambda = 1: cloning the mixture) does not.
  _, _, _, cloned = train("laeo", episodes, examples, steps=1500, bc_coef=1.0)
  assert cloned <= after - 0.3, (cloned, after)


def test_bc_imitates_the_competent_checkpoint(dataset):
  episodes, examples = dataset
  _, _, before, after = train("bc", episodes[::3], examples, steps=1000)  # The +x episodes only.
  assert before <= 0.2
  assert after >= 0.8, (before, after)


@pytest.mark.parametrize("agent", ["oril", "purl"])
def test_reward_classifier_ranks_success_above_failure(dataset, agent):
  episodes, examples = dataset
  learner, networks, _, _ = train(agent, episodes, examples, steps=300)
  params = learner.get_variables(["classifier_params"])[0]
  failed = np.concatenate([e["observation"] for i, e in enumerate(episodes) if i % 3 != 0])
  failed = failed[failed[:, 1] < -0.3]  # States of the wrong checkpoint, far from success.
  logits_success = np.asarray(networks.classifier.apply(params, examples))
  logits_failed = np.asarray(networks.classifier.apply(params, failed))
  assert logits_success.mean() > logits_failed.mean() + 2.0
  # Nearly every success example scores above nearly every failed state (AUC).
  auc = np.mean(logits_success[:, None] > logits_failed[None, :])
  assert auc > 0.95


@pytest.mark.parametrize("agent,steps", [("oril", 1000), ("purl", 2000)])
def test_reward_learning_policy_improves_on_its_predicted_reward(dataset, agent, steps):
  # TD3+BC on the classifier's reward must head for the success examples: from 0 untrained to 0.8-1.0 (ORIL) and
  # 0.55-0.65 (PURL) over seeds 0-2 when written; with the reward inverted both stay at 0.
  episodes, examples = dataset
  _, _, before, after = train(agent, episodes, examples, steps=steps)
  assert before <= 0.2
  assert after >= 0.4, (before, after)
