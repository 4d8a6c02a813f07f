"""The Checkpointer: newest three kept, atomic writes, the latest found by step (not by name order or time)."""

import os
import pickle

import numpy as np
import pytest

from launch import checkpointing


def state(value):
  return {"w": np.full((2, 3), value, np.float32), "count": np.int32(value)}


def test_keeps_the_newest_three_and_finds_the_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
  assert ckpt.latest() is None and ckpt.latest_step() == 0
  for step in (100, 200, 300, 400, 1000):
    ckpt.save(step, state(step), {"learner_steps": step})
  assert sorted(os.listdir(tmp_path)) == ["ckpt_0000000300.pkl", "ckpt_0000000400.pkl", "ckpt_0000001000.pkl"]
  latest = ckpt.latest()
  assert latest["step"] == 1000 == ckpt.latest_step() and latest["counts"] == {"learner_steps": 1000}
  np.testing.assert_array_equal(latest["learner"]["w"], np.full((2, 3), 1000, np.float32))
  assert int(latest["learner"]["count"]) == 1000


def test_a_half_written_checkpoint_is_never_taken_for_the_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {"learner_steps": 100})
  # A crash midway through writing step 200 leaves only its temporary file behind.
  (tmp_path / "ckpt_0000000200.pkl.tmp").write_bytes(pickle.dumps({"step": 200})[:5])
  assert ckpt.latest()["step"] == 100 and ckpt.latest_step() == 100


def test_save_replaces_the_file_in_one_step(tmp_path, monkeypatch):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {"learner_steps": 100})
  calls = []
  real_replace = os.replace
  monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append((src, dst)), real_replace(src, dst)))
  path = ckpt.save(100, state(2), {"learner_steps": 100})
  assert calls == [(path + ".tmp", path)]  # Written aside, then renamed over the old file.
  assert int(ckpt.latest()["learner"]["count"]) == 2


def test_for_run_uses_the_workdir_checkpoints_folder(tmp_path):
  checkpointing.for_run(str(tmp_path)).save(5, state(0), {})
  assert os.listdir(tmp_path / "checkpoints") == ["ckpt_0000000005.pkl"]


@pytest.mark.parametrize("keep", [1, 2])
def test_keep_is_respected(tmp_path, keep):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=keep)
  for step in range(1, 6):
    ckpt.save(step, state(step), {})
  assert len(os.listdir(tmp_path)) == keep and ckpt.latest_step() == 5
