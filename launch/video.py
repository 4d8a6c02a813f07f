"""Evaluation videos: frames of one episode written as an animated GIF (no video codec needed)."""

import os
from typing import Sequence

import numpy as np
from PIL import Image


def write_gif(frames: Sequence[np.ndarray], path: str, frame_ms: int = 80) -> str:
  """Writes uint8 RGB frames [H, W, 3] to `path` (its folder is created); returns the path.

  GIF stores durations in centiseconds: `frame_ms` is rounded down to a multiple of 10.
  """
  if not frames:
    raise ValueError("No frames to write.")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
  tmp = path + ".tmp.gif"
  images[0].save(tmp, save_all=True, append_images=images[1:], duration=frame_ms // 10 * 10, loop=0)
  os.replace(tmp, path)  # A viewer never opens a half-written file.
  return path


def video_path(workdir: str, label: str, learner_steps: int) -> str:
  return os.path.join(workdir, "videos", f"{label}_step{learner_steps:08d}.gif")
