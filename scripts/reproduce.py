"""Reproduces a figure of the paper on our own data, through the real launcher (not a test).

  python scripts/reproduce.py --figure=3                 # CPU budget, every task and agent of Fig. 3
  python scripts/reproduce.py --figure=3 --budget=paper  # the paper's budget (1024-wide, 500k steps): a GPU
  python scripts/reproduce.py --figure=3 --tasks fetch_reach --agents laeo bc --seeds 0
  python scripts/reproduce.py --figure=6 --tasks fetch_push_image --success_examples 1 --seeds 1 2
  python scripts/reproduce.py --figure=3 --tasks fetch_reach --agents laeo --launch_flag=episode_reuse=4 \
      --out_dir=results/episode_reuse/R4     # a variant: its own workdirs, rows and table
  python scripts/reproduce.py --figure=6 --out_dir=results/image_budget \
      --merge_from=../sweep/results/image_budget  # the rows a sweep in another worktree has made, into this one

Each run is `launch/local.py` (Reverb + Launchpad + an evaluator) followed by an evaluation of the final checkpoint
on --final_episodes episodes. A run's row is appended to results/paper/fig<N>.csv the moment it finishes, and rows
already there are skipped, so an interrupted sweep continues when rerun; a run killed midway resumes from its last
checkpoint, and its row's wall_s counts the time before the restart too. A run that another figure's table in the
same folder already holds (the same task, agent, seed, dataset, steps, preset and options, e.g. Fig. 6's 200-example
cell and Fig. 3) is not trained again: its row is copied, with that run's workdir and commit. With --extend, a run
of more steps than a finished run of the same cell in the table goes on from that run's last checkpoint (a copy of
its workdir; the shorter run stays as it was) instead of starting afresh: its row names that run ('continued_from')
and counts both parts' wall time. Runs go seed-major (every cell's seed 0 first). The figure
(results/paper/fig<N>.png) is redrawn after every run, and the run's evaluations during training are copied into
results/paper/curves.csv (Fig. 4 and each figure's flattening table are drawn from there, since runs/ is not
committed). --dry_run lists what the same command would do with each run (done, copy, extend, resume or new, and
which datasets it would generate) and touches nothing. Two sweeps started at once (by mistake, or to share the work)
never train one run together: a sweep claims each run while it trains it and the other passes it by, a dataset is
generated once, and rows and figures are written one process at a time, each row once. --jobs=2 trains two runs at a
time: on the 2-core machine here one image run's learner keeps about 1.2-1.5 cores busy, and two image launches side
by side made 1.25-1.27x the updates of one (the updates alone 1.4-1.6x; results/parallel_runs_2026-12-06.md); each
run's wall_s then counts time shared with the other.

Figures: 0 (pipeline sanity: BC on clean-controller data must solve each state task; its image rows say what
the image pipeline can imitate), 3 (six tasks, medium data), 4 (per-seed training curves of LAEO and ORIL on FetchPush, read from
Fig. 3's runs), 5 (low-quality data), 6 (number of success examples; dataset size), 7 (occluded camera).
Datasets are generated on first use under data/paper/ (seed 0, shared by every run that uses them).
"""

import argparse
import concurrent.futures
import contextlib
import csv
import dataclasses
import fcntl
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import environments  # noqa: E402
from data_pipeline import generate  # noqa: E402
from data_pipeline import rlds_writer  # noqa: E402
from data_pipeline import scripted  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import evaluate  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from scripts import paper_plots  # noqa: E402
from scripts import row_code  # noqa: E402

AGENTS = ("laeo", "oril", "purl", "bc")
STATE_TASKS = ("fetch_reach", "fetch_push", "sawyer_window_open", "sawyer_drawer_close")
IMAGE_TASKS = ("fetch_reach_image", "fetch_push_image")
COLUMNS = (
  "figure",
  "task",
  "agent",
  "seed",
  "dataset",
  "quality",
  "dataset_episodes",
  "num_success_examples",
  "num_steps",
  "preset",
  "success_any_step",
  "success_final_step",
  "eval_episodes",
  "wall_s",  # Seconds its launches and final evaluation took, over every sweep that trained it (RunClock).
  "workdir",
  "commit",
  "options",
  "continued_from",  # With --extend: the workdir of the shorter run this one went on from.
)
CONTINUED_FROM = "continued_from.json"  # In a workdir made by continue_run: the run it was copied from.
CLOCK_EVERY_S = 30.0  # How often a training run's wall time so far is saved (RunClock).
CLAIM_PATIENCE_S = 0.5  # How long a sweep waits for a run's claim before leaving the run to the sweep holding it.
# Flags of launch/local.py that a sweep sets itself (so --launch_flag may not).
OWN_LAUNCH_FLAGS = (
  "agent",
  "env",
  "dataset_dir",
  "num_steps",
  "preset",
  "seed",
  "workdir",
  "num_evaluators",
  "eval_every",
  "episodes_per_eval",
  "checkpoint_every",
  "config",
)


@dataclasses.dataclass(frozen=True)
class Budget:
  """Training budget of every run of a sweep (images get their own step count and dataset size)."""

  preset: str
  num_steps: int
  image_num_steps: int
  dataset_episodes: int
  image_dataset_episodes: int
  eval_every: int
  image_seeds: int  # Seeds of image tasks when --seeds is not given (the others use 0, 1, 2).
  image_config: Tuple[str, ...] = ()  # Agent overrides NAME=VALUE of image runs.
  episodes_per_eval: int = 50  # Episodes of every evaluation during training (Fig. 4's points).


BUDGETS = {
  # Fits Fig. 3's four state tasks x 4 agents x 3 seeds in a few hours on 2 cores.
  # Image updates run their conv torsos at ~20-70 GFLOP/s on this CPU: batch 64 keeps a 5000-step image run
  # within minutes (the contrastive critic then has 63 negatives per positive instead of 255).
  "cpu": Budget(
    preset="laptop",
    num_steps=5000,
    image_num_steps=5000,
    dataset_episodes=2000,
    image_dataset_episodes=1000,
    eval_every=1000,
    image_seeds=1,
    image_config=("batch_size=64",),
  ),
  # The paper: 1024-wide networks, batch 1024, 500k gradient steps (a GPU).
  "paper": Budget(
    preset="paper",
    num_steps=500_000,
    image_num_steps=500_000,
    dataset_episodes=2000,
    image_dataset_episodes=2000,
    eval_every=10_000,
    image_seeds=3,
  ),
}


DEFAULT_SUCCESS_EXAMPLES = 200


@dataclasses.dataclass(frozen=True)
class Run:
  figure: int
  task: str
  agent: str
  seed: int
  quality: str = "medium"
  dataset_scale: float = 1.0  # x the budget's dataset size (Fig. 6 right).
  num_success_examples: int = DEFAULT_SUCCESS_EXAMPLES  # Fig. 6 left.


def figure_runs(figure: int, seeds: Sequence[int], image_seeds: Sequence[int]) -> List[Run]:
  """Every run of a figure: state tasks seed-major, then image tasks seed-major."""
  cells = []
  if figure == 0:
    # 500 clean-controller episodes per task (a quarter of the state budget's, half of the image budget's): the
    # image rows ask whether the camera, torso and budget can carry the expert's policy at all.
    cells = [(t, "bc", {"quality": "expert", "dataset_scale": 0.25}) for t in STATE_TASKS]
    cells += [(t, "bc", {"quality": "expert", "dataset_scale": 0.5, "image": True}) for t in IMAGE_TASKS]
    seeds, image_seeds = seeds[:1], image_seeds[:1]
  elif figure in (3, 4):
    cells = [(t, a, {}) for t in STATE_TASKS for a in AGENTS]
    cells += [(t, a, {"image": True}) for t in IMAGE_TASKS for a in AGENTS]
  elif figure == 5:
    cells = [(t, a, {"quality": "low"}) for t in ("fetch_reach", "fetch_push") for a in AGENTS]
    cells += [("fetch_reach_image", a, {"quality": "low", "image": True}) for a in AGENTS]
  elif figure == 6:
    # The paper's Fig. 6 is on FetchPush-image (dataset sizes 0.1x, 1x, 10x of 31,271 trajectories); here on
    # FetchPush-image at 0.1x, 1x, 10x of the budget's image dataset (10x: about 1.2 GiB in Reverb by the
    # launcher's estimate), and on FetchPush (state) as a stand-in at 0.1x, 1x, 10x of its dataset.
    for task in ("fetch_push", "fetch_push_image"):
      image = {"image": True} if task.endswith("_image") else {}
      cells += [(task, a, {"num_success_examples": n, **image}) for n in (1, 10, 100, 200) for a in ("laeo", "oril")]
      cells += [(task, a, {"dataset_scale": x, **image}) for x in (0.1, 10.0) for a in ("laeo", "oril")]
  elif figure == 7:
    cells = [("fetch_push_image_occluded", a, {"image": True}) for a in ("laeo", "oril")]
  else:
    raise ValueError(f"Unknown figure {figure}; valid figures: 0, 3, 4, 5, 6, 7.")
  runs = []
  for image in (False, True):  # Image runs last: on a CPU each takes far longer than a state run.
    for seed in sorted(image_seeds if image else seeds):
      for task, agent, options in cells:
        options = dict(options)
        if options.pop("image", False) == image:
          runs.append(Run(figure=3 if figure == 4 else figure, task=task, agent=agent, seed=seed, **options))
  return runs


def select_runs(runs: Sequence[Run], **only: Optional[Sequence]) -> List[Run]:
  """The runs whose fields are in every given list (tasks, agents, success_examples, dataset_scales; None: any).

  A list that names a value no run of the figure has is refused (ValueError), so a typo does not run nothing.
  """
  fields = dict(tasks="task", agents="agent", success_examples="num_success_examples", dataset_scales="dataset_scale")
  only = {name: wanted for name, wanted in only.items() if wanted is not None}
  for name, wanted in only.items():
    have = {getattr(r, fields[name]) for r in runs}
    missing = [w for w in wanted if w not in have]
    if missing:
      raise ValueError(f"--{name} {' '.join(map(str, missing))}: no run of this figure has it; it has {sorted(have)}.")
  runs = [r for r in runs if all(getattr(r, fields[name]) in wanted for name, wanted in only.items())]
  if not runs:
    raise ValueError(f"No run of this figure has all of {', '.join('--' + name for name in only)} at once.")
  return runs


def seed_lists(seeds: Optional[Sequence[int]], budget: Budget) -> Tuple[List[int], List[int]]:
  """(state seeds, image seeds): the seeds a user names run on every task; by default images get the budget's
  first `image_seeds` of 0, 1, 2 (an image run takes 25-45 minutes on a 2-core CPU)."""
  if seeds is not None:
    return list(seeds), list(seeds)
  return [0, 1, 2], [0, 1, 2][: budget.image_seeds]


def num_steps_of(run: Run, budget: Budget) -> int:
  return budget.image_num_steps if "_image" in run.task else budget.num_steps


def dataset_episodes(run: Run, budget: Budget) -> int:
  episodes = budget.image_dataset_episodes if "_image" in run.task else budget.dataset_episodes
  return max(1, int(round(episodes * run.dataset_scale)))


def dataset_dir(run: Run, budget: Budget) -> str:
  name = f"{run.task}_{run.quality}_{dataset_episodes(run, budget)}ep_{run.num_success_examples}ex_seed0"
  # A new controller or camera makes new data: its datasets (and so its rows' keys) get new names.
  version, camera = scripted.controller_version(run.task), environments.OBSERVATION_VERSIONS.get(run.task, 1)
  name += (f"_ctl{version}" if version > 1 else "") + (f"_cam{camera}" if camera > 1 else "")
  return os.path.join(ROOT, "data", "paper", name)


def code_commit(root: str = ROOT) -> str:
  """The commit of the code a run uses; '+dirty' when the code differs from it: a tracked file changed, or a new
  file not yet committed (a new script's rows would otherwise name a commit without it)."""
  head = subprocess.run(["git", "-C", root, "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True)
  code = ["agents", "data_pipeline", "environments", "launch", "scripts"]
  status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", *code], capture_output=True, text=True)
  return (head.stdout.strip() or "unknown") + (row_code.DIRTY if status.stdout.strip() else "")


def episodes_source(run: Run, budget: Budget) -> Optional[str]:
  """The dataset whose episodes a run with fewer (or more) success examples than the default shares: only its
  success examples differ (Fig. 6 left); None for a run on the default count."""
  if run.num_success_examples == DEFAULT_SUCCESS_EXAMPLES:
    return None
  return dataset_dir(dataclasses.replace(run, num_success_examples=DEFAULT_SUCCESS_EXAMPLES), budget)


def ensure_dataset(path: str, run: Run, episodes: int, source: Optional[str] = None) -> Dict:
  """The dataset at `path`, generated when missing; with `source` (the same episodes with the default number of
  success examples), made from it by redrawing the success examples instead of rolling out again. Two sweeps that
  need it at once take turns: the second waits and uses what the first made."""
  if rlds_writer.is_dataset_dir(path):
    return rlds_writer.read_metadata(path)
  with locked(path + ".lock"):
    return _ensure_dataset(path, run, episodes, source)


def _ensure_dataset(path: str, run: Run, episodes: int, source: Optional[str]) -> Dict:
  if not rlds_writer.is_dataset_dir(path) and source is not None:
    ensure_dataset(source, dataclasses.replace(run, num_success_examples=DEFAULT_SUCCESS_EXAMPLES), episodes)
    print(f"[reproduce] {path}: the episodes of {source}, {run.num_success_examples} success examples", flush=True)
    generate.with_success_examples(source, path, run.num_success_examples)
  if not rlds_writer.is_dataset_dir(path):
    print(f"[reproduce] generating {path}", flush=True)
    summary = generate.generate_dataset(
      run.task, run.quality, episodes, path, seed=0, num_success_examples=run.num_success_examples, show_progress=False
    )
    print(generate.summary_line(summary), flush=True)
  return rlds_writer.read_metadata(path)


def try_lock(path: str, wait: bool) -> Optional[int]:
  """An exclusive lock (flock) on `path`, a directory or a file (made if missing): the descriptor that holds it, or
  None when another process holds it and `wait` is false. Closing the descriptor, or its holder's death (a killed
  sweep), releases it."""
  if os.path.isdir(path):
    fd = os.open(path, os.O_RDONLY)
  else:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
  except BlockingIOError:
    os.close(fd)
    return None
  return fd


@contextlib.contextmanager
def locked(path: str):
  """Holds try_lock(path) for the block, waiting for another process to let go of it first."""
  fd = try_lock(path, wait=True)
  try:
    yield
  finally:
    os.close(fd)


def run_key(row: Dict) -> tuple:
  return (
    str(row["task"]),
    str(row["agent"]),
    int(row["seed"]),
    os.path.basename(str(row["dataset"])),
    int(row["num_steps"]),
    str(row["preset"]),
    str(row.get("options") or ""),
  )


def has_run(rows: Sequence[Dict], key: tuple) -> bool:
  """Whether one of `rows` is the run of `key` (run_key)."""
  return any(run_key(row) == key for row in rows)


def rows_of_other_figures(out_dir: str, table: str) -> Dict[tuple, Dict]:
  """{run key: row} of every other figure's table in `out_dir` (the first row of a key wins)."""
  rows = {}
  for other in sorted(glob.glob(os.path.join(out_dir, "fig*.csv"))):
    if os.path.abspath(other) != os.path.abspath(table):
      for row in read_rows(other):
        rows.setdefault(run_key(row), row)
  return rows


def extra_arguments(launch_flags: Sequence[str], config: Sequence[str]) -> List[str]:
  """The launcher arguments a sweep adds to every run (--launch_flag NAME=VALUE, --config NAME=VALUE)."""
  arguments = []
  for flag in launch_flags:
    name, equals, _ = flag.partition("=")
    if not equals or not name:
      raise ValueError(f"--launch_flag={flag!r}: expected NAME=VALUE (a flag of launch/local.py without its --).")
    if name in OWN_LAUNCH_FLAGS:
      raise ValueError(f"--launch_flag={flag!r}: the sweep sets --{name} itself (use --config for agent overrides).")
    arguments.append(f"--{flag}")
  return arguments + [f"--config={c}" for c in config]


def options_label(arguments: Sequence[str]) -> str:
  """A file-name-safe label of a run's extra arguments ('' for none), part of its workdir's name."""
  return "_".join(re.sub(r"[^A-Za-z0-9._]+", "", a.removeprefix("--config=")) for a in arguments)


def read_rows(path: str) -> List[Dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def append_row(path: str, row: Dict, columns: Sequence[str] = COLUMNS) -> None:
  """Appends `row` to the CSV table `path` (made with a header if missing); a table of older columns is first
  rewritten with `columns`, its rows' new cells empty."""
  rows = read_rows(path)
  if rows and list(rows[0]) != list(columns):
    with open(path, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=columns, restval="")
      writer.writeheader()
      writer.writerows({k: r.get(k, "") for k in columns} for r in rows)
  new = not os.path.exists(path)
  with open(path, "a", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns)
    if new:
      writer.writeheader()
    writer.writerow(row)


def merge_table(table: str, other_table: str) -> List[Dict]:
  """Appends to `table` the rows of `other_table` whose runs it lacks (a row of a run it has, whatever its numbers,
  is left out: the table's own row stands); returns the rows added."""
  have = {run_key(row) for row in read_rows(table)}
  added = []
  for row in read_rows(other_table):
    if run_key(row) not in have:
      append_row(table, {c: row.get(c, "") for c in COLUMNS})
      have.add(run_key(row))
      added.append(row)
  return added


def workdir_of(run: Run, budget: Budget, dataset: str, extra: Sequence[str]) -> str:
  label = options_label(extra)
  name = f"{run.agent}_{budget.preset}_{num_steps_of(run, budget)}steps_seed{run.seed}" + (f"_{label}" if label else "")
  return os.path.join(ROOT, "runs", "paper", f"fig{run.figure}", os.path.basename(dataset), name)


def shorter_run(rows: Sequence[Dict], key: tuple) -> Optional[Dict]:
  """The row of the run of `key`'s cell (everything but the steps equal) with the most steps below `key`'s whose
  workdir is still here, or None."""
  steps = key[4]
  same = [
    r
    for r in rows
    if run_key(r)[:4] + run_key(r)[5:] == key[:4] + key[5:]
    and int(r["num_steps"]) < steps
    and os.path.isdir(os.path.join(ROOT, r["workdir"]))
  ]
  return max(same, key=lambda r: int(r["num_steps"]), default=None)


def continue_run(source: str, workdir: str) -> None:
  """Copies the finished run in `source` to the new `workdir`, where launch/local.py resumes it from its last
  checkpoint with more steps (the number of steps may change on resumption; the copy's stored config names its
  own workdir). The copy appears whole or not at all."""
  partial = workdir + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  shutil.copytree(source, partial, ignore=shutil.ignore_patterns("videos"))
  stored = run_config_lib.read_stored(partial)
  if stored is None:
    raise FileNotFoundError(f"{source} holds no run config to continue from.")
  stored["workdir"] = workdir
  with open(run_config_lib.run_config_path(partial), "w") as f:
    json.dump(stored, f, indent=2, sort_keys=True)
  with open(os.path.join(partial, CONTINUED_FROM), "w") as f:
    json.dump({"workdir": os.path.relpath(source, ROOT)}, f)
  os.rename(partial, workdir)


def continued_from(workdir: str) -> Optional[str]:
  """The workdir (relative to the repository) that continue_run copied `workdir` from, or None."""
  path = os.path.join(workdir, CONTINUED_FROM)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)["workdir"]


def plan_line(run: Run, budget: Budget, key: tuple, done, elsewhere, extend_from: Optional[Dict], extra) -> str:
  """What a sweep would do with `run` (--dry_run): skip it, copy another figure's row, go on from a shorter run,
  resume its workdir, or start it, and whether its dataset must be generated first."""
  dataset = dataset_dir(run, budget)
  workdir = workdir_of(run, budget, dataset, extra)
  what = f"{run.task} {run.agent} seed {run.seed}, {num_steps_of(run, budget)} steps, {os.path.basename(dataset)}"
  if key in done:
    return f"done       {what}: its row is in the table"
  if key in elsewhere:
    return f"copy       {what}: figure {elsewhere[key]['figure']}'s row"
  if extend_from is not None and not os.path.exists(workdir):
    return f"extend     {what}: goes on from {extend_from['workdir']} ({extend_from['num_steps']} steps)"
  if training_elsewhere(dataset, workdir):
    return f"busy       {what}: another sweep is training it now (its log: {log_path_of(dataset, workdir)})"
  step = checkpointing.for_run(workdir).latest_step()  # What the launcher resumes from.
  if step:
    return f"resume     {what}: from {os.path.relpath(workdir, ROOT)}'s checkpoint of step {step}"
  data = "" if rlds_writer.is_dataset_dir(dataset) else " (its dataset generated first)"
  return f"new        {what}{data}"


# A launch's exit statuses when it was stopped from outside (Ctrl-C, SIGTERM; launch/supervisor.py), or its
# signals when it could not say so: the sweep stops too, instead of counting a failure and starting the next run
# (sweeps started in the background ignore SIGINT themselves; only the launches hear a Ctrl-C).
STOPPED_STATUSES = (130, 143, -signal.SIGINT, -signal.SIGTERM)


class Stopped(Exception):
  """A launch was stopped from outside: the sweep stops."""


_EVALUATION_LOCK = threading.Lock()
_LOCK = threading.Lock()
_LAUNCHES = set()  # The launches training now (subprocess.Popen), stopped when the sweep is interrupted.
_STOPPING = threading.Event()  # Set once the sweep is interrupted: a launch starting after that is stopped at once.


def launch_and_wait(command: Sequence[str], log) -> int:
  """Runs `command` in ROOT with its output to `log` until it exits, stoppable by stop_launches(); its status."""
  with subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) as launch:
    with _LOCK:
      _LAUNCHES.add(launch)
      if _STOPPING.is_set():  # Its thread got here after stop_launches() went through the others.
        launch.terminate()
    try:
      return launch.wait()
    finally:
      with _LOCK:
        _LAUNCHES.discard(launch)


def stop_launches() -> None:
  """Asks every launch training now to stop (SIGTERM; a rerun resumes each from its last checkpoint). A Ctrl-C
  reaches them by itself, but a signal to this process alone or an error here would leave them training."""
  with _LOCK:
    _STOPPING.set()
    for launch in _LAUNCHES:
      launch.terminate()


def log_path_of(dataset: str, workdir: str) -> str:
  """Where a run's launches write their output, every sweep's appended."""
  return os.path.join(ROOT, "runs", "paper", "logs", f"{os.path.basename(dataset)}_{os.path.basename(workdir)}.log")


def claim_run(dataset: str, workdir: str) -> Optional[int]:
  """Claims a run for this sweep (a lock on its log file, held until its row is written): the descriptor, or None
  when another sweep is training it. Two sweeps started on one table, or on tables that share runs, then never train
  one workdir at once; a sweep that dies releases its claims. A lock held only for a moment (another sweep's
  --dry_run asking) is waited out."""
  log = log_path_of(dataset, workdir)
  fd = try_lock(log, wait=False)
  if fd is None:
    time.sleep(CLAIM_PATIENCE_S)
    fd = try_lock(log, wait=False)
  return fd


def training_elsewhere(dataset: str, workdir: str) -> bool:
  """Whether another sweep holds the run's claim now (asked without making its log, holding it only a moment)."""
  log = log_path_of(dataset, workdir)
  if not os.path.exists(log):
    return False
  fd = try_lock(log, wait=False)
  if fd is None:
    return True
  os.close(fd)
  return False


def clock_path_of(dataset: str, workdir: str) -> str:
  """Where a run's RunClock keeps its wall time."""
  return os.path.splitext(log_path_of(dataset, workdir))[0] + ".wall_s.json"


class RunClock:
  """The wall time one run has taken over every sweep that trained it, so that a run resumed after a restart counts
  its earlier parts too. Kept in a file beside the run's log and rewritten every `every_s` seconds while the run
  trains: a sweep killed with its machine loses at most that much. A run that starts afresh starts from zero."""

  def __init__(self, path: str, resumed: bool, every_s: float):
    self._path, self._every_s = path, every_s
    self._before = 0.0
    if resumed and os.path.exists(path):
      with open(path) as f:
        self._before = float(json.load(f)["wall_s"])
    self._started = time.time()
    self._done = threading.Event()
    self._keeper = threading.Thread(target=self._keep, daemon=True)

  def seconds(self) -> float:
    return self._before + time.time() - self._started

  @staticmethod
  def save(path: str, wall_s: float) -> None:
    """Writes the clock file whole (a reader never sees half of it)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w") as f:
      json.dump({"wall_s": round(wall_s, 1)}, f)
    os.replace(partial, path)

  def _save(self) -> None:
    RunClock.save(self._path, self.seconds())

  def _keep(self) -> None:
    while not self._done.wait(self._every_s):
      self._save()

  def __enter__(self) -> "RunClock":
    self._save()
    self._keeper.start()
    return self

  def __exit__(self, *unused) -> None:
    self._done.set()
    self._keeper.join()
    self._save()


def train_and_evaluate(run: Run, budget: Budget, dataset: str, final_episodes: int, extra: Sequence[str]) -> Dict:
  """Trains `run` through launch/local.py (with the sweep's `extra` arguments) and evaluates its final checkpoint."""
  num_steps = num_steps_of(run, budget)
  workdir = workdir_of(run, budget, dataset, extra)
  image_config = [f"--config={c}" for c in budget.image_config] if "_image" in run.task else []
  own = {
    "agent": run.agent,
    "env": run.task,
    "dataset_dir": dataset,
    "num_steps": num_steps,
    "preset": budget.preset,
    "seed": run.seed,
    "workdir": workdir,
    "num_evaluators": 1,
    "eval_every": budget.eval_every,
    "episodes_per_eval": budget.episodes_per_eval,
    "checkpoint_every": budget.eval_every,
  }
  assert set(own) | {"config"} == set(OWN_LAUNCH_FLAGS), "OWN_LAUNCH_FLAGS must name every flag set here."
  command = [
    sys.executable,
    os.path.join(ROOT, "launch", "local.py"),
    *(f"--{name}={value}" for name, value in own.items()),
    *image_config,
    *extra,
  ]
  commit = code_commit()
  log_path = log_path_of(dataset, workdir)
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with RunClock(clock_path_of(dataset, workdir), resumed=os.path.exists(workdir), every_s=CLOCK_EVERY_S) as clock:
    with open(log_path, "a") as log:
      returncode = launch_and_wait(command, log)
    if returncode:
      raise subprocess.CalledProcessError(returncode, command)
    with _EVALUATION_LOCK:  # Runs side by side (--jobs) evaluate in this one process: one renderer at a time.
      result = evaluate.evaluate_latest_checkpoint(workdir, final_episodes, seed=12345)
  if result["learner_steps"] != num_steps:
    raise RuntimeError(f"{workdir}: final checkpoint at step {result['learner_steps']}, expected {num_steps}.")
  return {
    "num_steps": num_steps,
    "success_any_step": result["success_rate"],
    "success_final_step": result["success_rate_final_step"],
    "eval_episodes": result["episodes"],
    "wall_s": round(clock.seconds(), 1),
    "workdir": os.path.relpath(workdir, ROOT),
    "commit": commit,
  }


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--figure", type=int, required=True)
  parser.add_argument("--budget", default="cpu", choices=sorted(BUDGETS))
  parser.add_argument(
    "--seeds",
    type=int,
    nargs="+",
    default=None,
    help="Seeds of every task (default: 0 1 2 for state tasks, the budget's first image_seeds of them for images).",
  )
  parser.add_argument("--tasks", nargs="+", default=None, help="Only these tasks.")
  parser.add_argument("--agents", nargs="+", default=None, help="Only these agents.")
  parser.add_argument(
    "--success_examples",
    type=int,
    nargs="+",
    default=None,
    help="Only runs with these numbers of success examples (Fig. 6 left: 1 10 100 200).",
  )
  parser.add_argument(
    "--dataset_scales",
    type=float,
    nargs="+",
    default=None,
    help="Only runs on datasets of these sizes, in multiples of the budget's (Fig. 6 right: 0.1 1 10).",
  )
  parser.add_argument("--final_episodes", type=int, default=100)
  parser.add_argument("--num_steps", type=int, default=None, help="Override the budget's learner steps.")
  parser.add_argument("--out_dir", default=os.path.join(ROOT, "results", "paper"))
  parser.add_argument("--config", action="append", default=[], help="Agent override NAME=VALUE (every run).")
  parser.add_argument(
    "--launch_flag",
    action="append",
    default=[],
    help="A flag of launch/local.py as NAME=VALUE for every run (e.g. episode_reuse=4); runs with other extra "
    "arguments are other runs (their own workdirs and rows, the 'options' column).",
  )
  parser.add_argument(
    "--extend",
    action="store_true",
    help="A run of more steps than a finished run of the same cell in the table goes on from that run's last "
    "checkpoint (a copy of its workdir) instead of starting afresh.",
  )
  parser.add_argument(
    "--jobs",
    type=int,
    default=1,
    help="Runs trained at a time (each its own launch); rows are still written as each run ends.",
  )
  parser.add_argument("--plot_only", action="store_true", help="Redraw the figure from the CSV and exit.")
  parser.add_argument(
    "--merge_from",
    default=None,
    metavar="DIR",
    help="Copy into this figure's table (and curves.csv) the rows (and curves) of the same files in DIR, another "
    "checkout's out_dir (e.g. a sweep's worktree), whose runs it lacks; redraw the figure and exit.",
  )
  parser.add_argument(
    "--dry_run",
    action="store_true",
    help="List what the command would do with each run (done, copy, extend, resume or new) and exit; nothing is "
    "generated, trained or written.",
  )
  args = parser.parse_args(argv)
  if args.jobs < 1:
    parser.error(f"--jobs must be >= 1, got {args.jobs}.")
  if args.merge_from and (args.dry_run or args.plot_only):
    parser.error("--merge_from writes the table and redraws the figure; it goes without --dry_run and --plot_only.")
  budget = BUDGETS[args.budget]
  try:
    extra = extra_arguments(args.launch_flag, args.config)
  except ValueError as e:
    parser.error(str(e))
  options = " ".join(extra)
  if args.num_steps:
    budget = dataclasses.replace(
      budget,
      num_steps=args.num_steps,
      image_num_steps=args.num_steps,
      eval_every=min(budget.eval_every, args.num_steps),
    )
  seeds, image_seeds = seed_lists(args.seeds, budget)
  try:
    runs = select_runs(
      figure_runs(args.figure, seeds, image_seeds),
      tasks=args.tasks,
      agents=args.agents,
      success_examples=args.success_examples,
      dataset_scales=args.dataset_scales,
    )
  except ValueError as e:
    parser.error(str(e))
  out_dir = args.out_dir
  if not args.dry_run:
    os.makedirs(out_dir, exist_ok=True)
  table = os.path.join(out_dir, f"fig{3 if args.figure == 4 else args.figure}.csv")
  if args.merge_from:
    other_table = os.path.join(args.merge_from, os.path.basename(table))
    if not os.path.exists(other_table):
      print(f"[reproduce] --merge_from: {other_table} does not exist; nothing was merged.", file=sys.stderr)
      return 1
    with locked(out_dir):
      added = merge_table(table, other_table)
      curves = paper_plots.merge_curves(out_dir, args.merge_from)
      for row in added:
        print(
          f"[reproduce] merged {row['task']} {row['agent']} seed {row['seed']} ({os.path.basename(row['dataset'])}, "
          f"{row['num_steps']} steps): success {float(row['success_any_step']):.2f} "
          f"(final step {float(row['success_final_step']):.2f})"
        )
      print(f"[reproduce] {len(added)} rows and {curves} curves merged from {args.merge_from} into {out_dir}")
      print(paper_plots.plot_figure(args.figure, table, out_dir, ROOT))
    return 0
  if args.plot_only or args.figure == 4:
    try:
      print(paper_plots.plot_figure(args.figure, table, out_dir, ROOT))
    except ValueError as e:
      print(f"[reproduce] {e} Nothing was redrawn.", file=sys.stderr)
      return 1
    return 0
  rows = read_rows(table)
  done = {run_key(row) for row in rows}
  elsewhere = rows_of_other_figures(out_dir, table)

  def key_of(run: Run) -> tuple:
    dataset = os.path.basename(dataset_dir(run, budget))
    return (run.task, run.agent, run.seed, dataset, num_steps_of(run, budget), budget.preset, options)

  if args.dry_run:
    print(f"[reproduce] figure {args.figure}: {len(runs)} runs, table {table} (dry run: nothing is done)")
    for run in runs:
      key = key_of(run)
      shorter = shorter_run(rows, key) if args.extend else None
      print("  " + plan_line(run, budget, key, done, elsewhere, shorter, extra))
    return 0
  failures, busy = 0, 0

  def write_row(row: Dict) -> bool:
    """Appends `row` and redraws the figure, one process at a time (sweeps writing tables in one folder share its
    curves.csv); False, writing nothing, when another sweep has written the run's row since this one began."""
    with locked(out_dir):
      if has_run(read_rows(table), run_key(row)):
        return False
      append_row(table, row)
      paper_plots.plot_figure(args.figure, table, out_dir, ROOT)
      return True

  def record(run: Run, dataset: str, meta: Dict, workdir: str, training: concurrent.futures.Future) -> None:
    """Appends a finished run's row (in this thread: rows and figures are written one at a time)."""
    nonlocal failures
    try:
      outcome = training.result()
    except (subprocess.CalledProcessError, RuntimeError, FileNotFoundError) as e:
      if getattr(e, "returncode", None) in STOPPED_STATUSES:
        raise Stopped(f"{run.task} {run.agent} seed {run.seed} was stopped (exit status {e.returncode})") from e
      failures += 1
      print(f"[reproduce] FAILED: {e}", flush=True)
      return
    row = {
      "figure": run.figure,
      "task": run.task,
      "agent": run.agent,
      "seed": run.seed,
      "dataset": os.path.relpath(dataset, ROOT),
      "quality": run.quality,
      "dataset_episodes": meta["num_episodes"],
      "num_success_examples": meta["num_success_examples"],
      "preset": budget.preset,
      **outcome,
      "options": options,
    }
    row["continued_from"] = continued_from(workdir) or ""
    written = "" if write_row(row) else "; another sweep had written its row, this one is not"
    print(
      f"[reproduce] {run.task} {run.agent} seed {run.seed}: success {row['success_any_step']:.2f} "
      f"(final step {row['success_final_step']:.2f}) in {row['wall_s']:.0f}s{written}",
      flush=True,
    )

  running = {}

  def record_finished() -> None:
    finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
    for training in finished:
      *made, claim = running.pop(training)
      try:
        record(*made, training)
      finally:
        os.close(claim)

  def schedule(pool: concurrent.futures.Executor) -> None:
    """Starts each run not yet done when one of the --jobs slots is free; records every run as it ends."""
    nonlocal busy
    for i, run in enumerate(runs):
      dataset = dataset_dir(run, budget)
      key = key_of(run)
      if key in done:
        continue
      if key in elsewhere:
        same = elsewhere[key]
        copied = write_row({**{c: same.get(c, "") for c in COLUMNS}, "figure": run.figure})
        source = f"the run of figure {same['figure']}'s row" if copied else "another sweep has copied its row"
        print(f"[reproduce] {run.task} {run.agent} seed {run.seed}: {source}", flush=True)
        continue
      while len(running) >= args.jobs:
        record_finished()
      workdir = workdir_of(run, budget, dataset, extra)
      what = f"run {i + 1}/{len(runs)}: {run.task} {run.agent} seed {run.seed}"
      claim = claim_run(dataset, workdir)
      if claim is None:
        busy += 1
        print(f"[reproduce] {what}: another sweep is training it now; not here", flush=True)
        continue
      rows_now = read_rows(table)
      if has_run(rows_now, key):  # Another sweep finished it after this one began.
        os.close(claim)
        print(f"[reproduce] {what}: another sweep has made its row", flush=True)
        continue
      try:
        meta = ensure_dataset(dataset, run, dataset_episodes(run, budget), episodes_source(run, budget))
        shorter = shorter_run(rows_now, key) if args.extend else None
        if shorter is not None and not os.path.exists(workdir):
          print(f"[reproduce] going on from {shorter['workdir']} (step {shorter['num_steps']})", flush=True)
          # Its clock starts at the shorter run's time (replacing any left by an earlier run of this name), before
          # the copy: the copy's existence is what makes the run count as resumed.
          RunClock.save(clock_path_of(dataset, workdir), float(shorter["wall_s"] or 0))
          continue_run(os.path.join(ROOT, shorter["workdir"]), workdir)
        print(f"[reproduce] {what} ({os.path.basename(dataset)})", flush=True)
        training = pool.submit(train_and_evaluate, run, budget, dataset, args.final_episodes, extra)
      except BaseException:
        os.close(claim)
        raise
      running[training] = (run, dataset, meta, workdir, claim)
    while running:
      record_finished()

  _STOPPING.clear()
  try:
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
      try:
        schedule(pool)
      except BaseException:
        stop_launches()
        raise
  except Stopped as e:
    print(f"[reproduce] {e}: the sweep stops; the same command resumes it.", flush=True)
    return 130
  finally:
    for *unused, claim in running.values():  # Runs a stopped sweep leaves unrecorded: another sweep may take them.
      os.close(claim)
  elsewhere_now = f", {busy} left to the sweep training them" if busy else ""
  print(f"[reproduce] figure {args.figure}: {len(runs)} runs, {failures} failed{elsewhere_now}; table {table}")
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
