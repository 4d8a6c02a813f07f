"""Why does a policy reach the success states and then leave them? Per-step traces of a run's final checkpoint.

  python scripts/trace_leaving.py --workdir=runs/laeo_fetch_reach_seed0 --episodes=50

Rolls the run's latest checkpoint out (deterministic, as the evaluators do) in its own environment and records, at
every step, the distance from what must reach the goal (the gripper for reach, the block or handle otherwise) to
the goal, the success flag, the action and the hand's speed. For the episodes that succeed at some step but not at
the last ("leavers"), it reports when they first succeeded, how long they stayed, and how the policy acts while
the task holds: the size of its actions and whether they point towards the goal, beside the same quantities in the
run's dataset at its own success steps. The success examples' hand speeds are set beside the policy's at success
(success examples taken from passing-through states show motion that a policy may imitate).

Writes results/leaving/<env>_<run name>.json (--out: another folder) and prints the summary.
"""

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")

import environments  # noqa: E402
from data_pipeline import rlds_reader  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch.policy import load_policy  # noqa: E402

OUT = os.path.join(ROOT, "results", "leaving")
# Columns of the hand's velocity in each task's state observation (for the success examples' speeds).
HAND_VELOCITY = {"fetch_reach": slice(5, 8), "fetch_push": slice(20, 23)}


def achieved(state):
  return state.get("object_pos", state.get("gripper_pos", state.get("hand_pos")))


def hand(state):
  return state.get("gripper_pos", state.get("hand_pos"))


def trace(policy, env, episodes: int):
  records = []
  for _ in range(episodes):
    ts = env.reset()
    steps = []
    while not ts.last():
      state = env.privileged_state()
      observation = ts.observation
      action = np.asarray(policy(observation))
      ts = env.step(action)
      after = env.privileged_state()
      steps.append(
        {
          "observation": np.asarray(observation).tolist(),
          "distance": float(np.linalg.norm(achieved(state) - state["goal_pos"])),
          "to_goal": (state["goal_pos"] - achieved(state)).tolist(),
          "action": action.tolist(),
          "hand_speed": float(np.linalg.norm(hand(after) - hand(state))),
          "success_after": bool(env.success()),
        }
      )
    records.append(steps)
  return records


def critic_preferences(workdir: str, config, at_success):
  """LAEO only: the twin-min Q (log-mean-exp over the success examples) of the checkpoint's critic at the states
  where the task held, for the policy's action, no action, and half of it. If Q ranks the policy's action above
  standing still there, the Q-term itself pushes the policy out of the success states."""
  import jax  # pylint: disable=import-outside-toplevel

  from agents.laeo import learning as laeo_learning  # pylint: disable=import-outside-toplevel
  from launch import checkpointing  # pylint: disable=import-outside-toplevel

  from agents.common import learner as learner_lib  # pylint: disable=import-outside-toplevel

  critic_params = learner_lib.state_variables(checkpointing.for_run(workdir).latest()["learner"], ["critic_params"])[0]
  builder = config.make_builder()
  networks = builder.make_networks(*config.specs(), config.observation_stats)
  examples = success_lib.load_success_examples(config.success_examples or config.dataset_dirs[0])
  obs = np.asarray([s["observation"] for s, _ in at_success], np.float32)
  actions = np.asarray([s["action"] for s, _ in at_success], np.float32)
  scaling = config.scaling()
  if scaling is not None:
    actions = scaling.normalise(actions)

  @jax.jit
  def q(action):
    features = networks.encode(critic_params, obs)
    values = laeo_learning.q_values(
      networks, builder.config, critic_params, features, action, examples, jax.random.PRNGKey(0)
    )
    return values.min(axis=0)

  policy_q, zero_q, half_q = (np.asarray(q(a)) for a in (actions, np.zeros_like(actions), actions * 0.5))
  return {
    "q_policy_minus_still": float(np.mean(policy_q - zero_q)),
    "q_prefers_policy_over_still": float(np.mean(policy_q > zero_q)),
    "q_prefers_half_over_still": float(np.mean(half_q > zero_q)),
    "q_spread_over_success_states": float(np.std(policy_q)),
  }


def cosine(a, b):
  return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def success_states(records):
  """(step record, episode) of every step taken while the task held."""
  return [(s, i) for i, steps in enumerate(records) for t, s in enumerate(steps[1:]) if steps[t]["success_after"]]


def summarise(records, at_success, dataset_dir: str, task: str):
  success = np.array([[s["success_after"] for s in steps] for steps in records])
  leavers = [i for i in range(len(records)) if success[i].any() and not success[i, -1]]
  act = lambda s: np.asarray(s["action"][:3])
  summary = {
    "episodes": len(records),
    "success_any_step": float(success.any(axis=1).mean()),
    "success_final_step": float(success[:, -1].mean()),
    "leavers": len(leavers),
    "leavers_first_success_step": [int(np.argmax(success[i])) for i in leavers],
    "leavers_steps_at_goal": [int(success[i].sum()) for i in leavers],
    "leavers_final_distance": [round(records[i][-1]["distance"], 3) for i in leavers],
    "policy_at_success_mean_abs_action": float(np.mean([np.abs(act(s)).mean() for s, _ in at_success]))
    if at_success
    else None,
    "policy_at_success_action_goal_cosine": float(
      np.mean([cosine(act(s), s["to_goal"]) for s, _ in at_success if np.linalg.norm(act(s)) > 1e-3])
    )
    if at_success
    else None,
    "policy_at_success_hand_speed": float(np.mean([s["hand_speed"] for s, _ in at_success])) if at_success else None,
  }
  episodes = list(rlds_reader.iter_episodes([dataset_dir], flag_key="success"))
  # Steps hold (s_t, a_t); the last step's action is padding.
  acted = [np.r_[e["flag"][:-1], False] for e in episodes]
  data_actions = np.concatenate([e["action"][m] for e, m in zip(episodes, acted) if m.any()])
  summary["data_at_success_mean_abs_action"] = float(np.abs(data_actions[:, :3]).mean())
  summary["data_successful_steps"] = int(len(data_actions))
  examples = success_lib.load_success_examples(dataset_dir)
  if task in HAND_VELOCITY and examples.ndim == 2:  # State observations only.
    # Fetch observations hold the gripper's velocity times dt (metres per control step).
    summary["success_examples_hand_speed"] = float(np.linalg.norm(examples[:, HAND_VELOCITY[task]], axis=1).mean())
  return summary


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--episodes", type=int, default=50)
  parser.add_argument("--seed", type=int, default=12345)
  parser.add_argument(
    "--out",
    default=OUT,
    help="The folder that receives <env>_<run name>.json: the summary and every episode's per-step traces "
    "(default results/leaving).",
  )
  args = parser.parse_args()
  policy = load_policy(args.workdir)
  config = policy.config
  env = environments.make(config.env, seed=args.seed)
  records = trace(policy, env, args.episodes)
  env.close()
  summary = {
    "workdir": os.path.relpath(os.path.abspath(args.workdir), ROOT),
    "env": config.env,
    "agent": config.agent,
    "learner_steps": int(policy.step),
  }
  at_success = success_states(records)
  summary.update(summarise(records, at_success, config.dataset_dirs[0], environments.base_task(config.env)))
  if config.agent == "laeo" and at_success:
    summary.update(critic_preferences(args.workdir, config, at_success))
  print(json.dumps(summary, indent=1))
  os.makedirs(args.out, exist_ok=True)
  name = os.path.basename(os.path.normpath(args.workdir))
  with open(os.path.join(args.out, f"{config.env}_{name}.json"), "w") as f:
    # Per-step traces without the observations (kept small enough to commit).
    slim = lambda v: round(v, 4) if isinstance(v, float) else [slim(x) for x in v] if isinstance(v, list) else v
    episodes = [[{k: slim(v) for k, v in s.items() if k != "observation"} for s in steps] for steps in records]
    json.dump({"summary": summary, "episodes": episodes}, f)


if __name__ == "__main__":
  main()
