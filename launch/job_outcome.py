"""Where a SLURM job of a run (launch/slurm_job.py) records how the run ended, for launch/slurm.py --wait to read.

`<workdir>/slurm/job_<id>/outcome.json` holds the exit code and message of the job's latest attempt (a requeued
job writes it again when its next attempt ends).
"""

import json
import os
from typing import Any, Dict, Optional


def job_dir(workdir: str, job_id: str) -> str:
  return os.path.join(workdir, "slurm", f"job_{job_id}")


def outcome_path(workdir: str, job_id: str) -> str:
  return os.path.join(job_dir(workdir, job_id), "outcome.json")


def write_outcome(workdir: str, job_id: str, attempt: int, exit_code: int, message: str) -> None:
  path = outcome_path(workdir, job_id)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w") as f:
    json.dump({"exit_code": exit_code, "message": message, "attempt": attempt}, f)
  os.replace(path + ".tmp", path)


def read_outcome(workdir: str, job_id: str) -> Optional[Dict[str, Any]]:
  """{'exit_code', 'message', 'attempt'} of the job's latest finished attempt, or None."""
  try:
    with open(outcome_path(workdir, job_id)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None
