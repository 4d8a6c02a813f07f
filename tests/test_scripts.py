"""Every script in scripts/ still starts: it answers --help (a script that no longer imports fails here); and every
one but reproduce.py and paper_plots.py (tests/test_reproduce.py) and row_code.py (tests/test_row_code.py) does its
real work on tiny arguments, writing into a temporary --out whose content is checked."""

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

from scripts import diagnose_image_critic as diagnose
from tests.helpers import make_tiny_run_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "scripts")) if f.endswith(".py") and f != "__init__.py")
TINY_LAEO = ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "batch_size=32"]
TRAINED_STEPS = 20


def run_script(script, *args, timeout=300, ok=True):
  """`python scripts/<script> args...` from the repository root; the completed process (its exit status checked:
  0, or anything else when not `ok`)."""
  proc = subprocess.run(
    [sys.executable, os.path.join("scripts", script), *map(str, args)],
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=ROOT,
    env={**os.environ, "MUJOCO_GL": "egl"},
  )
  assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_help(script):
  proc = run_script(script, "--help")
  assert "usage:" in proc.stdout.lower(), proc.stdout[-2000:]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
  """(run config, training state) of a tiny LAEO run on fetch_reach trained TRAINED_STEPS steps, its workdir
  holding the run config and the checkpoint of that step, as a launch's learner writes them (trained in this
  process by in_process.make_learner, on the episodes a launch's dataset loader reads)."""
  from data_pipeline import generate

  tmp = tmp_path_factory.mktemp("trained")
  data = str(tmp / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 12, data, seed=0, num_success_examples=20, show_progress=False)
  config = make_tiny_run_config(data, tmp / "run", agent="laeo", config=TINY_LAEO, num_steps=TRAINED_STEPS)
  return config, train_and_checkpoint(config, TRAINED_STEPS)


def train_and_checkpoint(config, steps):
  """Trains `config`'s run `steps` steps in this process (in_process.make_learner, on the episodes a launch's
  dataset loader reads) and saves that step's checkpoint in its workdir, as a launch's learner does; returns the
  training state."""
  from data_pipeline import rlds_reader
  from launch import checkpointing
  from launch import in_process

  episodes = rlds_reader.iter_episodes(config.dataset_dirs, scaling=config.scaling(), **config.read_options())
  _, learner = in_process.make_learner(
    config.make_builder(),
    *config.specs(),
    list(episodes),
    config.load_success_examples(),
    config.seed,
    config.observation_stats,
  )
  learner.step(steps)
  state = learner.save()
  checkpointing.for_run(config.workdir).save(steps, state, {"learner_steps": steps})
  return state


def test_benchmark_throughput_writes_the_update_rates_and_the_peak(tmp_path):
  # The launches (tens of seconds each even when tiny, and their datasets written under data/bench/) are skipped;
  # the update alone is measured for BC on state observations, 1 and 2 updates per call.
  out = tmp_path / "bench" / "throughput"
  doc = tmp_path / "performance.md"
  doc.write_text("# Doc\n<!-- table:throughput -->\nold\n<!-- end table:throughput -->\nafter\n")
  run_script(
    "benchmark_throughput.py",
    "--agents=bc",
    "--observations=state",
    "--fused=2",
    "--seconds=0.2",
    "--skip_launch",
    f"--out={out}",
    f"--doc={doc}",
  )
  result = json.loads((tmp_path / "bench" / "throughput.json").read_text())
  assert result["commit"] and result["date"]
  peaks = result["matmul_peaks_gflops"]
  assert len(peaks) == 2 and min(peaks) > 0 and result["matmul_peak_gflops"] == max(peaks)
  assert result["launch"] == [] and result["rss"] == []
  (row,) = result["update"]
  assert (row["agent"], row["observation"], row["batch_size"], row["config"]) == ("bc", "state", 256, [])
  assert 0.01 < row["gflop_per_update"] < 10
  assert row["steps_per_s_x1"] > 1 and row["steps_per_s_x2"] > 1
  best = max(row["steps_per_s_x1"], row["steps_per_s_x2"])
  assert row["percent_of_peak"] == round(100 * row["gflop_per_update"] * best / result["matmul_peak_gflops"], 1)
  table = (tmp_path / "bench" / "throughput.md").read_text()
  assert table.startswith(f"Run on {result['date']} at commit {result['commit']}.")
  assert f"| bc | state | 256 | - | {row['gflop_per_update']} | {row['steps_per_s_x1']} |" in table
  # The document quotes the run's tables between its markers, the rest kept.
  assert (
    doc.read_text() == f"# Doc\n<!-- table:throughput -->\n{table.rstrip()}\n<!-- end table:throughput -->\nafter\n"
  )


def test_benchmark_throughput_measures_the_preset_asked_for_and_records_the_commit_given(tmp_path):
  # What scripts/gpu_check.sh runs on a machine whose copy of the tree has no .git: the paper preset, the commit
  # given; rows saved as they land (a .partial.json) and that file gone once the whole run is written.
  out = tmp_path / "throughput_paper"
  run_script(
    "benchmark_throughput.py",
    "--preset=paper",
    "--commit=abc1234567",
    "--agents=bc",
    "--observations=state",
    "--fused=1",
    "--seconds=0.2",
    "--skip_launch",
    f"--out={out}",
  )
  result = json.loads((tmp_path / "throughput_paper.json").read_text())
  assert (result["commit"], result["preset"]) == ("abc1234567", "paper")
  (row,) = result["update"]
  assert (row["agent"], row["preset"], row["batch_size"]) == ("bc", "paper", 1024)
  assert 1 < row["gflop_per_update"] < 20  # 1024-wide layers at batch 1024 (the laptop's: ~0.1).
  assert not (tmp_path / "throughput_paper.partial.json").exists()
  table = (tmp_path / "throughput_paper.md").read_text()
  assert table.startswith(f"Run on {result['date']} at commit abc1234567.")
  assert "The update alone (paper preset;" in table


def test_diagnose_image_critic_appends_a_row_per_check(tmp_path):
  from data_pipeline import generate

  # Ten episodes: the script holds out a tenth of them (one) for its contrastive accuracy.
  data = str(tmp_path / "fetch_reach_image_tiny")
  generate.generate_dataset(
    "fetch_reach_image", "medium", 10, data, seed=0, num_success_examples=20, show_progress=False
  )
  out = tmp_path / "diagnostic" / "critic.csv"
  variant = "laptop:hidden_sizes=(32,),repr_dim=8,policy_hidden_sizes=(32,),torso_channels=(4,4,4)"
  common = ["--env=fetch_reach_image", f"--dataset_dir={data}", "--batch_size=8", "--probe_episodes=1"]
  run_script(
    "diagnose_image_critic.py", *common, f"--variants={variant}", "--num_steps=1", "--check_every=1", f"--out={out}"
  )
  with open(out) as f:
    rows = list(csv.DictReader(f))
  assert [(r["variant"], r["step"]) for r in rows] == [(variant, "0"), (variant, "1")]
  for row in rows:
    assert row["env"] == "fetch_reach_image" and row["dataset"] == "fetch_reach_image_tiny"
    assert row["batch_size"] == "8" and float(row["heldout_top1_chance"]) == 0.125
    assert int(row["feature_dim"]) > 0
    assert 0 <= float(row["heldout_top1"]) <= 1 and 0 <= float(row["heldout_balanced_binary_acc"]) <= 1
    assert -1 <= float(row["grad_expert_cosine"]) <= 1 and 0 <= float(row["grad_state_spread"]) <= 1
    assert all(np.isfinite(float(row[f"r2_gripper_{axis}"])) for axis in "xyz") and row["r2_block_x"] == ""
    assert row["agent"] == "laeo" and row["commit"] and row["policy_expert_cosine"] == ""  # Checkpoints only.
  assert rows[0]["train_steps_per_s"] == "" and float(rows[1]["train_steps_per_s"]) > 0


def test_diagnose_image_critic_measures_a_finished_runs_checkpoint(tmp_path):
  from data_pipeline import generate

  data = str(tmp_path / "fetch_reach_image_tiny")
  generate.generate_dataset("fetch_reach_image", "medium", 4, data, seed=0, num_success_examples=8, show_progress=False)
  tiny = ["hidden_sizes=(32,)", "repr_dim=8", "policy_hidden_sizes=(32,)", "torso_channels=(4,4,4)", "batch_size=8"]
  config = make_tiny_run_config(
    data, tmp_path / "run", agent="laeo", env="fetch_reach_image", dataset_episodes=4, config=tiny, seed=3
  )
  train_and_checkpoint(config, 3)
  out = tmp_path / "critic.csv"
  common = ["--episodes=2", "--probe_episodes=1", "--batch_size=8", f"--out={out}"]
  run_script("diagnose_image_critic.py", f"--workdirs={config.workdir}", *common)
  (row,) = list(csv.DictReader(open(out)))
  assert row["variant"] == f"checkpoint:{os.path.relpath(config.workdir, ROOT)}"
  assert (row["env"], row["dataset"], row["seed"], row["step"]) == (
    "fetch_reach_image",
    "fetch_reach_image_tiny",
    "3",
    "3",
  )
  assert -1 <= float(row["grad_expert_cosine"]) <= 1 and float(row["heldout_top1_chance"]) == 0.125
  assert row["train_steps_per_s"] == "" and row["commit"] and row["agent"] == "laeo"
  assert all(-1 <= float(row[c]) <= 1 for c in ("policy_expert_cosine", "policy_behaviour_cosine"))
  assert row["reward_mean"] == ""
  # The same checkpoint's Q built from each success example alone, and from all: with the run's own examples as the
  # pool, the whole pool's Q is the run's own, and it orders the probe as the diagnostic's Q (LAEO's q_values) does.
  spread = tmp_path / "spread.csv"
  png = tmp_path / "spread.png"
  pool = ["--probe_episodes=1", f"--examples={data}", f"--out={spread}", f"--png={png}"]
  run_script("success_example_spread.py", f"--workdirs={config.workdir}", *pool)
  (summary,) = list(csv.DictReader(open(spread)))
  assert (summary["num_own_examples"], summary["num_examples"], summary["step"]) == ("8", "8", "3")
  assert summary["q_goal_own"] == summary["q_goal_all"] == row["q_goal_spearman"]
  # Q's action gradient by hand (softmax-weighted J^T psi) against the diagnostic's autodiff of LAEO's q_values.
  assert abs(float(summary["grad_own"]) - float(row["grad_expert_cosine"])) <= 0.002
  each = list(csv.DictReader(open(tmp_path / "spread_each.csv")))
  assert [int(r["example"]) for r in each] == list(range(8))
  singles = sorted(float(r["q_goal_spearman"]) for r in each)
  assert (float(summary["single_min"]), float(summary["single_max"])) == (singles[0], singles[-1])
  assert png.stat().st_size > 0 and summary["subset10_median"] == ""  # Only 8 examples in the pool.
  # A pool of another task's examples, or a drawing of vectors, is refused with the reason and no row.
  state = str(tmp_path / "fetch_reach_tiny")
  generate.generate_dataset("fetch_reach", "medium", 2, state, seed=0, num_success_examples=4, show_progress=False)
  for extra, reason in (([], "the pool's (10,)"), ([f"--png={png}"], "--png draws images")):
    refused = ["--probe_episodes=1", f"--examples={state}", f"--out={spread}", *extra]
    proc = run_script("success_example_spread.py", f"--workdirs={config.workdir}", *refused, ok=False)
    assert reason in proc.stderr, proc.stderr[-2000:]
  assert len(list(csv.DictReader(open(spread)))) == 1
  # ORIL: its TD critic's gradient and its classifier; BC: what its policy follows. One header for all rows.
  small = [f"{n}_hidden_sizes=(32,)" for n in ("policy", "critic", "classifier")] + tiny[3:]
  oril = make_tiny_run_config(
    data, tmp_path / "oril", agent="oril", env="fetch_reach_image", dataset_episodes=4, config=small
  )
  train_and_checkpoint(oril, 2)
  bc = make_tiny_run_config(data, tmp_path / "bc", env="fetch_reach_image", dataset_episodes=4)
  train_and_checkpoint(bc, 2)
  # A list whose second run is not LAEO's is refused before its first, good, run writes a row.
  both = ["--workdirs", config.workdir, oril.workdir]
  proc = run_script("success_example_spread.py", *both, *pool[:3], ok=False)
  assert "a oril run" in proc.stderr and len(list(csv.DictReader(open(spread)))) == 1, proc.stderr[-2000:]
  run_script("diagnose_image_critic.py", "--workdirs", oril.workdir, bc.workdir, *common)
  rows = list(csv.DictReader(open(out)))
  assert [r["agent"] for r in rows] == ["laeo", "oril", "bc"] and list(rows[0]) == list(diagnose.COLUMNS)
  assert rows[1]["heldout_top1"] == "" and -1 <= float(rows[1]["grad_expert_cosine"]) <= 1
  assert all(-1 <= float(rows[i]["q_time_spearman"]) <= 1 for i in (0, 1)) and rows[2]["q_time_spearman"] == ""
  assert 0 < float(rows[1]["reward_mean"]) < 1 and -1 <= float(rows[1]["reward_goal_spearman"]) <= 1
  assert rows[2]["grad_expert_cosine"] == rows[2]["reward_mean"] == "" and rows[2]["policy_expert_cosine"]
  assert all(float(rows[i]["actor_q_shift"]) >= 0 and 0 <= float(rows[i]["policy_action_norm"]) <= 2 for i in (0, 1))
  assert rows[2]["actor_q_shift"] == ""  # BC has no Q-term.
  assert rows[1]["behaviour_expert_cosine"] == rows[2]["behaviour_expert_cosine"]  # The same probe.


def test_actor_q_shift_is_where_td3bc_actor_loss_is_least_by_hand():
  # Q at the policy's actions 1, -3 and 2: mean |Q| = 2, so with alpha 2.5 the Q-term's weight is 1.25. A frame's
  # loss -1.25 * g . a + |a - a_data|^2, minimised numerically, puts a at shifts of length 0.625 * |g| = 3.125 and
  # 0.5 from a_data on the two moving frames (the third, not moving, is left out of the median).
  import scipy.optimize

  grads = np.array([[3.0, 4.0, 0.0, 0.0], [0.0, 0.8, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
  q = np.array([1.0, -3.0, 2.0])
  actions = np.array([[0.6, 0.8, 0.0, 0.0], [0.0, 0.0, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0]])
  measures = diagnose.td3bc_shift_measures(grads, q, actions, 2.5, np.array([True, True, False]))
  a_data = np.array([0.1, -0.2, 0.3, 0.0])
  shifts = []
  for g in grads[:2]:
    best = scipy.optimize.minimize(lambda a: -1.25 * g @ a + np.sum((a - a_data) ** 2), a_data, tol=1e-12).x
    shifts.append(np.linalg.norm(best - a_data))
  assert np.allclose(shifts, [3.125, 0.5], atol=1e-5)
  assert measures == {"actor_q_shift": round(float(np.median(shifts)), 4), "policy_action_norm": 0.75}


def test_laeo_actor_q_shift_is_where_its_policy_loss_is_least_to_first_order():
  # One action dimension, sigma 0.5, lambda 0.6, a small gradient g of Q at the mean action: the shift
  # (1 - lambda) / lambda * sigma^2 * (1 - a^2)^2 * g, against the action at the argmin over mu of the loss
  # -(1 - lambda) * g * tanh(mu) + lambda * (mu - atanh a_data)^2 / (2 sigma^2), found numerically.
  import scipy.optimize

  lam, sigma, g = 0.6, 0.5, 0.02
  for a_data in (0.0, 0.5, -0.8):
    u_data = np.arctanh(a_data)
    loss = lambda mu: -(1 - lam) * g * np.tanh(mu) + lam * (mu - u_data) ** 2 / (2 * sigma**2)
    best = scipy.optimize.minimize_scalar(loss, bracket=(u_data - 1, u_data + 1), tol=1e-12).x
    measures = diagnose.laeo_shift_measures(
      np.array([[g]]), np.array([[u_data]]), np.array([[np.log(sigma)]]), lam, np.array([True])
    )
    assert abs(measures["actor_q_shift"] - abs(np.tanh(best) - a_data)) < 1e-4, (a_data, measures, best)
    assert measures["policy_action_norm"] == round(abs(a_data), 3)
  assert diagnose.laeo_shift_measures(np.ones((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), 0.0, np.array([True])) == {}


def test_classifier_measures_rank_the_logits_against_the_goal_by_hand():
  probe = diagnose.Probe(
    images=None,
    positions=None,
    actions=None,
    expert=None,
    goal_distance=np.array([0.3, 0.2, 0.1, 0.0]),
    solved=np.array([False, False, True, True]),
    time=np.array([0, 1, 0, 1]),
  )
  # Logits rise as the goal nears, except the first two swapped: Spearman 1 - 6 * 2 / (4 * 15) = 0.8.
  measures = diagnose.reward_measures(np.array([1.0, 0.0, 2.0, 3.0]), probe)
  assert measures["reward_goal_spearman"] == 0.8 and measures["reward_success_auc"] == 1.0
  reward = 1 / (1 + np.exp(-np.array([1.0, 0.0, 2.0, 3.0])))
  assert measures["reward_mean"] == round(float(np.mean(reward)), 3)
  assert measures["reward_solved_share"] == round(float(reward[2:].sum() / reward.sum()), 3) == 0.598
  assert measures["solved_share"] == 0.5
  # Ranked against closeness, yet all the reward on a solved frame: ranks miss a dominant tail.
  tail = diagnose.reward_measures(np.array([-30.0, -31.0, -3.0, -40.0]), probe)
  assert tail["reward_goal_spearman"] == -0.4 and tail["reward_solved_share"] == 1.0
  # Solved frames ranked below half of the unsolved ones: AUC 0.5; ties count half.
  assert diagnose.reward_measures(np.array([1.0, 3.0, 2.0, 2.0]), probe)["reward_success_auc"] == 0.5
  assert diagnose.reward_measures(np.array([0.0, 0.0, 0.0, 0.0]), probe)["reward_success_auc"] == 0.5
  # Cosines of the movement part only (the gripper component, last, is left out), over the chosen frames.
  a, b = np.array([[1.0, 0, 0, 9], [0, 1, 0, 0]]), np.array([[1.0, 1, 0, -9], [0, -1, 0, 0]])
  assert diagnose.mean_cosine(a, b, np.array([True, True])) == round((0.5**0.5 - 1) / 2, 3)
  assert diagnose.mean_cosine(a, b, np.array([True, False])) == 0.707
  # Q by time and by closeness: times tie in pairs (mean ranks 1.5, 3.5: 2 / sqrt(5)); a constant Q orders nothing.
  values = diagnose.value_measures(np.array([0.0, 5.0, 1.0, 6.0]), probe)
  assert values == {"q_goal_spearman": 0.8, "q_time_spearman": 0.894, "time_goal_spearman": 0.447}
  assert np.isnan(diagnose.value_measures(np.zeros(4), probe)["q_time_spearman"])
  no_success = probe._replace(solved=np.zeros(4, bool))
  assert diagnose.reward_measures(np.array([1.0, 0.0, 2.0, 3.0]), no_success)["reward_success_auc"] == ""


def test_success_example_spread_orders_by_each_example_and_by_their_log_mean_exp_by_hand():
  import jax
  import jax.numpy as jnp

  from agents.common import losses
  from scripts import success_example_spread as spread

  probe = diagnose.Probe(None, None, None, None, np.array([0.3, 0.2, 0.1, 0.0]), np.zeros(4, bool), np.arange(4))
  # [twins, frames, examples]: example 0 rises as the goal nears, example 1 falls. The second twin is reversed but
  # larger, so the twins' minimum is the first twin everywhere.
  first = np.array([[0.0, 1.5], [1.0, 1.0], [2.0, 0.5], [3.0, 0.0]])
  logits = np.stack([first, 10.0 - first])
  assert spread.q_closeness(logits[:, :, [0]], probe) == 1.0
  assert spread.q_closeness(logits[:, :, [1]], probe) == -1.0
  # log-mean-exp per frame: 1.01, 1.0, 1.51, 2.35 (the first two swapped): Spearman 1 - 6 * 2 / (4 * 15) = 0.8.
  assert spread.q_closeness(logits, probe) == 0.8
  # Q's action gradient: phi linear in the action (phi_k = W_k a), so J = W_k; against autodiff of Q itself.
  rng = np.random.default_rng(0)
  w, psi, actions = rng.normal(size=(2, 3, 2)), rng.normal(size=(2, 2, 3)), rng.normal(size=(4, 2))
  jacobian = np.broadcast_to(w, (4, 2, 3, 2))
  outputs = spread.CriticOutputs(np.einsum("kra,na,kmr->knm", w, actions, psi), jacobian, psi)
  q = lambda a: jnp.min(losses.log_mean_exp(jnp.einsum("kra,a,kmr->km", w, a, psi), -1))
  expected = np.stack([jax.grad(q)(a) for a in actions])
  np.testing.assert_allclose(spread.action_gradients(outputs), expected, rtol=1e-5)
  assert spread.gradient_measures(outputs, probe._replace(expert=np.ones((4, 2))))[1] == float(
    f"{np.median(np.linalg.norm(expected, axis=-1)):.3g}"
  )
  # Subsets: of both examples, always the pool's 0.8; of one, one of the single examples' values.
  outputs = spread.CriticOutputs(logits, np.zeros((4, 2, 1, 4)), np.zeros((2, 2, 1)))
  moving = probe._replace(expert=np.ones((4, 4)))
  assert list(spread.subset_measures(outputs, moving, 2, draws=3)[:, 0]) == [0.8] * 3
  assert set(spread.subset_measures(outputs, moving, 1, draws=20)[:, 0]) == {1.0, -1.0}


def test_measure_expert_robustness_writes_the_clean_controller_success(tmp_path):
  out = tmp_path / "expert" / "push_expert"
  run_script(
    "measure_expert_robustness.py",
    "--tasks=fetch_reach",
    "--sigmas",
    "0",
    "0.01",
    "--episodes=2",
    "--samples=2",
    f"--out={out}",
  )
  rows = json.loads((tmp_path / "expert" / "push_expert.json").read_text())
  assert [(r["task"], r["sigma_m"], r["episodes"], r["samples"]) for r in rows] == [
    ("fetch_reach", 0.0, 2, 1),
    ("fetch_reach", 0.01, 2, 2),
  ]
  assert rows[0]["success_any_step"] == 1.0  # The clean reach controller, without noise, always reaches.
  for r in rows:
    assert 0 <= r["success_final_step"] <= r["success_any_step"] <= 1 and r["commit"]
    assert r["mean_abs_action_after_success"] is None or 0 <= r["mean_abs_action_after_success"] <= 1
  table = (tmp_path / "expert" / "push_expert.md").read_text().splitlines()
  assert table[-2].startswith("| fetch_reach | 0 | 2 | 1.00 / ") and table[-1].startswith("| fetch_reach | 1 | 2 |")


def test_trace_leaving_writes_the_summary_and_per_step_traces_of_a_checkpoint(trained_run, tmp_path):
  config, _ = trained_run
  out = tmp_path / "leaving"
  # Seed 0: the tiny policy's first episode passes through the goal, so the steps taken at success are summarised.
  run_script("trace_leaving.py", f"--workdir={config.workdir}", "--episodes=2", "--seed=0", f"--out={out}")
  written = json.loads((out / "fetch_reach_run.json").read_text())
  summary, episodes = written["summary"], written["episodes"]
  assert (summary["env"], summary["agent"], summary["learner_steps"]) == ("fetch_reach", "laeo", TRAINED_STEPS)
  assert summary["episodes"] == 2 and [len(steps) for steps in episodes] == [50, 50]  # fetch_reach's horizon.
  for steps in episodes:
    for step in steps:
      assert set(step) == {"distance", "to_goal", "action", "hand_speed", "success_after"}
      assert 0 <= step["distance"] < 1 and len(step["to_goal"]) == 3 and len(step["action"]) == 4
      assert all(-1 <= a <= 1 for a in step["action"]) and 0 <= step["hand_speed"] < 0.5
  flags = np.array([[s["success_after"] for s in steps] for steps in episodes])
  assert summary["success_any_step"] == flags.any(axis=1).mean()
  assert summary["success_final_step"] == flags[:, -1].mean()
  leavers = np.flatnonzero(flags.any(axis=1) & ~flags[:, -1])
  assert summary["leavers"] == len(leavers)
  assert summary["leavers_first_success_step"] == [int(np.argmax(flags[i])) for i in leavers]
  assert summary["leavers_steps_at_goal"] == [int(flags[i].sum()) for i in leavers]
  assert summary["data_successful_steps"] > 0 and 0 < summary["data_at_success_mean_abs_action"] <= 1
  assert summary["success_examples_hand_speed"] >= 0
  # Steps taken while the task held: the policy's actions there and the critic's preferences (LAEO).
  assert flags[:, :-1].any(), "no episode reached the goal before its end: pick a --seed where one does"
  assert 0 < summary["policy_at_success_mean_abs_action"] <= 1 and summary["policy_at_success_hand_speed"] >= 0
  assert -1 <= summary["policy_at_success_action_goal_cosine"] <= 1
  assert 0 <= summary["q_prefers_policy_over_still"] <= 1 and 0 <= summary["q_prefers_half_over_still"] <= 1
  assert np.isfinite(summary["q_policy_minus_still"]) and summary["q_spread_over_success_states"] >= 0


def test_tune_checkpoints_measures_every_checkpoint_and_keeps_other_tasks(tmp_path):
  from data_pipeline import scripted

  out = tmp_path / "tuning" / "checkpoint_tuning.json"
  out.parent.mkdir()
  out.write_text(json.dumps({"fetch_push": {"task": "fetch_push", "kept": True}}))
  run_script("tune_checkpoints.py", "--tasks=fetch_reach", "--episodes=2", "--seed=1000", f"--out={out}")
  results = json.loads(out.read_text())
  assert results["fetch_push"] == {"task": "fetch_push", "kept": True}  # Updated in place: other tasks stay.
  reach = results["fetch_reach"]
  assert (reach["task"], reach["episodes_per_checkpoint"], reach["seed"]) == ("fetch_reach", 2, 1000)
  assert [c["competence"] for c in reach["checkpoints"]] == list(scripted.CHECKPOINTS)
  rates = [c["success_rate"] for c in reach["checkpoints"]]
  assert all(r in (0.0, 0.5, 1.0) for r in rates) and rates[-1] == 1.0  # The full-competence checkpoint reaches.
  assert all(0 <= c["success_rate_final_step"] <= c["success_rate"] for c in reach["checkpoints"])
  assert set(reach["beta"]) == {"medium", "low"} and reach["beta"]["low"] < reach["beta"]["medium"]
  if min(rates) < 0.10 and max(rates) > 0.475:  # Both targets within reach of a mixture: the betas hit them.
    assert reach["predicted_success_rate"]["medium"] == pytest.approx(0.475, abs=0.01)
    assert reach["predicted_success_rate"]["low"] == pytest.approx(0.10, abs=0.01)


def test_convert_pickle_checkpoints_makes_a_trained_run_loadable_again(trained_run, tmp_path):
  from launch import checkpointing
  from launch.policy import load_policy

  config, state = trained_run
  workdir = tmp_path / "old_run"
  (workdir / "checkpoints").mkdir(parents=True)
  shutil.copy(os.path.join(config.workdir, "run_config.json"), workdir)
  # The pickle format of laeo's checkpoints before Orbax.
  with open(workdir / "checkpoints" / f"ckpt_{TRAINED_STEPS:010d}.pkl", "wb") as f:
    pickle.dump({"step": TRAINED_STEPS, "learner": state, "counts": {"learner_steps": float(TRAINED_STEPS)}}, f)
  proc = run_script("convert_pickle_checkpoints.py", f"--workdir={workdir}")
  assert f"ckpt_{TRAINED_STEPS:010d}.pkl -> " in proc.stdout
  assert os.listdir(workdir / "checkpoints_pickle") == [f"ckpt_{TRAINED_STEPS:010d}.pkl"]
  assert checkpointing.for_run(str(workdir)).latest()["counts"] == {"learner_steps": float(TRAINED_STEPS)}
  converted, original = load_policy(str(workdir)), load_policy(config.workdir)
  assert converted.step == TRAINED_STEPS
  observations = config.load_success_examples()[:8]
  np.testing.assert_array_equal(converted(observations), original(observations))
