"""The figure harness (scripts/reproduce.py): run lists, resumable tables and figures, without training."""

import csv
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from scripts import paper_plots
from scripts import reproduce
from tests.helpers import wait_for, write_evaluations


CHECKOUT = reproduce.ROOT


@pytest.fixture(autouse=True)
def _throwaway_root(tmp_path, monkeypatch):
  """Runs' logs, claims, clocks and workdirs go under a throwaway ROOT, never into the checkout's runs/."""
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path / "repo"))


def test_figure_3_runs_state_tasks_seed_major_then_images():
  runs = reproduce.figure_runs(3, seeds=[0, 1, 2], image_seeds=[0])
  state = [r for r in runs if "_image" not in r.task]
  image = [r for r in runs if "_image" in r.task]
  assert len(state) == 4 * 4 * 3 and len(image) == 2 * 4
  assert runs[: len(state)] == state  # Image runs come last.
  assert [r.seed for r in state] == sorted(r.seed for r in state)  # Every cell's seed 0 first.
  assert {r.agent for r in runs} == set(reproduce.AGENTS)
  assert {r.seed for r in image} == {0}


def test_other_figures():
  assert {(r.task, r.quality) for r in reproduce.figure_runs(5, [0], [0])} == {
    ("fetch_reach", "low"),
    ("fetch_push", "low"),
    ("fetch_reach_image", "low"),
  }
  fig6 = reproduce.figure_runs(6, [0], [0])
  assert {r.num_success_examples for r in fig6} == {1, 10, 100, 200}
  assert {r.dataset_scale for r in fig6} == {0.1, 1.0, 10.0}
  # FetchPush-image (the paper's task) and the state stand-in, each at 0.1x, 1x and 10x.
  assert {(r.task, r.dataset_scale) for r in fig6 if r.num_success_examples == 200} == {
    (t, x) for t in ("fetch_push", "fetch_push_image") for x in (0.1, 1.0, 10.0)
  }
  assert {r.task for r in reproduce.figure_runs(7, [0], [0])} == {"fetch_push_image_occluded"}
  sanity = reproduce.figure_runs(0, [0, 1, 2], [0])
  assert {(r.agent, r.quality, r.seed) for r in sanity} == {("bc", "expert", 0)} and len(sanity) == 6
  budget = reproduce.BUDGETS["cpu"]
  assert {r.task: reproduce.dataset_episodes(r, budget) for r in sanity if "_image" in r.task} == {
    "fetch_reach_image": 500,
    "fetch_push_image": 500,
  }
  assert {reproduce.dataset_episodes(r, budget) for r in sanity if "_image" not in r.task} == {500}
  with pytest.raises(ValueError, match="figure"):
    reproduce.figure_runs(8, [0], [0])


def test_dataset_names_carry_size_and_examples():
  budget = reproduce.BUDGETS["cpu"]
  run = reproduce.Run(figure=6, task="fetch_push", agent="laeo", seed=0, dataset_scale=0.1, num_success_examples=10)
  # fetch_push data is made by push controller version 2 (the name says so; version 1's data is another dataset).
  assert os.path.basename(reproduce.dataset_dir(run, budget)) == "fetch_push_medium_200ep_10ex_seed0_ctl2"
  image = reproduce.Run(figure=3, task="fetch_push_image", agent="laeo", seed=0)
  assert reproduce.dataset_episodes(image, budget) == budget.image_dataset_episodes
  assert reproduce.dataset_dir(image, budget).endswith("_ctl2")
  reach = reproduce.Run(figure=3, task="fetch_reach", agent="laeo", seed=0)
  assert os.path.basename(reproduce.dataset_dir(reach, budget)) == "fetch_reach_medium_2000ep_200ex_seed0"
  reach_image = reproduce.Run(figure=3, task="fetch_reach_image", agent="laeo", seed=0)
  assert reproduce.dataset_dir(reach_image, budget).endswith("_cam2")  # The "reach" camera.


def test_named_seeds_run_on_image_tasks_too():
  cpu = reproduce.BUDGETS["cpu"]
  assert reproduce.seed_lists(None, cpu) == ([0, 1, 2], [0])  # By default one image seed on a CPU.
  assert reproduce.seed_lists([1, 2], cpu) == ([1, 2], [1, 2])
  assert reproduce.seed_lists(None, reproduce.BUDGETS["paper"]) == ([0, 1, 2], [0, 1, 2])


def _outcome(budget, final_episodes, workdir, **changes):
  """What train_and_evaluate returns for a finished run of `budget` (success 0.5 / 0.25), with `changes`."""
  return {
    "num_steps": budget.num_steps,
    "success_any_step": 0.5,
    "success_final_step": 0.25,
    "eval_episodes": final_episodes,
    "wall_s": 1.0,
    "workdir": workdir,
    "commit": "c0ffee",
    **changes,
  }


def _fake_dataset(monkeypatch):
  monkeypatch.setattr(
    reproduce,
    "ensure_dataset",
    lambda path, run, episodes, source=None: {"num_episodes": episodes, "num_success_examples": 200},
  )


def test_sweep_skips_finished_runs_and_records_each_run(tmp_path, monkeypatch):
  trained = []

  def fake_train(run, budget, dataset, final_episodes, extra_config):
    trained.append((run.task, run.agent, run.seed))
    if run.agent == "purl":
      raise RuntimeError("node failed")
    return _outcome(budget, final_episodes, "runs/x", commit=f"c0ffee{run.seed}")

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  args = ["--figure=3", "--tasks", "fetch_reach", "--seeds", "0", "1", f"--out_dir={tmp_path}", "--final_episodes=7"]
  assert reproduce.main(args) == 1  # PURL's runs failed: an honest exit status.
  with open(tmp_path / "fig3.csv") as f:
    rows = list(csv.DictReader(f))
  assert [(r["agent"], r["seed"]) for r in rows] == [(a, s) for s in ("0", "1") for a in ("laeo", "oril", "bc")]
  assert rows[0]["eval_episodes"] == "7" and rows[0]["success_final_step"] == "0.25"
  assert [r["commit"] for r in rows] == ["c0ffee0"] * 3 + ["c0ffee1"] * 3  # Each row names the code that made it.
  assert os.path.exists(tmp_path / "fig3.png") and "| fetch_reach |" in (tmp_path / "fig3.md").read_text()
  # A rerun trains only what is missing (the failed runs), and appends nothing twice.
  trained.clear()
  assert reproduce.main(args) == 1
  assert trained == [("fetch_reach", "purl", 0), ("fetch_reach", "purl", 1)]
  with open(tmp_path / "fig3.csv") as f:
    assert len(list(csv.DictReader(f))) == 6


def test_jobs_trains_that_many_runs_at_a_time_and_records_each_as_it_ends(tmp_path, monkeypatch):
  both_started = threading.Barrier(2, timeout=20)  # Broken (an error) unless two runs train at once.
  lock, order, at_once, now, rows_seen = threading.Lock(), [], [], [0], []
  # The order the runs end in, each waiting until the rows of those before it are in the table: every row is
  # written as its run ends, while another run still trains (LAEO's runs end while ORIL's seed 0 trains).
  ends = [("laeo", 0), ("laeo", 1), ("oril", 0), ("oril", 1)]
  table = str(tmp_path / "fig3.csv")

  def fake_train(run, budget, dataset, final_episodes, extra):
    with lock:
      now[0] += 1
      at_once.append(now[0])
    if run.seed == 0:
      both_started.wait()
    before = ends.index((run.agent, run.seed))
    wait_for(lambda: len(reproduce.read_rows(table)) >= before, 20, f"the rows of the {before} runs ending first")
    rows_seen.append(len(reproduce.read_rows(table)))
    with lock:
      now[0] -= 1
      order.append((run.agent, run.seed))
    return _outcome(budget, final_episodes, f"runs/{run.agent}{run.seed}")

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  args = ["--figure=3", "--tasks", "fetch_reach", "--agents", "oril", "laeo", "--seeds", "0", "1", "--jobs=2"]
  assert reproduce.main(args + [f"--out_dir={tmp_path}"]) == 0
  assert max(at_once) == 2  # Never more than --jobs.
  with open(tmp_path / "fig3.csv") as f:
    rows = [(r["agent"], r["seed"]) for r in csv.DictReader(f)]
  # LAEO seed 1 took the slot LAEO seed 0 freed and ended before ORIL seed 0: rows follow the runs' ends.
  assert rows == [("laeo", "0"), ("laeo", "1"), ("oril", "0"), ("oril", "1")] == [(a, str(s)) for a, s in order]
  assert rows_seen == [0, 1, 2, 3]
  assert reproduce.main(args + [f"--out_dir={tmp_path}"]) == 0 and len(order) == 4  # A rerun trains nothing.
  with pytest.raises(SystemExit):
    reproduce.main(["--figure=3", "--jobs=0", f"--out_dir={tmp_path}"])


def test_a_launch_stopped_from_outside_stops_the_sweep_instead_of_counting_a_failure(tmp_path, monkeypatch):
  trained = []

  def fake_train(run, budget, dataset, final_episodes, extra):
    trained.append(run.seed)
    raise subprocess.CalledProcessError(130, "launch/local.py")  # Its Ctrl-C; this process ignores SIGINT.

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  args = ["--figure=3", "--tasks", "fetch_reach", "--agents", "laeo", "--seeds", "0", "1", f"--out_dir={tmp_path}"]
  assert reproduce.main(args) == 130 and trained == [0]
  assert not os.path.exists(tmp_path / "fig3.csv")


@pytest.mark.parametrize("launch_registered_first", [True, False])
def test_an_interrupted_sweep_stops_the_launches_still_training(tmp_path, monkeypatch, launch_registered_first):
  # Either the interrupt finds the first run's launch training, or that launch starts only after the interrupt
  # (its thread was slower): both must end by SIGTERM, not train on.
  stop_requested = threading.Event()
  stop_launches = reproduce.stop_launches
  returncodes = []

  def recording_stop_launches():
    stop_launches()
    stop_requested.set()

  def fake_train(run, budget, dataset, final_episodes, extra):
    if not launch_registered_first:
      stop_requested.wait(20)
    returncode = reproduce.launch_and_wait(["sleep", "60"], subprocess.DEVNULL)  # As train_and_evaluate launches.
    returncodes.append(returncode)
    raise subprocess.CalledProcessError(returncode, "sleep")

  def interrupted_second_dataset(path, run, episodes, source=None):
    if run.seed == 1:
      if launch_registered_first:
        wait_for(lambda: reproduce._LAUNCHES, 20, "the first run's launch")  # pylint: disable=protected-access
      raise KeyboardInterrupt
    return {"num_episodes": episodes, "num_success_examples": 200}

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  monkeypatch.setattr(reproduce, "ensure_dataset", interrupted_second_dataset)
  monkeypatch.setattr(reproduce, "stop_launches", recording_stop_launches)
  start = time.monotonic()
  with pytest.raises(KeyboardInterrupt):
    reproduce.main(
      [
        "--figure=3",
        "--tasks",
        "fetch_reach",
        "--agents",
        "laeo",
        "--seeds",
        "0",
        "1",
        "--jobs=2",
        f"--out_dir={tmp_path}",
      ]
    )
  assert returncodes == [-signal.SIGTERM] and time.monotonic() - start < 30
  budget = reproduce.BUDGETS["cpu"]
  for seed in (0, 1):  # Their claims ended with the sweep: another sweep may train them now.
    run = reproduce.Run(3, "fetch_reach", "laeo", seed)
    dataset = reproduce.dataset_dir(run, budget)
    workdir = reproduce.workdir_of(run, budget, dataset, [])
    assert os.path.exists(reproduce.log_path_of(dataset, workdir))
    assert not reproduce.training_elsewhere(dataset, workdir)


def _fig3_push_image_row(budget):
  """Fig. 3's row of LAEO seed 0 on FetchPush-image, which is also Fig. 6's 200-example cell."""
  fig3 = reproduce.Run(figure=3, task="fetch_push_image", agent="laeo", seed=0)
  return {
    **{c: "" for c in reproduce.COLUMNS},
    "figure": 3,
    "task": "fetch_push_image",
    "agent": "laeo",
    "seed": 0,
    "dataset": os.path.relpath(reproduce.dataset_dir(fig3, budget), reproduce.ROOT),
    "dataset_episodes": budget.image_dataset_episodes,
    "num_success_examples": 200,
    "num_steps": budget.image_num_steps,
    "preset": budget.preset,
    "success_any_step": 0.125,
    "success_final_step": 0.0625,
    "workdir": "runs/paper/fig3/made_here",
    "commit": "f1g3",
  }


def test_a_run_another_figure_already_made_is_copied_not_trained(tmp_path, monkeypatch):
  budget = reproduce.BUDGETS["cpu"]
  made = _fig3_push_image_row(budget)
  reproduce.append_row(str(tmp_path / "fig3.csv"), made)
  trained = []

  def fake_train(run, budget, dataset, final_episodes, extra):
    trained.append((run.num_success_examples, run.dataset_scale))
    return _outcome(
      budget,
      final_episodes,
      "runs/new",
      num_steps=reproduce.num_steps_of(run, budget),
      success_any_step=0.0,
      success_final_step=0.0,
      commit="f1g6",
    )

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  monkeypatch.setattr(
    reproduce,
    "ensure_dataset",
    lambda path, run, episodes, source=None: {
      "num_episodes": episodes,
      "num_success_examples": run.num_success_examples,
    },
  )
  args = ["--figure=6", "--tasks", "fetch_push_image", "--agents", "laeo", "--seeds", "0", f"--out_dir={tmp_path}"]
  assert reproduce.main(args) == 0
  assert sorted(trained) == [(1, 1.0), (10, 1.0), (100, 1.0), (200, 0.1), (200, 10.0)]  # Not the 200-ex., 1x cell.
  rows = reproduce.read_rows(str(tmp_path / "fig6.csv"))
  copied = [r for r in rows if r["commit"] == "f1g3"]
  assert len(rows) == 6 and len(copied) == 1
  assert copied[0]["figure"] == "6" and copied[0]["workdir"] == "runs/paper/fig3/made_here"
  assert copied[0]["success_any_step"] == "0.125"
  trained.clear()
  assert reproduce.main(args) == 0 and trained == []  # Nothing twice, copied or trained.
  assert len(reproduce.read_rows(str(tmp_path / "fig6.csv"))) == 6


def _fake_training(monkeypatch, prepare=None):
  """Stands in for training: each run's (steps, what its workdir held before) is recorded in the list returned,
  `prepare(workdir, steps)` runs first, and the run leaves a checkpoint and a row; datasets are not made."""
  seen = []

  def fake_train(run, budget, dataset, final_episodes, extra):
    workdir = reproduce.workdir_of(run, budget, dataset, extra)
    seen.append((budget.num_steps, sorted(os.listdir(workdir)) if os.path.exists(workdir) else None))
    if prepare is not None:
      prepare(workdir, budget.num_steps)
    os.makedirs(os.path.join(workdir, "checkpoints", f"ckpt_{budget.num_steps}"), exist_ok=True)
    return _outcome(budget, final_episodes, os.path.relpath(workdir, reproduce.ROOT), wall_s=10.0)

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  return seen


def test_extend_goes_on_from_the_same_cells_shorter_run_in_a_copy_the_launcher_resumes(tmp_path, monkeypatch):
  from data_pipeline import generate
  from tests.helpers import make_tiny_run_config

  data = str(tmp_path / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 12, data, seed=0, num_success_examples=20, show_progress=False)
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path / "repo"))
  clock_at_start = {}

  def prepare(workdir, steps):
    clock = reproduce.clock_path_of(os.path.dirname(workdir), workdir)  # The workdir's folder is named as its data.
    if os.path.exists(clock):
      with open(clock) as f:
        clock_at_start[steps] = json.load(f)["wall_s"]
    # What launch/local.py does first: prepare the run, which refuses a workdir that holds another run.
    make_tiny_run_config(data, workdir, num_steps=steps)

  seen = _fake_training(monkeypatch, prepare)
  args = ["--figure=3", "--tasks", "fetch_reach", "--agents", "bc", "--seeds", "0", f"--out_dir={tmp_path}"]
  assert reproduce.main([*args, "--num_steps=10"]) == 0
  (first,) = reproduce.read_rows(str(tmp_path / "fig3.csv"))
  stale_clock = reproduce.clock_path_of(first["dataset"], first["workdir"].replace("_10steps_", "_30steps_"))
  os.makedirs(os.path.dirname(stale_clock), exist_ok=True)
  with open(stale_clock, "w") as f:  # Left by an earlier 30-step run whose workdir is gone.
    json.dump({"wall_s": 999.0}, f)
  assert reproduce.main([*args, "--num_steps=30", "--extend"]) == 0
  assert reproduce.main([*args, "--num_steps=20"]) == 0  # Without --extend: afresh.
  assert [s for s, _ in seen] == [10, 30, 20]
  assert seen[0][1] is None and seen[2][1] is None
  assert seen[1][1] == ["checkpoints", reproduce.CONTINUED_FROM, "run_config.json"]
  rows = {int(r["num_steps"]): r for r in reproduce.read_rows(str(tmp_path / "fig3.csv"))}
  assert rows[30]["continued_from"] == rows[10]["workdir"]
  assert rows[10]["continued_from"] == rows[20]["continued_from"] == ""
  # The longer run's clock (a resumed run's: RunClock) starts at the shorter run's time, not at a stale clock's.
  assert clock_at_start == {30: float(rows[10]["wall_s"])}
  # The shorter run is left as it was: its own config, only its own checkpoint.
  shorter = os.path.join(reproduce.ROOT, rows[10]["workdir"])
  assert os.listdir(os.path.join(shorter, "checkpoints")) == ["ckpt_10"]
  assert reproduce.run_config_lib.read_stored(shorter)["num_steps"] == 10


def test_a_resumed_runs_wall_s_counts_the_time_before_its_restart(tmp_path, monkeypatch):
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path))
  monkeypatch.setattr(reproduce, "CLOCK_EVERY_S", 0.05)
  monkeypatch.setattr(reproduce, "code_commit", lambda: "c0ffee")
  monkeypatch.setattr(
    reproduce.evaluate,
    "evaluate_latest_checkpoint",
    lambda *args, **kwargs: {"learner_steps": 5000, "success_rate": 1.0, "success_rate_final_step": 1.0, "episodes": 1},
  )
  run, budget = reproduce.Run(figure=3, task="fetch_reach", agent="bc", seed=0), reproduce.BUDGETS["cpu"]
  dataset = str(tmp_path / "data" / "fetch_reach_medium")
  workdir = reproduce.workdir_of(run, budget, dataset, [])
  clock = reproduce.clock_path_of(dataset, workdir)

  def saved():
    with open(clock) as f:
      return json.load(f)["wall_s"]

  def killed_after_a_second(command, log):  # The first part: trains a second, then its machine goes down.
    os.makedirs(workdir)
    wait_for(lambda: saved() >= 1.0, 30, "the run's time saved while it trains")
    before_the_kill.append(saved())
    return 1

  before_the_kill = []
  monkeypatch.setattr(reproduce, "launch_and_wait", killed_after_a_second)
  with pytest.raises(subprocess.CalledProcessError):
    reproduce.train_and_evaluate(run, budget, dataset, 1, [])
  with open(clock, "w") as f:  # A killed sweep saves nothing more: its last periodic save stays.
    json.dump({"wall_s": before_the_kill[0]}, f)

  monkeypatch.setattr(reproduce, "launch_and_wait", lambda command, log: time.sleep(0.3) or 0)
  resumed = reproduce.train_and_evaluate(run, budget, dataset, 1, [])
  assert round(before_the_kill[0] + 0.3, 1) <= resumed["wall_s"] < before_the_kill[0] + 30  # Both to 0.1 s.

  shutil.rmtree(workdir)  # Afresh: the earlier run's time is not this one's.
  monkeypatch.setattr(reproduce, "launch_and_wait", lambda command, log: 0)
  assert reproduce.train_and_evaluate(run, budget, dataset, 1, [])["wall_s"] < before_the_kill[0]


def test_dry_run_says_what_each_run_would_do_and_does_nothing(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path / "repo"))
  seen = _fake_training(monkeypatch)
  out = tmp_path / "results"
  args = ["--figure=3", "--tasks", "fetch_reach", "--agents", "bc", "--seeds", "0", "1", f"--out_dir={out}"]

  def plan(*more):
    capsys.readouterr()
    assert reproduce.main([*args, *more, "--dry_run"]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]

  assert plan("--num_steps=10") == ["new", "new"] and not out.exists()
  assert reproduce.main([*args[:-3], "0", f"--out_dir={out}", "--num_steps=10"]) == 0 and len(seen) == 1
  table = (out / "fig3.csv").read_text()
  assert plan("--num_steps=10") == ["done", "new"]
  assert plan("--num_steps=30", "--extend") == ["extend", "new"]
  assert plan("--num_steps=30") == ["new", "new"]
  # A run stopped part-way: its workdir holds a checkpoint, which the launcher resumes (a bare folder is none).
  budget = dataclasses.replace(reproduce.BUDGETS["cpu"], num_steps=30, image_num_steps=30)
  run = next(r for r in reproduce.figure_runs(3, [1], [1]) if (r.task, r.agent) == ("fetch_reach", "bc"))
  workdir = reproduce.workdir_of(run, budget, reproduce.dataset_dir(run, budget), [])
  os.makedirs(os.path.join(workdir, "checkpoints", "c"))
  assert plan("--num_steps=30") == ["new", "new"]
  reproduce.checkpointing.for_run(workdir).save(7, {"w": np.zeros(2, np.float32)}, {"learner_steps": 7})
  assert plan("--num_steps=30") == ["new", "resume"]
  assert len(seen) == 1 and (out / "fig3.csv").read_text() == table


def test_launch_flags_make_other_runs_recorded_with_their_options(tmp_path, monkeypatch):
  seen = []

  def fake_train(run, budget, dataset, final_episodes, extra):
    seen.append(list(extra))
    return _outcome(
      budget,
      final_episodes,
      "runs/x_" + reproduce.options_label(extra),
      success_any_step=1.0,
      success_final_step=1.0,
      commit="c",
    )

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  base = ["--figure=3", "--tasks", "fetch_reach", "--agents", "laeo", "--seeds", "0", f"--out_dir={tmp_path}"]
  assert reproduce.main(base) == 0
  assert reproduce.main([*base, "--launch_flag=episode_reuse=4", "--config=bc_coef=0.05"]) == 0
  assert reproduce.main([*base, "--launch_flag=episode_reuse=4", "--config=bc_coef=0.05"]) == 0  # Done: skipped.
  assert seen == [[], ["--episode_reuse=4", "--config=bc_coef=0.05"]]
  with open(tmp_path / "fig3.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["options"] for r in rows] == ["", "--episode_reuse=4 --config=bc_coef=0.05"]
  assert rows[1]["workdir"] == "runs/x_episode_reuse4_bc_coef0.05"
  for bad in ("episode_reuse", "seed=3", "=4"):
    with pytest.raises(SystemExit):
      reproduce.main([*base, f"--launch_flag={bad}"])
  assert len(seen) == 2


def test_code_commit_names_head_and_a_table_of_older_columns_gains_the_commit_column(tmp_path, monkeypatch):
  monkeypatch.setattr(reproduce, "ROOT", CHECKOUT)
  head = subprocess.run(["git", "-C", reproduce.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
  assert head.startswith(reproduce.code_commit().removesuffix("+dirty"))
  table = tmp_path / "fig3.csv"
  old_columns = [c for c in reproduce.COLUMNS if c != "commit"]
  with open(table, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=old_columns)
    writer.writeheader()
    writer.writerow({c: "0" for c in old_columns})
  reproduce.append_row(str(table), {**{c: "1" for c in reproduce.COLUMNS}, "commit": "abc"})
  with open(table) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == list(reproduce.COLUMNS)
  assert [r["commit"] for r in rows] == ["", "abc"] and rows[0]["seed"] == "0"


def test_code_commit_counts_changed_and_new_code_files_as_dirty(tmp_path):
  git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], capture_output=True, text=True, check=True)
  git("init", "-q")
  (tmp_path / "scripts").mkdir()
  (tmp_path / "scripts" / "a.py").write_text("x = 1\n")
  git("add", ".")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
  head = git("rev-parse", "--short=10", "HEAD").stdout.strip()
  assert reproduce.code_commit(str(tmp_path)) == head
  (tmp_path / "notes.md").write_text("not code\n")  # Outside the code: still clean.
  assert reproduce.code_commit(str(tmp_path)) == head
  (tmp_path / "scripts" / "b.py").write_text("y = 2\n")  # A new, uncommitted script.
  assert reproduce.code_commit(str(tmp_path)) == head + "+dirty"
  (tmp_path / "scripts" / "b.py").unlink()
  (tmp_path / "scripts" / "a.py").write_text("x = 2\n")
  assert reproduce.code_commit(str(tmp_path)) == head + "+dirty"


def test_summary_table_means_over_seeds(tmp_path):
  table = tmp_path / "fig3.csv"
  for seed, value in ((0, 0.2), (1, 0.4)):
    reproduce.append_row(
      str(table),
      {
        "figure": 3,
        "task": "fetch_push",
        "agent": "laeo",
        "seed": seed,
        "dataset": "d",
        "quality": "medium",
        "dataset_episodes": 10,
        "num_success_examples": 200,
        "num_steps": 5,
        "preset": "laptop",
        "success_any_step": value,
        "success_final_step": 0.0,
        "eval_episodes": 100,
        "wall_s": 1,
        "workdir": "w",
      },
    )
  text = paper_plots.summary_markdown(3, str(table))
  assert "| fetch_push | 0.30 / 0.00 (n=2: 0.20, 0.40) |" in text
  # A longer run of the same cell (--extend) is its own cell, not a third seed.
  row = {**reproduce.read_rows(str(table))[0], "num_steps": 20, "success_any_step": 0.9}
  reproduce.append_row(str(table), row)
  text = paper_plots.summary_markdown(3, str(table))
  assert "| fetch_push [5 steps] | 0.30 / 0.00 (n=2: 0.20, 0.40) |" in text
  assert "| fetch_push [20 steps] | 0.90 / 0.00 (n=1: 0.90) |" in text
  assert paper_plots.plot_figure(3, str(table), str(tmp_path), str(tmp_path)).endswith("fig3.png")


def test_fig4_stability_is_the_mean_absolute_change_between_evaluations(tmp_path):
  rows = []
  for seed, rates in ((0, (0.0, 0.5, 0.25, 0.75)), (1, (0.5, 0.5, 0.5, 0.5))):
    write_evaluations(tmp_path / f"run{seed}", [(1000 * (i + 1), r, 0.0, 50) for i, r in enumerate(rates)])
    rows.append({"task": "fetch_push", "agent": "laeo", "workdir": f"run{seed}", "num_steps": "4000", "commit": "c"})
  assert paper_plots.record_curves(rows, str(tmp_path), str(tmp_path)) == 2
  text = paper_plots.stability_markdown(rows, paper_plots.read_curves(str(tmp_path)))
  # Seed 0: (0.5 + 0.25 + 0.5) / 3, in the second half (steps 2000-4000) (0.25 + 0.5) / 2; seed 1: 0.
  assert "| fetch_push | laeo | 2 | 0.208 ± 0.208 | 0.188 ± 0.188 (n=2) | 4 | 50 |" in text


def test_figures_keep_their_runs_curves_when_the_workdirs_are_gone(tmp_path):
  out = tmp_path / "results"
  out.mkdir()
  table = out / "fig3.csv"
  for seed in (0, 1):
    write_evaluations(tmp_path / f"run{seed}", [(s, 0.1 * seed + s / 8000, 0.0, 50) for s in (0, 2000, 4000, 6000)])
    reproduce.append_row(
      str(table),
      {
        "figure": 3, "task": "fetch_push", "agent": "laeo", "seed": seed, "dataset": "d", "quality": "medium",
        "dataset_episodes": 10, "num_success_examples": 200, "num_steps": 4000, "preset": "laptop",
        "success_any_step": 0.5, "success_final_step": 0.25, "eval_episodes": 100, "wall_s": 1,
        "workdir": f"run{seed}", "commit": "abc",
      },
    )  # fmt: skip
  paper_plots.plot_figure(4, str(table), str(out), str(tmp_path))
  stability = (out / "fig4.md").read_text()
  assert "| fetch_push | laeo | 2 |" in stability
  for seed in (0, 1):
    shutil.rmtree(tmp_path / f"run{seed}")
  # Drawn again on a machine without runs/: the same table, from curves.csv; nothing recorded twice.
  paper_plots.plot_figure(4, str(table), str(out), str(tmp_path))
  assert (out / "fig4.md").read_text() == stability
  assert len(reproduce.read_rows(str(out / "curves.csv"))) == 8
  # The same workdir trained again by another commit is another run, with a curve of its own.
  write_evaluations(tmp_path / "run0", [(3000, 0.9, 0.8, 50)])
  rows = reproduce.read_rows(str(table))
  assert paper_plots.record_curves([{**rows[0], "commit": "new"}], str(out), str(tmp_path)) == 1
  curves = paper_plots.read_curves(str(out))
  assert curves[("run0", "new")] == [(3000, 0.9, 0.8, 50)] and len(curves[("run0", "abc")]) == 4


def test_merge_from_copies_the_rows_and_curves_another_checkout_made_once_and_keeps_its_own(tmp_path, capsys):
  """A sweep in another worktree writes its own table: --merge_from brings its new runs (rows and curves) into this
  one, never a second row of a run this table has, and a folder without the table changes nothing."""
  here, sweep = tmp_path / "here", tmp_path / "sweep"

  def row(seed, success):
    return {
      "figure": 3, "task": "fetch_push", "agent": "laeo", "seed": seed, "dataset": f"data/paper/d{seed}",
      "quality": "medium", "dataset_episodes": 10, "num_success_examples": 200, "num_steps": 4000,
      "preset": "laptop", "success_any_step": success, "success_final_step": 0.0, "eval_episodes": 100,
      "wall_s": 1, "workdir": f"runs/w{seed}", "commit": "abc",
    }  # fmt: skip

  for seed in (0, 1):
    write_evaluations(tmp_path / "elsewhere" / "runs" / f"w{seed}", [(1000, 0.1 * seed, 0.0, 50), (2000, 0.2, 0.1, 50)])
  here.mkdir()
  reproduce.append_row(str(here / "fig3.csv"), row(0, 0.25))
  paper_plots.record_curves([row(0, 0.25)], str(here), str(tmp_path / "elsewhere"))
  sweep.mkdir()
  reproduce.append_row(str(sweep / "fig3.csv"), row(0, 0.75))  # the same run, other numbers: ours stands
  reproduce.append_row(str(sweep / "fig3.csv"), row(1, 0.5))
  paper_plots.record_curves([row(0, 0.75), row(1, 0.5)], str(sweep), str(tmp_path / "elsewhere"))
  merge = ["--figure=3", f"--out_dir={here}", f"--merge_from={sweep}"]

  assert reproduce.main(merge) == 0
  rows = reproduce.read_rows(str(here / "fig3.csv"))
  assert [(r["seed"], r["success_any_step"]) for r in rows] == [("0", "0.25"), ("1", "0.5")]
  curves = paper_plots.read_curves(str(here))
  assert curves[("runs/w1", "abc")] == [(1000, 0.1, 0.0, 50), (2000, 0.2, 0.1, 50)]
  assert len(curves[("runs/w0", "abc")]) == 2
  assert "laeo seed 1" in capsys.readouterr().out and (here / "fig3.png").exists()
  before = [(here / name).read_text() for name in ("fig3.csv", "curves.csv")]
  assert reproduce.main(merge) == 0
  assert [(here / name).read_text() for name in ("fig3.csv", "curves.csv")] == before
  assert "0 rows and 0 curves merged" in capsys.readouterr().out
  assert reproduce.main(["--figure=3", f"--out_dir={here}", f"--merge_from={tmp_path / 'none'}"]) == 1
  assert [(here / name).read_text() for name in ("fig3.csv", "curves.csv")] == before
  reproduce.append_row(str(sweep / "fig3.csv"), row(2, 0.5))
  for flag in ("--dry_run", "--plot_only"):  # neither merges: the parser refuses them beside --merge_from
    with pytest.raises(SystemExit):
      reproduce.main([*merge, flag])
    assert [(here / name).read_text() for name in ("fig3.csv", "curves.csv")] == before


def test_fig4_without_any_curve_refuses_and_keeps_its_files(tmp_path):
  table = tmp_path / "fig3.csv"
  row = {"figure": 3, "task": "fetch_push", "agent": "laeo", "seed": 0, "num_steps": 4000, "workdir": "gone"}
  reproduce.append_row(str(table), row)
  (tmp_path / "fig4.md").write_text("the stability measured when the runs were here\n")
  with pytest.raises(ValueError, match="no run of .* has a recorded curve"):
    paper_plots.plot_figure(4, str(table), str(tmp_path), str(tmp_path))
  assert (tmp_path / "fig4.md").read_text() == "the stability measured when the runs were here\n"
  assert not (tmp_path / "fig4.png").exists()


def test_flatness_compares_the_last_two_quarters_of_each_runs_curve():
  rows = [
    {"task": "t", "agent": "laeo", "seed": "0", "num_steps": "8000", "workdir": "a", "commit": "c"},
    {"task": "t", "agent": "laeo", "seed": "1", "num_steps": "8000", "workdir": "b", "commit": "c"},
    {"task": "t", "agent": "oril", "seed": "0", "num_steps": "8000", "workdir": "none", "commit": "c"},
  ]
  # (4000, 6000]: 0.2, 0.4 over 100 episodes; (6000, 8000]: 0.5 over 100. Step 0 and 4000 fall outside.
  rising = [(0, 0.9, 0.9, 50), (4000, 0.9, 0.9, 50), (5000, 0.2, 0.1, 50), (6000, 0.4, 0.3, 50), (8000, 0.5, 0.5, 100)]
  flat = [(5000, 0.5, 0.5, 50), (6000, 0.5, 0.5, 50), (7000, 0.55, 0.5, 100)]
  text = paper_plots.flatness_markdown(3, rows, {("a", "c"): rising, ("b", "c"): flat})
  two_se = 2 * math.sqrt(0.3 * 0.7 / 100 + 0.5 * 0.5 / 100)
  assert f"| t | laeo | 0 | 8000 | 2 / 1 | 0.30 / 0.20 | 0.50 / 0.50 | +0.20 | {two_se:.2f} | rising |" in text
  assert "| t | laeo | 1 | 8000 | 2 / 1 | 0.50 / 0.50 | 0.55 / 0.50 | +0.05 | 0.14 | flat |" in text
  assert "1 of 3 runs have no recorded curve" in text
  # No run with a curve: the sentence alone, no empty table.
  text = paper_plots.flatness_markdown(3, rows[2:], {("a", "c"): rising})
  assert "1 of 1 runs have no recorded curve" in text and "| task |" not in text
  with pytest.raises(ValueError, match="No evaluation between steps 8000 and 12000"):
    paper_plots.windows(rising, 16000)


def test_result_tables_are_replaced_between_their_markers_only(tmp_path):
  readme = tmp_path / "results.md"
  readme.write_text("intro\n<!-- table:fig3 -->\n| old |\n<!-- end table:fig3 -->\nafter\n")
  assert paper_plots.update_table(str(readme), "fig3", "| new |\n")
  assert readme.read_text() == "intro\n<!-- table:fig3 -->\n| new |\n<!-- end table:fig3 -->\nafter\n"
  assert not paper_plots.update_table(str(readme), "fig5", "| x |")
  assert "| x |" not in readme.read_text()


def test_fig6_splits_its_runs_into_the_success_example_and_dataset_size_sweeps(tmp_path):
  def row(agent, seed, examples, episodes, value):
    return {
      "figure": 6, "task": "fetch_push", "agent": agent, "seed": seed, "dataset": "d", "quality": "medium",
      "dataset_episodes": episodes, "num_success_examples": examples, "num_steps": 5000, "preset": "laptop",
      "success_any_step": value, "success_final_step": value / 2, "eval_episodes": 100, "wall_s": 1, "workdir": "w",
    }  # fmt: skip

  rows = [row("laeo", 0, n, 2000, n / 1000) for n in (1, 10, 100, 200)]
  rows += [row("laeo", 1, 200, 2000, 0.5), row("laeo", 0, 200, 200, 0.05), row("laeo", 0, 200, 20000, 0.9)]
  rows += [row("oril", 0, 10, 2000, 0.3)]
  rows = [{k: str(v) for k, v in r.items()} for r in rows]
  examples = paper_plots.fig6_series(rows, "fetch_push", "examples")
  assert sorted(examples["laeo"]) == [1, 10, 100, 200] and sorted(examples["oril"]) == [10]
  assert [r["seed"] for r in examples["laeo"][200]] == ["0", "1"]
  episodes = paper_plots.fig6_series(rows, "fetch_push", "episodes")
  assert sorted(episodes["laeo"]) == [200, 2000, 20000] and "oril" not in episodes
  assert [float(r["success_any_step"]) for r in episodes["laeo"][20000]] == [0.9]
  table = tmp_path / "fig6.csv"
  with open(table, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  assert os.path.getsize(paper_plots.plot_figure(6, str(table), str(tmp_path), str(tmp_path))) > 0
  assert (
    "| fetch_push (10 ex, 2000 ep) | 0.01 / 0.01 (n=1: 0.01) | 0.30 / 0.15 (n=1: 0.30) |"
    in (tmp_path / "fig6.md").read_text()
  )


def test_runs_with_other_success_example_counts_share_the_default_datasets_episodes(tmp_path, monkeypatch):
  made, calls = set(), []
  monkeypatch.setattr(reproduce.rlds_writer, "is_dataset_dir", lambda path: path in made)
  monkeypatch.setattr(reproduce.rlds_writer, "read_metadata", lambda path: {"path": path})

  def fake_generate(task, quality, episodes, path, seed, num_success_examples, show_progress):
    calls.append(("generate", os.path.basename(path), num_success_examples))
    made.add(path)
    return {
      "env_name": task, "quality": quality, "seed": seed, "num_episodes": episodes, "num_steps": 1, "success_rate": 0.5,
      "success_rate_final_step": 0.5, "num_success_examples": num_success_examples, "seconds": 1.0, "out_dir": path,
    }  # fmt: skip

  def fake_with_success_examples(source, path, num_success_examples):
    calls.append(("redraw", os.path.basename(source), os.path.basename(path), num_success_examples))
    made.add(path)

  monkeypatch.setattr(reproduce.generate, "generate_dataset", fake_generate)
  monkeypatch.setattr(reproduce.generate, "with_success_examples", fake_with_success_examples)
  budget = reproduce.BUDGETS["cpu"]
  for run in reproduce.figure_runs(6, [0], []):
    if run.task == "fetch_push" and run.agent == "laeo" and run.dataset_scale == 1.0:
      path = reproduce.dataset_dir(run, budget)
      reproduce.ensure_dataset(
        path, run, reproduce.dataset_episodes(run, budget), reproduce.episodes_source(run, budget)
      )
  default = os.path.basename(reproduce.dataset_dir(reproduce.Run(6, "fetch_push", "laeo", 0), budget))
  assert calls[0] == ("generate", default, 200)  # Once, for the first run that needs its episodes.
  assert [c[0] for c in calls] == ["generate", "redraw", "redraw", "redraw"][: len(calls)] and len(calls) == 4
  assert sorted(c[3] for c in calls[1:]) == [1, 10, 100] and {c[1] for c in calls[1:]} == {default}


def test_runs_can_be_narrowed_to_cells_and_a_filter_matching_nothing_is_refused(tmp_path, monkeypatch, capsys):
  runs = reproduce.figure_runs(6, [0, 1], [0, 1])
  one = reproduce.select_runs(runs, tasks=["fetch_push_image"], agents=None, success_examples=[1], dataset_scales=None)
  assert [(r.agent, r.seed) for r in one] == [("laeo", 0), ("oril", 0), ("laeo", 1), ("oril", 1)]
  assert {(r.num_success_examples, r.dataset_scale) for r in one} == {(1, 1.0)}
  small = reproduce.select_runs(runs, tasks=["fetch_push"], agents=["oril"], dataset_scales=[0.1, 10])
  assert {(r.dataset_scale, r.num_success_examples, r.seed) for r in small} == {
    (x, 200, s) for x in (0.1, 10.0) for s in (0, 1)
  }
  assert reproduce.select_runs(runs, tasks=None, agents=None) == runs
  with pytest.raises(ValueError, match="--success_examples 5"):
    reproduce.select_runs(runs, success_examples=[1, 5])
  with pytest.raises(ValueError, match="No run"):  # Each value exists, but not together (0.1x has 200 examples).
    reproduce.select_runs(runs, tasks=["fetch_push_image"], success_examples=[1], dataset_scales=[0.1])
  # On the command line: exit 2 with the reason, nothing made.
  monkeypatch.setattr(reproduce, "ROOT", str(tmp_path / "repo"))
  out = tmp_path / "results"
  with pytest.raises(SystemExit) as e:
    reproduce.main(["--figure=3", "--tasks", "fetch_rech", f"--out_dir={out}", "--dry_run"])
  assert e.value.code == 2 and "fetch_rech" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    reproduce.main(["--figure=3", "--success_examples", "1", f"--out_dir={out}"])
  assert not out.exists() and not (tmp_path / "repo").exists()
  assert reproduce.main(["--figure=6", "--success_examples", "1", "--seeds", "2", f"--out_dir={out}", "--dry_run"]) == 0
  plan = capsys.readouterr().out.splitlines()
  assert len(plan) == 1 + 4 and all("seed 2" in line for line in plan[1:])


def test_two_sweeps_at_once_never_train_one_run_together(tmp_path, monkeypatch, capsys):
  # Sweep A trains LAEO seed 0 until sweep B has ended. B passes that run by and trains ORIL's; A, reaching ORIL's
  # run after B wrote its row, does not train it again. Each run is trained once and has one row.
  trained, a_training, b_ended = [], threading.Event(), threading.Event()

  def fake_train(run, budget, dataset, final_episodes, extra):
    trained.append(run.agent)
    if run.agent == "laeo":
      a_training.set()
      assert b_ended.wait(20)
    return _outcome(budget, final_episodes, f"runs/{run.agent}")

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  _fake_dataset(monkeypatch)
  args = ["--figure=3", "--tasks", "fetch_reach", "--agents", "laeo", "oril", "--seeds", "0", f"--out_dir={tmp_path}"]
  status_a = []
  sweep_a = threading.Thread(target=lambda: status_a.append(reproduce.main(args)), name="A")
  sweep_a.start()
  try:
    assert a_training.wait(20)
    assert reproduce.main(args + ["--dry_run"]) == 0
    assert (
      "busy       fetch_reach laeo seed 0, 5000 steps, fetch_reach_medium_2000ep_200ex_seed0: another sweep is training it now"
      in capsys.readouterr().out
    )
    assert reproduce.main(args) == 0
    assert "fetch_reach laeo seed 0: another sweep is training it now; not here" in capsys.readouterr().out
  finally:
    b_ended.set()
    sweep_a.join(20)
  assert status_a == [0]
  assert "fetch_reach oril seed 0: another sweep has made its row" in capsys.readouterr().out
  assert trained == ["laeo", "oril"]  # ORIL's by B, while A trained LAEO's.
  rows = reproduce.read_rows(str(tmp_path / "fig3.csv"))
  assert sorted(r["agent"] for r in rows) == ["laeo", "oril"]
  # Claims end with their runs: a later sweep finds both made and trains nothing.
  assert reproduce.main(args) == 0 and len(trained) == 2


def test_two_sweeps_needing_one_dataset_generate_it_once(tmp_path, monkeypatch):
  made, generated = set(), []
  monkeypatch.setattr(reproduce.rlds_writer, "is_dataset_dir", lambda path: path in made)
  monkeypatch.setattr(reproduce.rlds_writer, "read_metadata", lambda path: {"path": path})

  def slow_generate(task, quality, episodes, path, seed, num_success_examples, show_progress):
    generated.append(path)
    time.sleep(0.5)  # Long enough for the other sweep to ask for the dataset meanwhile.
    made.add(path)
    return {
      "env_name": task, "quality": quality, "seed": seed, "num_episodes": episodes, "num_steps": 1, "success_rate": 0.5,
      "success_rate_final_step": 0.5, "num_success_examples": num_success_examples, "seconds": 1.0, "out_dir": path,
    }  # fmt: skip

  monkeypatch.setattr(reproduce.generate, "generate_dataset", slow_generate)
  run = reproduce.Run(3, "fetch_reach", "laeo", 0)
  path = reproduce.dataset_dir(run, reproduce.BUDGETS["cpu"])
  metas = []
  sweeps = [threading.Thread(target=lambda: metas.append(reproduce.ensure_dataset(path, run, 10))) for _ in range(2)]
  for sweep in sweeps:
    sweep.start()
  for sweep in sweeps:
    sweep.join(20)
  assert generated == [path] and metas == [{"path": path}] * 2


def test_a_row_another_sweep_copied_meanwhile_is_not_copied_twice(tmp_path, monkeypatch):
  # Sweep A trains Fig. 6's 100-example cell while sweep B passes it by and copies the 200-example cell from Fig. 3;
  # A, reaching that cell later with the tables it read at its start, must not copy it again.
  budget = reproduce.BUDGETS["cpu"]
  reproduce.append_row(str(tmp_path / "fig3.csv"), _fig3_push_image_row(budget))
  a_training, b_ended = threading.Event(), threading.Event()

  def fake_train(run, budget, dataset, final_episodes, extra):
    a_training.set()
    assert b_ended.wait(20)
    return _outcome(budget, final_episodes, "runs/new", num_steps=reproduce.num_steps_of(run, budget))

  monkeypatch.setattr(reproduce, "train_and_evaluate", fake_train)
  monkeypatch.setattr(
    reproduce,
    "ensure_dataset",
    lambda path, run, episodes, source=None: {"num_episodes": episodes, "num_success_examples": 100},
  )
  args = ["--figure=6", "--tasks", "fetch_push_image", "--agents", "laeo", "--seeds", "0"]
  args += ["--success_examples", "100", "200", "--dataset_scales", "1", f"--out_dir={tmp_path}"]
  status_a = []
  sweep_a = threading.Thread(target=lambda: status_a.append(reproduce.main(args)))
  sweep_a.start()
  try:
    assert a_training.wait(20)
    assert reproduce.main(args) == 0
    assert [r["commit"] for r in reproduce.read_rows(str(tmp_path / "fig6.csv"))] == ["f1g3"]  # B copied it.
  finally:
    b_ended.set()
    sweep_a.join(20)
  assert status_a == [0]
  rows = reproduce.read_rows(str(tmp_path / "fig6.csv"))
  assert sorted((r["num_success_examples"], r["commit"]) for r in rows) == [("100", "c0ffee"), ("200", "f1g3")]


def test_a_claim_held_for_a_moment_by_a_dry_run_is_waited_out(tmp_path):
  run = reproduce.Run(3, "fetch_reach", "laeo", 0)
  budget = reproduce.BUDGETS["cpu"]
  dataset = reproduce.dataset_dir(run, budget)
  workdir = reproduce.workdir_of(run, budget, dataset, [])
  held = reproduce.try_lock(reproduce.log_path_of(dataset, workdir), wait=False)  # Another sweep's --dry_run asks.
  threading.Timer(0.1, os.close, [held]).start()
  claim = reproduce.claim_run(dataset, workdir)
  assert claim is not None
  assert reproduce.training_elsewhere(dataset, workdir) and reproduce.claim_run(dataset, workdir) is None
  os.close(claim)
  assert not reproduce.training_elsewhere(dataset, workdir)
