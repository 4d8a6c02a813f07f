"""Watching a run: evaluation videos, the curves PNG, and a terminal without library noise but with an ETA."""

import csv
import os

import jax
import numpy as np
import pytest
from PIL import Image

import environments
from data_pipeline import scripted
from launch import plot
from launch import rollout
from launch import terminal
from launch import video


def gif_frames(path):
  """The decoded frames of a GIF and their total duration in ms (identical consecutive frames are merged)."""
  image = Image.open(path)
  frames, duration = [], 0
  for i in range(image.n_frames):
    image.seek(i)
    frames.append(np.asarray(image.convert("RGB")))
    duration += image.info["duration"]
  return frames, duration


@pytest.mark.parametrize("name", ["fetch_push", "fetch_reach_image", "sawyer_window_open"])
def test_an_episode_video_decodes_to_frames_that_show_the_task(name, tmp_path):
  env = environments.make(name, seed=0)
  try:
    zeros = np.zeros(env.action_spec().shape, np.float32)
    frames = []
    rollout.run_episode(env, lambda p, k, o, evaluation: zeros, None, jax.random.PRNGKey(0), frames)
  finally:
    env.close()
  assert len(frames) == env.horizon + 1  # The first state and one per action.
  # Image tasks show the agent's own 64x64 observation, enlarged, beside the task camera.
  width = 2 * environments.base.VIDEO_SIZE if name.endswith("_image") else environments.base.VIDEO_SIZE
  path = video.write_gif(frames, str(tmp_path / "videos" / "episode.gif"))
  decoded, duration = gif_frames(path)
  assert duration == len(frames) * 80  # Every frame is in it, 80 ms each by default.
  assert decoded[0].shape == (environments.base.VIDEO_SIZE, width, 3)
  assert decoded[0].std() > 5.0  # A picture, not a blank frame.
  assert not os.path.exists(path + ".tmp.gif")


def _redness(frame):
  r, g, b = (frame[..., i].astype(int) for i in range(3))
  return int(np.sum((r - g > 80) & (r - b > 80)))


def _greenness(frame):
  r, g, b = (frame[..., i].astype(int) for i in range(3))
  return int(np.sum((g - r > 60) & (g - b > 60)))


@pytest.mark.parametrize("name", ["fetch_reach", "fetch_push_image", "sawyer_window_open", "sawyer_drawer_close"])
def test_video_frames_draw_the_goal_red_then_green_once_solved(name):
  """A person watching can tell success from failure: videos draw the goal red, green while the task is solved
  (the same state drawn both ways); the agent's own observations never show the marker."""
  env = environments.make(name, seed=0)
  policy = scripted.make_checkpoint_policy(env, 1.0, np.random.default_rng(0))
  ts = env.reset()
  while not env.success():
    ts = env.step(policy())
  solved = env.render_frame()
  env.success = lambda: False  # The same state, drawn as unsolved.
  unsolved = env.render_frame()
  env.close()
  assert _redness(unsolved) > _redness(solved) + 10 and _greenness(solved) > _greenness(unsolved) + 10
  if name.endswith("_image"):
    assert _redness(ts.observation) == 0


def test_terminal_drops_library_noise_keeps_errors_and_adds_the_last_evaluation():
  view = terminal.Terminal()
  noise = [
    "I1125 18:48:57.252910 139926016670592 node.py:61] Reverb client connecting to: localhost:39503",
    "WARNING:absl:`TensorInfo.dtype` is deprecated. Please change your code",
    "[reverb/cc/platform/default/server.cc:71] Started replay server on port 39503",
    "Waiting for workers to stop for 10s.",
  ]
  assert [view.render("learner/0", line) for line in noise] == [None] * len(noise)
  assert view.render("learner/0", "E1125 18:48:57.2 1 node.py:61] Something broke") is not None
  assert (
    view.render("evaluator/0", "Traceback (most recent call last):")
    == "[evaluator/0] Traceback (most recent call last):"
  )
  evaluation = (
    "[Evaluator 0] Episodes = 10 | Learner Steps = 400 | Success Rate = 0.800 | Success Rate Final Step = 0.600"
  )
  assert view.render("evaluator/0", evaluation) == evaluation
  shown = view.render("learner/0", "[learner] step 500/1000 (50.0 steps/s, ETA 0m10s)")
  assert (
    shown
    == "[learner] step 500/1000 (50.0 steps/s, ETA 0m10s) | last evaluation: success 0.80 (final step 0.60) at step 400"
  )
  assert terminal.Terminal(verbose=True).render("x/0", noise[0]) is not None
  assert terminal.format_duration(3725) == "1h02m" and terminal.format_duration(75) == "1m15s"


def test_plot_draws_success_and_losses_of_several_runs(tmp_path):
  for name, losses in (("a", [3.0, 2.0, 1.0]), ("b", [4.0, 2.5, 0.5])):
    for label, rows in (
      (
        "evaluator_0",
        [{"learner_steps": s, "success_rate": s / 200, "success_rate_final_step": 0.0} for s in (0, 100, 200)],
      ),
      ("learner", [{"learner_steps": 50 * (i + 1), "critic_loss": v} for i, v in enumerate(losses)]),
    ):
      os.makedirs(tmp_path / name / "logs" / label)
      with open(tmp_path / name / "logs" / label / "logs.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
  assert plot.read_column(str(tmp_path / "a" / "logs" / "learner" / "logs.csv"), "critic_loss") == (
    [50, 100, 150],
    [3.0, 2.0, 1.0],
  )
  out = plot.plot_runs([str(tmp_path / "a"), str(tmp_path / "b")])
  assert out == str(tmp_path / "a" / "curves.png")
  image = np.asarray(Image.open(out).convert("RGB"))
  assert image.shape[1] > image.shape[0] > 100 and image.std() > 5.0  # Two panels side by side, drawn on.
  with pytest.raises(FileNotFoundError, match="not the workdir of a run"):
    plot.plot_runs([str(tmp_path / "missing")])


def test_wandb_logger_logs_each_write_under_a_stable_id(tmp_path, monkeypatch):
  import sys
  import types

  from launch import loggers
  from launch import run_config

  calls = []
  run = types.SimpleNamespace(log=lambda data, step: calls.append((data, step)), finish=lambda: calls.append("finish"))
  fake = types.SimpleNamespace(init=lambda **kwargs: calls.append(kwargs) or run)
  monkeypatch.setitem(sys.modules, "wandb", fake)
  config = run_config.RunConfig(
    agent="bc", env="fetch_reach", dataset_dir="d", workdir=str(tmp_path / "myrun"), num_steps=10, wandb_project="p"
  )
  logger = loggers.WandbLogger(config, "evaluator_0", "learner_steps")
  logger.write({"learner_steps": 300, "success_rate": np.float32(0.5)})
  logger.close()
  init = calls[0]
  assert (init["project"], init["group"], init["id"], init["resume"]) == ("p", "myrun", "myrun-evaluator_0", "allow")
  assert calls[1:] == [({"success_rate": 0.5}, 300), "finish"]


def test_wandb_project_without_wandb_installed_is_refused_clearly(monkeypatch):
  import importlib.util

  from launch import run_config

  monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
  config = run_config.RunConfig(
    agent="bc", env="fetch_reach", dataset_dir="d", workdir="w", num_steps=10, wandb_project="p"
  )
  with pytest.raises(ValueError, match="pip install wandb"):
    config.validate()
