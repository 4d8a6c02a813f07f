"""Scripted data-collection policies: "checkpoints" of graded competence.

The paper's datasets are rollouts of checkpoints of an online learner: coherent
behaviours of graded skill, not one expert with per-step noise. Ours imitate that
with a set of checkpoint policies, each a clean task controller degraded
according to its ``competence`` c in [0, 1] (1 = the clean controller):

* a wrong target: the controller aims at ``goal + (1 - c) * WRONG_TARGET[task]``,
  the offset rotated by up to +-0.5 rad and scaled by 0.5-1.5 per episode, so weak
  checkpoints steer coherently towards one wrong region (as an early learner
  that has not found the goal yet);
* a late start: the first ``U{0..(1 - c) * 0.3 * horizon}`` steps are spent
  dithering (noise only);
* temporally correlated action noise: an AR(1) process (``NOISE_CORRELATION``
  0.8) of stationary std ``NOISE_MIN + (1 - c) * (NOISE_MAX - NOISE_MIN)``.

A dataset's quality is a mixture over ``CHECKPOINTS`` (competences 0, 0.2, ...,
1): weights proportional to ``exp(beta * c)``, with ``beta`` per task and
quality in ``QUALITY_BETA`` (solved by ``python scripts/tune_checkpoints.py``)
so that 'medium' gives 45-50 % successful episodes and 'low' 8-12 % (success at
any step, the authors' metric). 'expert' is the clean controller alone (the
pipeline's sanity check: behavioural cloning must solve the task from it).

``make_checkpoint_policy(env, competence, rng)`` reads
``env.privileged_state()``, never the agent's observation, so image variants use
exactly the same policies as their state task. All randomness comes from ``rng``.

Clean controllers (proportional control of the end effector towards a
phase-dependent target point, saturated to the action bounds):

* fetch_reach: straight to the goal.
* fetch_push: a continuous pusher (``_fetch_push``): to a point behind the block
  (on the block-to-goal line) at a safe height, down, push along the line; it
  holds still once the block is at the goal, and its noise-averaged action still
  succeeds under 1 cm of noise on its inputs.
* sawyer_window_open: above a point left of the handle, descend, push +x.
* sawyer_drawer_close: above a point in front of the handle, descend, push +y.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from environments.base import ExampleControlEnv

CHECKPOINTS: Tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
QUALITIES = ("medium", "low", "expert")
NOISE_CORRELATION = 0.8
NOISE_MIN, NOISE_MAX = 0.1, 0.6
LATE_START_FRACTION = 0.3

# Where weak checkpoints aim instead of the goal (metres, added to the goal).
WRONG_TARGET: Dict[str, np.ndarray] = {
  "fetch_reach": np.array([-0.15, 0.25, 0.15]),  # behind the start, up and to the left
  "fetch_push": np.array([0.0, -0.20, 0.0]),  # pushes the block 20 cm short of the goal in y
  "sawyer_window_open": np.array([-0.50, 0.0, 0.0]),  # stops short: the window barely opens
  "sawyer_drawer_close": np.array([0.0, -0.40, 0.0]),  # stops short: the drawer stays open
}

# beta of the mixture weights exp(beta * c) over CHECKPOINTS, solved by scripts/tune_checkpoints.py from
# each checkpoint's success rate (any step; 100 episodes each, results/checkpoint_tuning.json):
#   fetch_reach          0.04 0.02 0.04 0.11 0.50 1.00
#   fetch_push           0.05 0.05 0.10 0.23 0.74 1.00  (controller version 2, 200 episodes each)
#   sawyer_window_open   0.18 0.21 0.33 0.68 1.00 1.00  (its weakest checkpoint succeeds 18 %, so 'low' cannot
#                                                        reach 8-12 %: beta -30 gives ~18 %; no figure uses it)
#   sawyer_drawer_close  0.05 0.06 0.08 0.29 0.91 1.00
QUALITY_BETA: Dict[str, Dict[str, float]] = {
  "fetch_reach": {"medium": 1.686, "low": -2.496},
  "fetch_push": {"medium": 0.961, "low": -3.573},
  "sawyer_window_open": {"medium": -0.831, "low": -30.0},
  "sawyer_drawer_close": {"medium": 0.601, "low": -3.895},
}


def checkpoint_mixture(task: str, quality: str) -> Tuple[Tuple[float, float], ...]:
  """((competence, weight), ...) of a dataset quality; 'expert' is the clean controller alone."""
  if quality not in QUALITIES:
    raise ValueError(f"Unknown quality {quality!r}; expected one of {', '.join(QUALITIES)}.")
  if quality == "expert":
    return ((1.0, 1.0),)
  if task not in QUALITY_BETA:
    raise ValueError(f"No checkpoint mixture for task {task!r}; known tasks: {sorted(QUALITY_BETA)}.")
  weights = np.exp(QUALITY_BETA[task][quality] * np.asarray(CHECKPOINTS))
  weights /= weights.sum()
  return tuple((c, float(w)) for c, w in zip(CHECKPOINTS, weights))


def stratified_assignment(weights: Sequence[float], num_episodes: int, rng: np.random.Generator) -> np.ndarray:
  """Component index of each episode: exactly round(w * n) per component (largest remainder), shuffled."""
  weights = np.asarray(weights, dtype=np.float64)
  exact = weights / weights.sum() * num_episodes
  counts = np.floor(exact).astype(int)
  remainder = num_episodes - counts.sum()
  counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
  return rng.permutation(np.repeat(np.arange(len(weights)), counts))


_GAIN = 10.0  # Fetch: an action of 1 moves the gripper target by 5 cm.
_SAWYER_GAIN = 25.0  # Meta-World: an action of 1 moves the hand target by 1 cm.


def _towards(current: np.ndarray, target: np.ndarray, gain: float) -> np.ndarray:
  return np.clip(gain * (np.asarray(target) - np.asarray(current)), -1.0, 1.0)


def _fetch_reach(state: Dict[str, np.ndarray]) -> np.ndarray:
  return np.r_[_towards(state["gripper_pos"], state["goal_pos"], _GAIN), 0.0]


def _push(
  hand: np.ndarray,
  obj: np.ndarray,
  goal: np.ndarray,
  direction: np.ndarray,
  contact_offset: np.ndarray,
  standoff: float,
  behind_max: float,
  clearance: float,
  overshoot: float,
  gain: float,
) -> np.ndarray:
  """Generic 3-phase pusher: approach high, descend behind the object, push.

  The hand pushes the point ``obj + contact_offset`` (``contact_offset`` has no
  component along ``direction``) from ``standoff`` behind it, along the unit xy
  vector ``direction``, until the object is ``overshoot`` past the goal along
  ``direction`` (the proportional control slows down before that). The hand
  counts as behind the object while its offset along ``direction`` from the
  contact point is below ``behind_max`` (pushing keeps it there).
  """
  ref = obj + contact_offset
  perp = np.array([-direction[1], direction[0]])
  rel = hand - ref
  along, lateral, dz = rel[:2] @ direction, rel[:2] @ perp, rel[2]
  pre = np.r_[ref[:2] - standoff * direction, ref[2]]
  behind = along < behind_max and abs(lateral) < 0.025
  if behind and dz < 0.04:
    # Push: aim at where the hand is when the object sits just past the goal,
    # staying on the push line at contact height.
    remaining = (goal[:2] - obj[:2]) @ direction
    target = np.r_[ref[:2] + direction * (remaining - standoff + overshoot), ref[2]]
  elif behind:
    target = pre  # Descend behind the object.
  else:
    target = np.r_[pre[:2], ref[2] + clearance]  # Approach from above.
    if dz < 0.5 * clearance and np.linalg.norm(rel[:2]) < 0.1:
      target[:2] = hand[:2]  # Too close to the object: rise first.
  return _towards(hand, target, gain)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


# The FetchPush controller's geometry (metres, relative to the block's centre; its half-width is 2.5 cm). Chosen by
# a random search for the best noise-averaged success at 1 cm of input noise (scripts/measure_expert_robustness.py).
PUSH = dict(
  contact=0.044,  # The hand's distance behind the block's centre when it pushes.
  standoff=0.092,  # Where the hand descends behind the block.
  clearance=0.082,  # Height above the block's centre when going around it.
  push_z=-0.025,  # Height of the hand's target while pushing (the fingers' tips near the table).
  overshoot=0.017,  # The push aims this far past the goal (the block slows before it).
  lat_width=0.052,  # Lateral scale of the corridor behind the block.
  edge_high=-0.044,  # Up high, the hand counts as behind the block beyond this offset along the push ...
  edge_low=-0.029,  # ... and low (beside the block's back face) beyond this one.
  soft=0.007,  # Width of every soft threshold.
  low_z=0.032,  # The hand counts as low below this height.
  high=0.049,  # ... and as clear of the block above this one.
  near=0.065,  # Closer than this in xy and not clear: rise before moving across.
  hold_lo=0.01,  # Block within this of the goal: the hand holds still; ...
  hold_hi=0.025,  # ... beyond this: full speed (linear between).
)


def _fetch_push(state: Dict[str, np.ndarray]) -> np.ndarray:
  """A continuous pusher: every decision is a soft threshold of width PUSH['soft'], so the action changes
  smoothly with the positions and its average under centimetre noise still pushes (results/push_expert.md).

  In the corridor behind the block (along the block-to-goal line) the hand descends, then pushes along the line;
  elsewhere it goes to a point PUSH['standoff'] behind the block at a safe height, rising first when it is close
  to the block and low. It holds still once the block is at the goal.
  """
  p = PUSH
  grip, obj, goal = state["gripper_pos"], state["object_pos"], state["goal_pos"]
  to_goal = goal[:2] - obj[:2]
  dist = np.linalg.norm(to_goal)
  d = to_goal / max(dist, 1e-6)
  rel = grip - obj
  along, lateral, dz = rel[:2] @ d, rel[:2] @ np.array([-d[1], d[0]]), rel[2]
  low = _sigmoid((p["low_z"] - dz) / p["soft"])
  edge = p["edge_high"] + (p["edge_low"] - p["edge_high"]) * low  # Low, the hand is beside the block already.
  corridor = _sigmoid((edge - along) / p["soft"]) * np.exp(-((lateral / p["lat_width"]) ** 2))
  # In the corridor: on the push line; forward once low, else no closer than the standoff.
  s = low * (dist - p["contact"] + p["overshoot"]) + (1.0 - low) * min(along, -p["standoff"])
  corridor_xy = obj[:2] + s * d
  free = max(_sigmoid((np.linalg.norm(rel[:2]) - p["near"]) / p["soft"]), _sigmoid((dz - p["high"]) / p["soft"]))
  approach_xy = grip[:2] + free * (obj[:2] - p["standoff"] * d - grip[:2])
  target = np.r_[
    corridor * corridor_xy + (1.0 - corridor) * approach_xy,
    obj[2] + p["push_z"] * corridor + p["clearance"] * (1.0 - corridor),
  ]
  hold = np.clip((dist - p["hold_lo"]) / (p["hold_hi"] - p["hold_lo"]), 0.0, 1.0)
  return np.r_[hold * _towards(grip, target, _GAIN), 0.0]


def _sawyer_window_open(state: Dict[str, np.ndarray]) -> np.ndarray:
  # The handle is pushed along +x from its left, 3 cm in front of and 8 cm below
  # the handle site; the goal's x is the target x of the handle.
  hand, handle, goal = state["hand_pos"], state["object_pos"], state["goal_pos"]
  move = _push(
    hand,
    handle,
    goal,
    np.array([1.0, 0.0]),
    contact_offset=np.array([0.0, -0.03, -0.08]),
    standoff=0.03,
    behind_max=0.01,
    clearance=0.1,
    overshoot=0.03,
    gain=_SAWYER_GAIN,
  )
  return np.r_[move, 1.0]


def _sawyer_drawer_close(state: Dict[str, np.ndarray]) -> np.ndarray:
  # The open drawer's handle is pushed along +y from its front (-y side).
  hand, handle, goal = state["hand_pos"], state["object_pos"], state["goal_pos"]
  move = _push(
    hand,
    handle,
    goal,
    np.array([0.0, 1.0]),
    contact_offset=np.array([0.0, 0.0, -0.05]),
    standoff=0.075,
    behind_max=0.0,
    clearance=0.2,
    overshoot=0.03,
    gain=_SAWYER_GAIN,
  )
  return np.r_[move, 1.0]


# Version of each task's clean controller: data made by an older one is not the same dataset (scripts/reproduce.py
# names its datasets by it). fetch_push 2: the continuous pusher (1: the 3-phase one, not learnable by BC).
CONTROLLER_VERSIONS: Dict[str, int] = {"fetch_push": 2}


def controller_version(env_name: str) -> int:
  """Version of the clean controller behind `env_name`'s data (image variants share their state task's)."""
  return max([v for task, v in CONTROLLER_VERSIONS.items() if env_name.startswith(task)], default=1)


def noise_averaged(
  controller: Callable[[Dict[str, np.ndarray]], np.ndarray], sigma: float, samples: int, rng: np.random.Generator
) -> Callable[[Dict[str, np.ndarray]], np.ndarray]:
  """The controller's action averaged over `samples` draws of Gaussian noise (std `sigma` metres) on its position
  inputs (the goal excepted): a learner that reads positions to within centimetres can at best follow this."""

  def averaged(state: Dict[str, np.ndarray]) -> np.ndarray:
    noisy = lambda: {k: v if k == "goal_pos" else v + rng.normal(0.0, sigma, np.shape(v)) for k, v in state.items()}
    return np.mean([controller(noisy()) for _ in range(samples)], axis=0)

  return averaged


CONTROLLERS: Dict[str, Callable[[Dict[str, np.ndarray]], np.ndarray]] = {
  "fetch_reach": _fetch_reach,
  "fetch_push": _fetch_push,
  "sawyer_window_open": _sawyer_window_open,
  "sawyer_drawer_close": _sawyer_drawer_close,
}


def make_checkpoint_policy(
  env: ExampleControlEnv, competence: float, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
  """A fresh episode's policy of the checkpoint with this competence (see the module docstring).

  Args:
    env: the environment the policy acts in; read through ``env.privileged_state()`` at every call.
    competence: in [0, 1]; 1 is the clean controller with no noise, wrong target or late start.
    rng: source of all the policy's randomness (the per-episode draws happen here).

  Returns:
    A callable returning the next float32 action of shape (4,) in [-1, 1].
  """
  if not 0.0 <= competence <= 1.0:
    raise ValueError(f"competence must be in [0, 1], got {competence}")
  controller = CONTROLLERS[env.base_task]
  spec = env.action_spec()
  flaw = 1.0 - competence
  angle = rng.uniform(-0.5, 0.5)
  rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
  offset = flaw * rng.uniform(0.5, 1.5) * rotation @ WRONG_TARGET[env.base_task]
  late_steps = int(rng.integers(0, int(flaw * LATE_START_FRACTION * env.horizon) + 1))
  noise_std = 0.0 if competence == 1.0 else NOISE_MIN + flaw * (NOISE_MAX - NOISE_MIN)
  innovation = noise_std * np.sqrt(1.0 - NOISE_CORRELATION**2)
  noise = rng.normal(0.0, noise_std, spec.shape)
  t = 0

  def policy() -> np.ndarray:
    nonlocal noise, t
    noise = NOISE_CORRELATION * noise + innovation * rng.standard_normal(spec.shape)
    if t < late_steps:
      action = noise
    else:
      state = env.privileged_state()
      state["goal_pos"] = state["goal_pos"] + offset
      action = controller(state) + noise
    t += 1
    return np.clip(action, spec.minimum, spec.maximum).astype(np.float32)

  return policy
