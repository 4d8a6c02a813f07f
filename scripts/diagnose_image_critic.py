"""Measures an image critic before hours of training are spent on it (not a test).

  python scripts/diagnose_image_critic.py --env=fetch_reach_image --variants laptop:torso_padding=VALID laptop \
      --num_steps=2000 --check_every=500

Each variant PRESET[:NAME=VALUE,...] trains LAEO in one process on a generated dataset of --episodes medium
episodes (the launcher's batch cutting, in memory), and every --check_every updates measures, on data it never
trains on:

* contrastive accuracy: on held-out future batches, how often the critic ranks a state-action's own future first
  among the batch's B futures (top-1; chance 1/B), and the binary NCE accuracy with positives and negatives
  weighed alike (positive logit > 0, negatives < 0; chance 0.5);
* Q's action gradient: on probe frames (rollouts of the same checkpoint mixture, with the simulator state kept),
  the cosine between grad_a Q(s, a) (a = the probe's action) and the clean scripted controller's action there
  (the direction an expert moves; 0 = uninformative), and how much the gradient differs between states
  (1 - |mean of unit gradients|: 0 = the same push in every state; the expert's own spread beside it);
* what the critic's encoder sees: the R^2, per axis, of a ridge regression from its features to the gripper
  (and block) position, fitted on half the probe frames and scored on the other half;
* what Q orders: the Spearman correlation of Q(s, a) on the probe frames with closeness to the goal (the block's
  distance to it on FetchPush, the gripper's on FetchReach) and with the step's time into its episode, beside the
  probe's own correlation of time and closeness (a critic trained on no reward can still rank states by time).

With --workdirs the same measures are taken once of each finished run's latest checkpoint (e.g. a 40000-update
Fig. 3 run), on its own task, success examples and networks; a LAEO run's held-out batches then come from
--episodes fresh medium episodes generated with seed 1 (the runs trained on seed 0's), and the row's variant names
the workdir:

  python scripts/diagnose_image_critic.py --workdirs runs/paper/fig3/DATASET/laeo_laptop_40000steps_seed2 \
      --episodes=100

A checkpoint's row also says what its policy follows, for any agent: the mean cosine of the policy's (deterministic)
movement with the clean controller's and with the action the probe's behaviour took, beside the behaviour's own
cosine with the controller. For ORIL and PURL runs (a TD3 critic on a classifier's reward) the action gradient is
that of the twin critics' minimum, there are no contrastive or encoder measures, and the classifier is measured on
the probe frames: its mean reward, the rank correlation of its logit with closeness to the goal, how often a frame
where the task is solved gets a higher logit than one where it is not (AUC; 0.5 = no better than chance), and the
share of its summed reward on solved frames (beside their share of the frames).

How far the Q-term moves the policy's action from where cloning alone puts it, for LAEO, ORIL and PURL (the median
length over frames where the controller moves, beside the median length of the policy's action): TD3+BC's actor
loss -alpha / mean|Q| * Q(s, a) + |a - a_data|^2 is least, for one state, at a - a_data = alpha / mean|Q| / 2 *
grad_a Q; LAEO's (1 - lambda) * -Q(s, tanh u) - lambda * log N(atanh a_data; mu, sigma^2), to first order at its
mean, at mu - atanh a_data = (1 - lambda) / lambda * sigma^2 * dQ/du, which moves the action by (1 - a^2) times
that (a = tanh mu; sigma held, Q taken at the mean action rather than sampled).

Rows are appended to results/image_critic_diagnostic.csv (--out: another CSV) as they are measured, each with the
commit that made it.
"""

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
from typing import Dict, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
import scipy.stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import agents  # noqa: E402
import environments  # noqa: E402
from agents.laeo import learning as laeo_learning  # noqa: E402
from agents.common import learner as learner_lib  # noqa: E402
from data_pipeline import batches  # noqa: E402
from data_pipeline import generate  # noqa: E402
from data_pipeline import rlds_reader  # noqa: E402
from data_pipeline import scripted  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import in_process  # noqa: E402
from launch import policy as policy_lib  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from scripts import reproduce  # noqa: E402

OUT = os.path.join(ROOT, "results", "image_critic_diagnostic.csv")
POSITIONS = ("gripper_x", "gripper_y", "gripper_z", "block_x", "block_y", "block_z")
# Every row has every column (empty where a measure does not apply), so the CSV keeps one header.
COLUMNS = (
  *("env", "dataset", "variant", "agent", "batch_size", "seed", "step", "feature_dim"),
  *("heldout_top1", "heldout_top1_chance", "heldout_balanced_binary_acc"),
  *("grad_expert_cosine", "grad_state_spread", "expert_state_spread", *(f"r2_{n}" for n in POSITIONS)),
  *("q_goal_spearman", "q_time_spearman", "time_goal_spearman"),
  *("policy_expert_cosine", "policy_behaviour_cosine", "behaviour_expert_cosine"),
  *("reward_mean", "reward_goal_spearman", "reward_success_auc", "reward_solved_share", "solved_share"),
  *("actor_q_shift", "policy_action_norm"),
  *("train_steps_per_s", "commit"),
)


def parse_variant(text: str):
  """'laptop:torso_padding=VALID,batch_size=64' -> ('laptop', overrides); commas inside brackets stay."""
  preset, _, rest = text.partition(":")
  return preset, run_config_lib.parse_overrides([item for item in re.split(r",(?![^()]*\))", rest) if item])


class Probe(NamedTuple):
  """Every step of rollouts of the medium checkpoint mixture: image, simulator positions (gripper, block), the
  action taken, the clean controller's action there, the distance to the goal (the block's, else the gripper's),
  whether the task is solved and the step's index in its episode."""

  images: np.ndarray
  positions: np.ndarray
  actions: np.ndarray
  expert: np.ndarray
  goal_distance: np.ndarray
  solved: np.ndarray
  time: np.ndarray


def probe_frames(env_name: str, episodes: int, seed: int) -> Probe:
  """The Probe of `episodes` rollouts."""
  env = environments.make(env_name, seed=seed)
  rng = np.random.default_rng(seed)
  mixture = scripted.checkpoint_mixture(env.base_task, "medium")
  competences = [c for c, _ in mixture]
  weights = np.array([w for _, w in mixture])
  controller = scripted.CONTROLLERS[env.base_task]
  images, positions, actions, expert, distance, solved, time = [], [], [], [], [], [], []
  for _ in range(episodes):
    ts = env.reset()
    t = 0
    policy = scripted.make_checkpoint_policy(env, float(rng.choice(competences, p=weights)), rng)
    while not ts.last():
      state = env.privileged_state()
      action = policy()
      images.append(ts.observation)
      positions.append(np.concatenate([state["gripper_pos"], state.get("object_pos", np.zeros(0))]))
      actions.append(action)
      expert.append(controller(state))
      distance.append(np.linalg.norm(state.get("object_pos", state["gripper_pos"]) - state["goal_pos"]))
      solved.append(env.success())
      time.append(t)
      ts, t = env.step(action), t + 1
  env.close()
  return Probe(
    np.stack(images),
    np.stack(positions),
    np.stack(actions).astype(np.float32),
    np.stack(expert),
    np.array(distance),
    np.array(solved),
    np.array(time),
  )


def mean_cosine(a, b, where) -> float:
  """The mean cosine between the movement parts (x, y, z) of two action arrays over the frames `where`."""
  unit = lambda x: x[:, :3] / (np.linalg.norm(x[:, :3], axis=-1, keepdims=True) + 1e-12)
  return round(float(np.mean(np.sum(unit(a) * unit(b), -1)[where])), 3)


def spearman(x, y) -> float:
  """Spearman's rank correlation, tied values sharing their mean rank (nan when either side is constant)."""
  return round(float(scipy.stats.spearmanr(x, y)[0]), 3)


def value_measures(q, probe: Probe) -> Dict:
  """Whether Q(s, a) on the probe frames rises as the goal nears, or with the time into the episode (beside how
  much time and closeness go together in the probe): a critic of no reward can still order states by time."""
  return {
    "q_goal_spearman": spearman(q, -probe.goal_distance),
    "q_time_spearman": spearman(q, probe.time),
    "time_goal_spearman": spearman(probe.time, -probe.goal_distance),
  }


def reward_measures(logits, probe: Probe) -> Dict:
  """A success classifier's logits on the probe frames: mean reward, Spearman correlation with closeness to the
  goal, the AUC of solved against unsolved frames (empty when the probe has only one kind), and the share of the
  summed reward that falls on solved frames beside their share of the frames. The ranks say how the bulk of frames
  is ordered; the share is what a TD critic sums, where a few frames of tiny but largest rewards can dominate."""
  solved, unsolved = logits[probe.solved], logits[~probe.solved]
  auc = ""
  if len(solved) and len(unsolved):
    auc = round(float(np.mean(solved[:, None] > unsolved[None, :]) + 0.5 * np.mean(solved[:, None] == unsolved)), 3)
  reward = scipy.special.expit(np.asarray(logits, np.float64))
  return {
    "reward_mean": float(f"{np.mean(reward):.3g}"),
    "reward_goal_spearman": spearman(logits, -probe.goal_distance),
    "reward_success_auc": auc,
    "reward_solved_share": round(float(reward[probe.solved].sum() / reward.sum()), 3),
    "solved_share": round(float(np.mean(probe.solved)), 3),
  }


def ridge_r2(train_x, train_y, test_x, test_y) -> np.ndarray:
  """Per-output R^2 on the test frames of a ridge regression fitted on the train frames (centred features, the
  ridge strength relative to their mean variance, picked per output on the last fifth of the train frames)."""
  mean, y_mean = train_x.mean(0), train_y.mean(0)
  a, b = train_x - mean, test_x - mean
  scale = np.mean(a**2) + 1e-12
  r2 = lambda pred, y: 1.0 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
  fit = lambda x, y, alpha: np.linalg.solve(x.T @ x + alpha * scale * len(x) * np.eye(x.shape[1]), x.T @ y)
  cut = len(a) * 4 // 5
  alphas = [10.0**k for k in range(-4, 3)]
  scores = np.stack([r2(a[cut:] @ fit(a[:cut], train_y[:cut] - y_mean, r) + y_mean, train_y[cut:]) for r in alphas])
  best = [alphas[int(np.argmax(scores[:, j]))] for j in range(train_y.shape[1])]
  return np.array(
    [r2(b @ fit(a, train_y[:, [j]] - y_mean[j], best[j]) + y_mean[j], test_y[:, [j]])[0] for j in range(len(best))]
  )


def make_probes(networks, config):
  """jitted (critic_params, batch) -> contrastive metrics; (critic_params, obs, action, examples) -> (grad_a Q,
  the encoder's features, Q), Q the twins' minimum."""

  def contrastive(critic_params, batch):
    features = networks.encode(critic_params, batch["observation"])
    phi = networks.phi_head(critic_params, features, batch["action"])
    psi = networks.psi(critic_params, batch["future_observation"])
    logits = jnp.einsum("kbr,kcr->kbc", phi, psi)
    eye = jnp.eye(logits.shape[-1], dtype=bool)
    top1 = jnp.mean(jnp.argmax(logits, axis=-1) == jnp.arange(logits.shape[-1]))
    # Balanced: positives and negatives weigh alike (all-negative guessing scores 0.5, not (B - 1) / B).
    eye = jnp.broadcast_to(eye, logits.shape)  # Both twins.
    balanced = 0.5 * (jnp.sum((logits > 0) & eye) / jnp.sum(eye) + jnp.sum((logits < 0) & ~eye) / jnp.sum(~eye))
    return top1, balanced

  def q_grad(critic_params, obs, action, examples):
    features = networks.encode(critic_params, obs)

    def q_sum(a):
      q = jnp.min(
        laeo_learning.q_values(networks, config, critic_params, features, a, examples, jax.random.PRNGKey(0)), 0
      )
      return jnp.sum(q), q

    grad, q = jax.grad(q_sum, has_aux=True)(action)
    return grad, features, q

  return jax.jit(contrastive), jax.jit(q_grad)


def measure(probes, critic_params, held_out_batches, probe: Probe, examples) -> Dict:
  """The diagnostic's measures of one critic (make_probes' pair; see the module's doc)."""
  contrastive, q_grad = probes
  top1, binary = np.mean([contrastive(critic_params, b) for b in held_out_batches], axis=0)
  grads, features, q = in_chunks(lambda o, a: q_grad(critic_params, o, a, examples), probe.images, probe.actions)
  half = len(probe.images) // 2
  r2 = ridge_r2(features[:half], probe.positions[:half], features[half:], probe.positions[half:])
  return {
    "feature_dim": features.shape[1],
    "heldout_top1": round(float(top1), 3),
    "heldout_top1_chance": round(1.0 / len(held_out_batches[0]["action"]), 3),
    "heldout_balanced_binary_acc": round(float(binary), 3),
    **gradient_measures(grads, probe),
    **value_measures(q, probe),
    **{f"r2_{n}": round(float(v), 3) for n, v in zip(POSITIONS, r2)},
  }


def gradient_measures(grads, probe: Probe) -> Dict:
  """How Q's action gradients on the probe frames point: along the clean controller's movement, and alike or not
  between states (beside the controller's own spread)."""
  unit = grads[:, :3] / (np.linalg.norm(grads[:, :3], axis=-1, keepdims=True) + 1e-12)
  expert_unit = probe.expert[:, :3] / (np.linalg.norm(probe.expert[:, :3], axis=-1, keepdims=True) + 1e-12)
  moving = moving_frames(probe)
  return {
    "grad_expert_cosine": mean_cosine(grads, probe.expert, moving),
    "grad_state_spread": round(float(1.0 - np.linalg.norm(unit.mean(0))), 3),
    "expert_state_spread": round(float(1.0 - np.linalg.norm(expert_unit[moving].mean(0))), 3),
  }


def shift_measures(shift, actions, moving) -> Dict:
  """The median length of the Q-term's action shifts and of the policy's actions over the `moving` frames."""
  length = lambda x: np.linalg.norm(x, axis=-1)[moving]
  return {
    "actor_q_shift": round(float(np.median(length(shift))), 4),
    "policy_action_norm": round(float(np.median(length(actions))), 3),
  }


def td3bc_shift_measures(q_grads, q, actions, bc_alpha: float, moving) -> Dict:
  """TD3+BC's Q-term as an action shift: at a frame, its actor loss -lmbda * Q(s, a) + |a - a_data|^2 (lmbda =
  alpha / mean|Q| over the frames, Q the first critic at the policy's action) is least where a - a_data = lmbda / 2
  * grad_a Q."""
  lmbda = bc_alpha / np.mean(np.abs(q))
  return shift_measures(lmbda / 2 * q_grads, actions, moving)


def laeo_shift_measures(q_grads, mean, log_std, bc_coef: float, moving) -> Dict:
  """LAEO's Q-term as an action shift: per pre-tanh dimension, (1 - lambda) * -Q(s, tanh u) + lambda * (u -
  atanh a_data)^2 / (2 sigma^2) is least, to first order at the mean mu, where mu - atanh a_data = (1 - lambda) /
  lambda * sigma^2 * (1 - a^2) * grad_a Q (a = tanh mu); the action moves by (1 - a^2) times that. q_grads are
  grad_a Q at a. None with lambda 0 (no cloning to move from)."""
  if bc_coef <= 0:
    return {}
  action = np.tanh(mean)
  shift = (1 - bc_coef) / bc_coef * np.exp(2 * log_std) * (1 - action**2) ** 2 * q_grads
  return shift_measures(shift, action, moving)


def moving_frames(probe: Probe) -> np.ndarray:
  return np.linalg.norm(probe.expert[:, :3], axis=-1) > 1e-3  # The expert's direction is defined.


def in_chunks(fn, *arrays, size: int = 256):
  """fn over `arrays` cut alike into chunks of `size` rows (bounded memory), its outputs concatenated: an array, or
  a tuple of them when fn returns a tuple."""
  outputs = [fn(*(a[i : i + size] for a in arrays)) for i in range(0, len(arrays[0]), size)]
  if isinstance(outputs[0], tuple):
    return tuple(np.concatenate([np.asarray(o[k]) for o in outputs]) for k in range(len(outputs[0])))
  return np.concatenate([np.asarray(o) for o in outputs])


def held_out(episodes, config, batch_size: int, seed: int):
  """Eight 'future' batches of `episodes`, cut as the launcher cuts them."""
  iterator = batches.make_in_memory_iterator(episodes, "future", batch_size, config.discount, seed=seed)
  return [next(iterator) for _ in range(8)]


def diagnose_checkpoints(args, code: str) -> None:
  """--workdirs: one row of each run's latest checkpoint, on fresh held-out episodes of its task."""
  probes = {}  # One probe per task, shared by its runs.
  for workdir in args.workdirs:
    config = run_config_lib.load_run_config(run_config_lib.run_config_path(workdir))
    checkpoint = checkpointing.for_run(workdir).latest()
    if checkpoint is None:
      raise SystemExit(f"{workdir}: no checkpoint.")
    builder = config.make_builder()
    observation_spec, action_spec = config.specs()
    networks = builder.make_networks(observation_spec, action_spec, config.observation_stats)
    if config.env not in probes:
      probes[config.env] = probe_frames(config.env, args.probe_episodes, seed=10_000 + args.seed)
    probe = probes[config.env]
    policy = policy_lib.load_policy(workdir, step=int(checkpoint["step"]))
    moving = moving_frames(probe)
    actions = in_chunks(policy, probe.images)
    (policy_params,) = learner_lib.state_variables(checkpoint["learner"], ["policy"])
    row = {
      "env": config.env,
      "dataset": os.path.basename(config.dataset_dirs[0]),
      "variant": f"checkpoint:{os.path.relpath(workdir, ROOT)}",
      "agent": config.agent,
      "batch_size": args.batch_size,
      "seed": config.seed,
      "step": int(checkpoint["step"]),
      "policy_expert_cosine": mean_cosine(actions, probe.expert, moving),
      "policy_behaviour_cosine": mean_cosine(actions, probe.actions, moving),
      "behaviour_expert_cosine": mean_cosine(probe.actions, probe.expert, moving),
      "commit": code,
    }
    if config.agent == "laeo":
      (critic_params,) = learner_lib.state_variables(checkpoint["learner"], ["critic_params"])
      with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "held_out")
        generate.generate_dataset(config.env, "medium", args.episodes, data, seed=1, show_progress=False)
        batches_ = held_out(list(rlds_reader.iter_episodes([data])), builder.config, args.batch_size, args.seed + 1)
      examples = config.load_success_examples()
      critic_probes = make_probes(networks, builder.config)
      row.update(measure(critic_probes, critic_params, batches_, probe, examples))
      policy_apply = jax.jit(networks.policy.apply)
      mean, log_std = in_chunks(lambda o: policy_apply(policy_params, o), probe.images)
      q_grads = in_chunks(lambda o, a: critic_probes[1](critic_params, o, a, examples)[0], probe.images, np.tanh(mean))
      row.update(laeo_shift_measures(q_grads, mean, log_std, builder.config.bc_coef, moving))
    elif config.agent in ("oril", "purl"):
      critic_params, classifier_params = learner_lib.state_variables(
        checkpoint["learner"], ["critic_params", "classifier_params"]
      )

      def q_sum(a, obs, p):  # The twins' minimum, summed for its gradient, and itself beside it.
        q = jnp.min(networks.critic.apply(p, obs, a), axis=0)
        return jnp.sum(q), q

      def actor_q(obs, policy_params, critic_params):  # The actor loss's Q: the first critic at the policy's action.
        def q0_sum(a):
          q0 = networks.critic.apply(critic_params, obs, a)[0]
          return jnp.sum(q0), q0

        action = networks.policy.apply(policy_params, obs)
        return (*jax.grad(q0_sum, has_aux=True)(action), action)

      q_grad, logits = jax.jit(jax.grad(q_sum, has_aux=True)), jax.jit(networks.classifier.apply)
      grads, q = in_chunks(lambda a, obs: q_grad(a, obs, critic_params), probe.actions, probe.images)
      row.update(gradient_measures(grads, probe))
      row.update(value_measures(q, probe))
      at_policy = jax.jit(actor_q)
      shift_inputs = in_chunks(lambda obs: at_policy(obs, policy_params, critic_params), probe.images)
      row.update(td3bc_shift_measures(*shift_inputs, builder.config.bc_alpha, moving))
      row.update(reward_measures(in_chunks(lambda obs: logits(classifier_params, obs), probe.images), probe))
    print(row, flush=True)
    append(args.out, row)


def append(path: str, row: Dict) -> None:
  reproduce.append_row(path, {c: row.get(c, "") for c in COLUMNS}, columns=COLUMNS)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--env", default="fetch_reach_image")
  parser.add_argument("--variants", nargs="+", default=["laptop"])
  parser.add_argument("--episodes", type=int, default=1000, help="Training episodes (medium quality).")
  parser.add_argument("--dataset_dir", default="", help="An existing dataset of --env instead of generating one.")
  parser.add_argument("--probe_episodes", type=int, default=100)
  parser.add_argument("--num_steps", type=int, default=2000)
  parser.add_argument("--check_every", type=int, default=500)
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--out",
    default=OUT,
    help="The CSV each measured row is appended to (created with its header when missing; default "
    "results/image_critic_diagnostic.csv).",
  )
  parser.add_argument(
    "--workdirs",
    nargs="+",
    default=None,
    help="Finished runs of any agent: measure each one's latest checkpoint instead of training --variants (LAEO's "
    "held-out batches from --episodes fresh episodes).",
  )
  args = parser.parse_args()
  code = reproduce.code_commit()  # The code this process runs, whatever is committed meanwhile.
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  if args.workdirs:
    diagnose_checkpoints(args, code)
    return

  dataset = args.dataset_dir
  if not dataset:  # The dataset Fig. 3's runs use (scripts/reproduce.py), made on first use.
    run = reproduce.Run(figure=3, task=args.env, agent="laeo", seed=0)
    budget = dataclasses.replace(reproduce.BUDGETS["cpu"], image_dataset_episodes=args.episodes)
    dataset = reproduce.dataset_dir(run, budget)
    reproduce.ensure_dataset(dataset, run, args.episodes)
  episodes = list(rlds_reader.iter_episodes([dataset]))
  test, train = episodes[: len(episodes) // 10], episodes[len(episodes) // 10 :]
  examples = success_lib.load_success_examples(dataset)
  probe = probe_frames(args.env, args.probe_episodes, seed=10_000 + args.seed)
  env = environments.make(args.env, seed=0)
  for variant in args.variants:
    preset, overrides = parse_variant(variant)
    overrides = {**agents.preset("laeo", preset), "batch_size": args.batch_size, **overrides}
    builder = agents.make_builder("laeo", **overrides)
    networks, learner = in_process.make_learner(
      builder, env.observation_spec(), env.action_spec(), train, examples, args.seed
    )
    held_out_batches = held_out(test, builder.config, args.batch_size, args.seed + 1)
    probes = make_probes(networks, builder.config)
    started, steps = time.time(), 0
    while steps <= args.num_steps:  # Step 0: the initial networks, a baseline for every measure.
      if steps:
        for _ in range(args.check_every):
          learner.step()
      train_s = time.time() - started
      row = {
        "env": args.env,
        "dataset": os.path.basename(dataset),
        "variant": variant,
        "agent": "laeo",
        "batch_size": args.batch_size,
        "seed": args.seed,
        "step": steps,
        **measure(probes, learner.state.critic_params, held_out_batches, probe, examples),
        "train_steps_per_s": round(steps / train_s, 2) if steps else "",
        "commit": code,
      }
      print(row, flush=True)
      append(args.out, row)
      started = time.time() - train_s
      steps += args.check_every
  env.close()


if __name__ == "__main__":
  main()
