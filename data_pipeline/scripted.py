"""Scripted data-collection policies with a tunable data quality.

``make_scripted_policy(env, noise, rng)`` returns a zero-argument callable that
gives the next action for the current state of ``env`` (it reads
``env.privileged_state()``, never the agent's observation, so image variants use
exactly the same policy as their state task).

Noise model (epsilon-random): at every step, with probability ``noise`` the
clean controller's action is replaced by an action drawn uniformly from
``[-1, 1]^4``; otherwise the clean action is used unchanged. ``noise=0`` is the
clean controller, ``noise=1`` a uniformly random policy. All randomness comes
from ``rng``.

Clean controllers (proportional control of the end effector towards a
phase-dependent target point, saturated to the action bounds):

* fetch_reach: straight to the goal.
* fetch_push: 3 phases: (1) move to a point 6 cm behind the block (on the
  block-to-goal line) at a safe height, (2) descend to block height, (3) push
  towards the goal.
* sawyer_window_open: above a point left of the handle, descend, push +x.
* sawyer_drawer_close: above a point in front of the handle, descend, push +y.

``QUALITY_NOISE[base_task]`` gives the epsilon of the 'medium' (target 45-50 %
successful episodes) and 'low' (target 8-12 %) datasets. An episode succeeds iff
``env.success()`` holds at its final step. The numbers were measured with
``python -m data_pipeline.tune_noise``.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

from environments.base import ExampleControlEnv

# Measured with `python -m data_pipeline.tune_noise --task T --noise EPS --episodes N`
# (final-step success of N episodes, env seed 0, policy rng seed 0; +- is the
# binomial standard error):
#   fetch_reach          medium 0.72 -> 45.8% (183/400) +-2.5   low 0.90 -> 10.7% (43/400) +-1.5
#   fetch_push           medium 0.52 -> 49.5% (198/400) +-2.5   low 0.71 -> 10.5% (42/400) +-1.5
#   sawyer_window_open   medium 0.65 -> 45.0% (180/400) +-2.5   low 0.72 ->  9.0% (36/400) +-1.4
#   sawyer_drawer_close  medium 0.67 -> 45.5% (182/400) +-2.5   low 0.81 -> 10.2% (41/400) +-1.5
# Neighbouring settings (for the slope): reach 0.70 -> 53.5%, 0.74 -> 44.0%, 0.87 -> 15.5% (400),
# reach 0.72 with env/policy seed 1 -> 47.0% (400); push 0.52 with seed 1 -> 45.8%, 0.53 -> 46.3% (400);
# push 0.56 -> 36% (400), 0.50 -> 62% (200); window 0.71 -> 14.2%, 0.73 -> 7.7% (400);
# drawer 0.65 -> 57.5% (200), 0.68 -> 42% (400). All clean controllers (noise 0) succeed.
QUALITY_NOISE: Dict[str, Dict[str, float]] = {
    "fetch_reach": {"medium": 0.72, "low": 0.90},
    "fetch_push": {"medium": 0.52, "low": 0.71},
    "sawyer_window_open": {"medium": 0.65, "low": 0.72},
    "sawyer_drawer_close": {"medium": 0.67, "low": 0.81},
}

_GAIN = 10.0  # Fetch: an action of 1 moves the gripper target by 5 cm.
_SAWYER_GAIN = 25.0  # Meta-World: an action of 1 moves the hand target by 1 cm.


def _towards(current: np.ndarray, target: np.ndarray, gain: float) -> np.ndarray:
  return np.clip(gain * (np.asarray(target) - np.asarray(current)), -1.0, 1.0)


def _fetch_reach(state: Dict[str, np.ndarray]) -> np.ndarray:
  return np.r_[_towards(state["gripper_pos"], state["goal_pos"], _GAIN), 0.0]


def _push(hand: np.ndarray, obj: np.ndarray, goal: np.ndarray, direction: np.ndarray,
          contact_offset: np.ndarray, standoff: float, behind_max: float,
          clearance: float, overshoot: float, gain: float) -> np.ndarray:
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


def _fetch_push(state: Dict[str, np.ndarray]) -> np.ndarray:
  grip, obj, goal = state["gripper_pos"], state["object_pos"], state["goal_pos"]
  direction = goal[:2] - obj[:2]
  direction = direction / (np.linalg.norm(direction) + 1e-8)
  move = _push(grip, obj, goal, direction, contact_offset=np.zeros(3), standoff=0.06,
               behind_max=-0.02,               clearance=0.1, overshoot=0.02, gain=_GAIN)
  return np.r_[move, 0.0]


def _sawyer_window_open(state: Dict[str, np.ndarray]) -> np.ndarray:
  # The handle is pushed along +x from its left, 3 cm in front of and 8 cm below
  # the handle site; the goal's x is the target x of the handle.
  hand, handle, goal = state["hand_pos"], state["object_pos"], state["goal_pos"]
  move = _push(hand, handle, goal, np.array([1.0, 0.0]),
               contact_offset=np.array([0.0, -0.03, -0.08]), standoff=0.03, behind_max=0.01,
               clearance=0.1, overshoot=0.03, gain=_SAWYER_GAIN)
  return np.r_[move, 1.0]


def _sawyer_drawer_close(state: Dict[str, np.ndarray]) -> np.ndarray:
  # The open drawer's handle is pushed along +y from its front (-y side).
  hand, handle, goal = state["hand_pos"], state["object_pos"], state["goal_pos"]
  move = _push(hand, handle, goal, np.array([0.0, 1.0]),
               contact_offset=np.array([0.0, 0.0, -0.05]), standoff=0.075, behind_max=0.0,
               clearance=0.2, overshoot=0.03, gain=_SAWYER_GAIN)
  return np.r_[move, 1.0]


CONTROLLERS: Dict[str, Callable[[Dict[str, np.ndarray]], np.ndarray]] = {
    "fetch_reach": _fetch_reach,
    "fetch_push": _fetch_push,
    "sawyer_window_open": _sawyer_window_open,
    "sawyer_drawer_close": _sawyer_drawer_close,
}


def make_scripted_policy(env: ExampleControlEnv, noise: float,
                         rng: np.random.Generator) -> Callable[[], np.ndarray]:
  """Epsilon-random scripted policy for ``env`` (see the module docstring).

  Args:
    env: the environment the policy acts in; read through
      ``env.privileged_state()`` at every call.
    noise: probability in [0, 1] of replacing an action by a uniform random one.
    rng: source of all the policy's randomness.

  Returns:
    A callable returning the next float32 action of shape (4,) in [-1, 1].
  """
  if not 0.0 <= noise <= 1.0:
    raise ValueError(f"noise must be in [0, 1], got {noise}")
  controller = CONTROLLERS[env.base_task]
  spec = env.action_spec()

  def policy() -> np.ndarray:
    if noise > 0.0 and rng.random() < noise:
      return rng.uniform(spec.minimum, spec.maximum, spec.shape).astype(np.float32)
    action = controller(env.privileged_state())
    return np.clip(action, spec.minimum, spec.maximum).astype(np.float32)

  return policy
