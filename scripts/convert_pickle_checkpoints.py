"""Converts a run's pickled checkpoints (laeo before Orbax checkpoints) into today's format, so it can resume.

  .venv/bin/python scripts/convert_pickle_checkpoints.py --workdir=runs/laeo_fetch_reach_seed0

Only for checkpoints you made yourself and trust: reading a pickle runs whatever code it holds, which is why laeo
itself no longer reads them. Each `ckpt_<step>.pkl` whose state is finite becomes `ckpt_<step>/`; the pickles are
moved to `<workdir>/checkpoints_pickle/` (nothing is deleted). A non-finite one (a diverged run's) is not
converted, so the run resumes from the newest finite one.
"""

import argparse
import glob
import os
import pickle
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from agents.common import learner as learner_lib  # noqa: E402
from launch import checkpointing  # noqa: E402


def convert(workdir: str) -> None:
  directory = os.path.join(workdir, "checkpoints")
  pickles = sorted(glob.glob(os.path.join(directory, "ckpt_*.pkl")))
  if not pickles:
    raise SystemExit(f"error: no pickled checkpoint (ckpt_*.pkl) in {directory}.")
  # Every pickle is read before anything moves: a failure leaves the directory as it was.
  loaded = []
  for path in pickles:
    with open(path, "rb") as f:
      payload = pickle.load(f)  # The user vouched for these files (see the module docstring).
    step = int(re.search(r"ckpt_(\d+)\.pkl$", path).group(1))
    loaded.append((step, path, payload))
  backup = os.path.join(workdir, "checkpoints_pickle")
  os.makedirs(backup, exist_ok=True)
  for _, path, _ in loaded:
    shutil.move(path, os.path.join(backup, os.path.basename(path)))
  checkpointer = checkpointing.for_run(workdir)
  for step, path, payload in loaded:
    bad = learner_lib.non_finite(payload["learner"])
    if bad:
      print(f"{os.path.basename(path)}: not converted, its state is not finite ({bad})")
      continue
    print(f"{os.path.basename(path)} -> {checkpointer.save(step, payload['learner'], payload['counts'])}")
  print(f"The pickles are in {backup}.")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="The run's workdir (holds checkpoints/).")
  convert(parser.parse_args().workdir)


if __name__ == "__main__":
  main()
