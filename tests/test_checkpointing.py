"""The Checkpointer: Orbax checkpoints that load without running code, newest three kept, atomic writes, a
SHA-256 of every file, damaged ones set aside for the one before, non-finite states never written, pickles refused."""

import json
import os
import pickle
import subprocess
import sys
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.common import learner as learner_lib
from launch import checkpointing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def state(value):
  return {"w": np.full((2, 3), value, np.float32), "count": np.int32(value)}


def payload_files(path):
  """The checkpoint's Orbax files (the digest file aside), largest first."""
  files = [os.path.join(d, n) for d, _, names in os.walk(os.path.join(path, "state")) for n in names]
  return sorted(files, key=os.path.getsize, reverse=True)


def test_keeps_the_newest_three_and_finds_the_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
  assert ckpt.latest() is None and ckpt.latest_step() == 0
  for step in (100, 200, 300, 400, 1000):
    ckpt.save(step, state(step), {"learner_steps": step})
  assert sorted(os.listdir(tmp_path)) == ["ckpt_0000000300", "ckpt_0000000400", "ckpt_0000001000"]
  latest = ckpt.latest()
  assert latest["step"] == 1000 == ckpt.latest_step() and latest["counts"] == {"learner_steps": 1000}
  np.testing.assert_array_equal(latest["learner"]["w"], np.full((2, 3), 1000, np.float32))
  assert int(latest["learner"]["count"]) == 1000 and latest["learner"]["count"].dtype == np.int32
  assert int(ckpt.load(300)["learner"]["count"]) == 300
  with pytest.raises(FileNotFoundError, match="holds steps \\[300, 400, 1000\\]"):
    ckpt.load(100)


def test_a_training_state_comes_back_in_its_own_structure_and_dtypes(tmp_path):
  class Opt(NamedTuple):
    count: jnp.ndarray
    mu: dict

  class TrainingState(NamedTuple):
    params: dict
    opt_state: tuple
    key: jnp.ndarray

  params = {"linear": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}}
  saved = TrainingState(params, (Opt(jnp.int32(7), params), None), jnp.array([1, 2], jnp.uint32))
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(5, saved, {"learner_steps": 5})
  stored = ckpt.latest()["learner"]  # NamedTuples come back as dicts, tuples as lists: data only.
  assert isinstance(stored, dict) and learner_lib.state_variables(stored, ["policy"], "params")[0]["linear"]
  template = TrainingState(
    {"linear": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}},
    (Opt(jnp.int32(0), {"linear": {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}}), None),
    jnp.zeros(2, jnp.uint32),
  )
  restored = learner_lib.as_state_of(template, stored)
  assert type(restored) is TrainingState and type(restored.opt_state[0]) is Opt
  assert restored.opt_state[0].count.dtype == jnp.int32 and restored.key.dtype == jnp.uint32
  for a, b in zip(jax.tree_util.tree_leaves(restored), jax.tree_util.tree_leaves(saved)):
    np.testing.assert_array_equal(a, b)


def test_a_half_written_checkpoint_is_never_taken_for_the_latest(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {"learner_steps": 100})
  # A crash midway through writing step 200 leaves only its temporary folder behind.
  (tmp_path / ".ckpt_0000000200.tmp-1234" / "state").mkdir(parents=True)
  assert ckpt.latest()["step"] == 100 and ckpt.latest_step() == 100
  ckpt.save(300, state(3), {})
  assert sorted(os.listdir(tmp_path)) == ["ckpt_0000000100", "ckpt_0000000300"]  # The leftover is cleared.


def test_save_renames_a_whole_checkpoint_into_place(tmp_path, monkeypatch):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {"learner_steps": 100})
  calls = []
  real_rename = os.rename
  monkeypatch.setattr(os, "rename", lambda src, dst: (calls.append((src, dst)), real_rename(src, dst)))
  path = ckpt.save(100, state(2), {"learner_steps": 100})
  # The old one is moved aside, the new one (complete, with its digests) moved in, then the old one removed.
  ours = [(os.path.basename(src), os.path.basename(dst)) for src, dst in calls if os.path.dirname(src) == str(tmp_path)]
  assert [dst for _, dst in ours] == [ours[0][1], "ckpt_0000000100"] and ours[0][0] == "ckpt_0000000100"
  assert ours[1][0].startswith(".ckpt_0000000100.tmp") and ours[0][1].startswith(".ckpt_0000000100.tmp")
  assert sorted(os.listdir(tmp_path)) == ["ckpt_0000000100"]
  assert int(ckpt.latest()["learner"]["count"]) == 2


def test_for_run_uses_the_workdir_checkpoints_folder_and_writes_nothing_until_it_saves(tmp_path):
  checkpointer = checkpointing.for_run(str(tmp_path / "run"))
  assert checkpointer.latest() is None and not (tmp_path / "run").exists()
  checkpointer.save(5, state(0), {})
  assert os.listdir(tmp_path / "run" / "checkpoints") == ["ckpt_0000000005"]
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints" / "ckpt_0000000005")) == ["sha256.json", "state"]


@pytest.mark.parametrize("keep", [1, 2])
def test_keep_is_respected(tmp_path, keep):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=keep)
  for step in range(1, 6):
    ckpt.save(step, state(step), {})
  assert len(os.listdir(tmp_path)) == keep and ckpt.latest_step() == 5


def truncate(path):
  victim = payload_files(path)[0]
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)


def flip_a_bit(path):
  victim = payload_files(path)[0]
  data = bytearray(open(victim, "rb").read())
  data[len(data) // 2] ^= 0x10
  open(victim, "wb").write(bytes(data))


def flip_a_digest_bit(path):
  digests = os.path.join(path, "sha256.json")
  text = open(digests).read()
  i = text.index('"', text.index('"state/checkpoint"') + len('"state/checkpoint"') + 1) + 5
  open(digests, "w").write(text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :])


def remove_the_digests(path):
  os.remove(os.path.join(path, "sha256.json"))


@pytest.mark.parametrize("damage", [truncate, flip_a_bit, flip_a_digest_bit, remove_the_digests])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_one_before_taken(tmp_path, capsys, damage):
  ckpt = checkpointing.Checkpointer(str(tmp_path), keep=3)
  for step in (100, 200, 300):
    ckpt.save(step, state(step), {"learner_steps": step})
  damage(ckpt.path(300))
  assert ckpt.latest_step() == 200  # Checked, not taken from the name; nothing moved yet.
  assert "ckpt_0000000300" in os.listdir(tmp_path)
  latest = ckpt.latest()
  assert latest["step"] == 200 and int(latest["learner"]["count"]) == 200
  warning = capsys.readouterr().err
  assert "warning" in warning and "ckpt_0000000300 is damaged" in warning and "ckpt_0000000300.damaged" in warning
  # Set aside, never deleted: not even by the rotation of the checkpoints written after it.
  for step in (300, 400, 500, 600):
    ckpt.save(step, state(step), {})
  assert sorted(os.listdir(tmp_path)) == [
    "ckpt_0000000300.damaged",
    "ckpt_0000000400",
    "ckpt_0000000500",
    "ckpt_0000000600",
  ]


def test_every_damaged_checkpoint_leaves_none_to_resume_from(tmp_path, capsys):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {})
  truncate(ckpt.path(100))
  assert ckpt.latest() is None and ckpt.latest_step() == 0
  assert "ckpt_0000000100 is damaged" in capsys.readouterr().err


class RunsCode:
  """Unpickling this creates `marker`: what a malicious pickle could do instead."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_executes_nothing_when_loaded(tmp_path, capsys):
  ckpt = checkpointing.Checkpointer(str(tmp_path / "checkpoints"))
  ckpt.save(100, state(1), {"learner_steps": 100})
  marker = tmp_path / "code_ran"
  # A checkpoint whose every file is a pickle that would run code, with digests that match: the integrity check
  # passes, and only the reader stands between the file and the code.
  crafted = tmp_path / "checkpoints" / "ckpt_0000000200"
  bomb = pickle.dumps({"step": 200, "counts": {}, "learner": RunsCode(marker)})
  digests = {}
  for name in ("checkpoint", "_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt"):
    (crafted / "state").mkdir(parents=True, exist_ok=True)
    (crafted / "state" / name).write_bytes(bomb)
    digests[f"state/{name}"] = checkpointing._sha256(str(crafted / "state" / name))
  (crafted / "sha256.json").write_text(json.dumps({"format": checkpointing.FORMAT, "step": 200, "sha256": digests}))
  assert ckpt.latest_step() == 200  # Its digests match...
  latest = ckpt.latest()
  assert not marker.exists()  # ... yet reading it ran nothing.
  assert latest["step"] == 100 and "ckpt_0000000200 is damaged" in capsys.readouterr().err
  assert (tmp_path / "checkpoints" / "ckpt_0000000200.damaged").exists()


def test_pickled_checkpoints_of_earlier_versions_are_refused_unread(tmp_path):
  marker = tmp_path / "code_ran"
  directory = tmp_path / "run" / "checkpoints"
  directory.mkdir(parents=True)
  (directory / "ckpt_0000000100.pkl").write_bytes(pickle.dumps({"step": 100, "learner": RunsCode(marker)}))
  ckpt = checkpointing.for_run(str(tmp_path / "run"))
  for read in (ckpt.latest, ckpt.latest_step, lambda: ckpt.load(100), lambda: ckpt.save(200, state(2), {})):
    with pytest.raises(
      checkpointing.LegacyCheckpointError, match=r"pickle format .*\(ckpt_0000000100.pkl\).*convert_pickle_checkpoints"
    ):
      read()
  assert not marker.exists() and os.listdir(directory) == ["ckpt_0000000100.pkl"]


def test_a_non_finite_state_is_never_written(tmp_path):
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  ckpt.save(100, state(1), {})
  bad = state(2)
  bad["w"][1, 2] = np.inf
  with pytest.raises(ValueError, match="Refusing to write the checkpoint of step 200: w is inf"):
    ckpt.save(200, bad, {})
  assert os.listdir(tmp_path) == ["ckpt_0000000100"]


def test_the_converter_turns_trusted_pickles_into_checkpoints_and_keeps_them(tmp_path):
  directory = tmp_path / "run" / "checkpoints"
  directory.mkdir(parents=True)
  for step in (100, 200):
    with open(directory / f"ckpt_{step:010d}.pkl", "wb") as f:
      pickle.dump({"step": step, "learner": state(step), "counts": {"learner_steps": float(step)}}, f)
  diverged = state(300)
  diverged["w"][0, 0] = np.nan
  with open(directory / "ckpt_0000000300.pkl", "wb") as f:
    pickle.dump({"step": 300, "learner": diverged, "counts": {"learner_steps": 300.0}}, f)
  proc = subprocess.run(
    [sys.executable, os.path.join(ROOT, "scripts", "convert_pickle_checkpoints.py"), f"--workdir={tmp_path / 'run'}"],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "ckpt_0000000300.pkl: not converted" in proc.stdout
  assert sorted(os.listdir(directory)) == ["ckpt_0000000100", "ckpt_0000000200"]
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints_pickle")) == [
    "ckpt_0000000100.pkl",
    "ckpt_0000000200.pkl",
    "ckpt_0000000300.pkl",
  ]
  latest = checkpointing.for_run(str(tmp_path / "run")).latest()
  assert latest["step"] == 200 and latest["counts"] == {"learner_steps": 200.0}
  np.testing.assert_array_equal(latest["learner"]["w"], state(200)["w"])
