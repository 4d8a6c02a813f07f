"""Environments for offline example-based control.

``make(name, seed)`` builds one of ``ENV_NAMES``; every environment is an
:class:`environments.base.ExampleControlEnv` (a reward-free, fixed-horizon
``dm_env.Environment``; an episode succeeds iff ``env.success()`` holds at its
final step). ``make("package.module:factory", seed)`` builds a user's own
simulator instead (``environments.user``). Simulator modules are imported
lazily, so importing this package is cheap.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

from environments.base import ExampleControlEnv  # noqa: E402

ENV_NAMES = (
  "fetch_reach",
  "fetch_push",
  "fetch_reach_image",
  "fetch_push_image",
  "fetch_push_image_occluded",
  "sawyer_window_open",
  "sawyer_drawer_close",
)


# Version of what an environment's observations show: data recorded with an older version is another dataset
# (scripts/reproduce.py names datasets by it). fetch_reach_image 2: the "reach" camera (1: the push task's "front").
OBSERVATION_VERSIONS = {"fetch_reach_image": 2}


class UnknownEnvironmentError(ValueError):
  """Raised by :func:`make` for a name that is not in ``ENV_NAMES``."""


def base_task(name: str) -> str:
  """State task behind a name: ``'fetch_push_image_occluded'`` -> ``'fetch_push'``."""
  _check(name)
  return name.split("_image")[0]


def _check(name: str) -> None:
  if name not in ENV_NAMES:
    raise UnknownEnvironmentError(
      f"Unknown environment {name!r}; valid names are: {', '.join(ENV_NAMES)}, or your own simulator as "
      "package.module:factory"
    )


def check_name(name: str) -> None:
  """Refuses a name that is neither in ``ENV_NAMES`` nor an importable ``package.module:factory``."""
  if ":" in name:
    from environments import user  # pylint: disable=import-outside-toplevel

    user.check_target(name)
  else:
    _check(name)


def make(name: str, seed: int = 0):
  """Builds environment ``name`` (or a user's ``package.module:factory``); the same ``seed`` gives reproducible
  rollouts."""
  if ":" in name:
    from environments import user  # pylint: disable=import-outside-toplevel

    return user.make(name, seed)
  _check(name)
  if name.startswith("fetch_"):
    from environments import fetch  # pylint: disable=import-outside-toplevel

    task = "reach" if name.startswith("fetch_reach") else "push"
    camera = None
    if name.endswith("_image"):
      camera = "reach" if task == "reach" else "front"
    elif name.endswith("_image_occluded"):
      camera = "occluded"
    return fetch.FetchEnv(task, camera=camera, seed=seed, name=name)
  from environments import metaworld_envs  # pylint: disable=import-outside-toplevel

  return metaworld_envs.SawyerEnv(name, seed=seed)


__all__ = ["ENV_NAMES", "ExampleControlEnv", "UnknownEnvironmentError", "base_task", "check_name", "make"]
