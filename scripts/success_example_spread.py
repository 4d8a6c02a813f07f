"""How much LAEO's Q depends on WHICH success examples it is given (not a test).

LAEO's critic is trained by the contrastive loss alone; the success examples enter only Q(s, a) = log-mean-exp over
the examples s* of phi(s, a) . psi(s*), which the policy climbs. So one trained critic can be asked, without
training again, how well Q orders states by closeness to the goal with any set of examples:

  python scripts/success_example_spread.py --examples data/paper/fetch_push_image_medium_1000ep_200ex_seed0_ctl2 \
      --workdirs runs/paper/fig6/fetch_push_image_medium_1000ep_1ex_seed0_ctl2/laeo_laptop_40000steps_seed{0,1,2}

For each run's latest checkpoint, on the probe frames of scripts/diagnose_image_critic.py (rollouts of the medium
checkpoint mixture; Q at the action taken, the twins' minimum), the Spearman correlation of Q with closeness to the
goal when Q uses: the run's own examples; all of --examples; each of --examples alone (a draw of one example); and
random subsets of 10 and 100 of them (the median over 20 draws each). Beside each, what the policy climbs: the
mean cosine of Q's action gradient with the clean controller's movement (the diagnostic's grad_expert_cosine), and
the gradient's size (median |grad_a Q| over the frames) with the own examples, the pool and one example.
One row per run goes to results/success_example_spread.csv (the single-example correlations' spread), one row per
run and example to results/success_example_spread_each.csv, and --png shows the last run's own examples (titled
with the runs' mean own correlation: give it runs of one example set) beside the --examples that order the frames
worst and best, with their correlations (the mean over the runs).
"""

import argparse
import os
import sys
from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from agents.common import learner as learner_lib  # noqa: E402
from agents.common import losses  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch import checkpointing  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402
from scripts import diagnose_image_critic as diagnose  # noqa: E402
from scripts import reproduce  # noqa: E402

OUT = os.path.join(ROOT, "results", "success_example_spread.csv")
COLUMNS = (
  *("workdir", "env", "seed", "step", "num_own_examples", "num_examples", "q_goal_own", "q_goal_all"),
  *("single_min", "single_p10", "single_p25", "single_median", "single_p75", "single_p90", "single_max"),
  *("single_below_own", "subset10_median", "subset100_median"),
  *("grad_own", "grad_all", "grad_single_median", "grad_subset10_median", "grad_subset100_median"),
  *("grad_size_own", "grad_size_all", "grad_size_single_median", "commit"),
)
SUBSET_SIZES, SUBSET_DRAWS = (10, 100), 20  # Fig. 6's example counts between 1 and the whole pool.
EACH_COLUMNS = ("workdir", "seed", "step", "example", "q_goal_spearman", "grad_expert_cosine", "commit")


class CriticOutputs(NamedTuple):
  """A critic at the probe's frames and actions against a set of examples: logits phi(s, a) . psi(s*) [2 twins,
  frames, examples], the Jacobian of phi with respect to the action [frames, 2, R, A], and psi(s*) [2, examples, R]."""

  logits: np.ndarray
  jacobian: np.ndarray
  psi: np.ndarray

  def subset(self, index) -> "CriticOutputs":
    return CriticOutputs(self.logits[:, :, index], self.jacobian, self.psi[:, index])


def critic_outputs(networks, critic_params, probe: diagnose.Probe, examples: np.ndarray) -> CriticOutputs:
  psi = jax.jit(networks.psi)(critic_params, examples)  # [2, M, R]

  def phi_one(features, action):  # One frame's phi [2, R], to differentiate by its action.
    return networks.phi_head(critic_params, features[None], action[None])[:, 0]

  @jax.jit
  def chunk(obs, action):
    features = networks.encode(critic_params, obs)
    phi = networks.phi_head(critic_params, features, action)  # [2, b, R]
    jacobian = jax.vmap(jax.jacfwd(phi_one, argnums=1))(features, action)  # [b, 2, R, A]
    return jnp.einsum("kbr,kmr->bkm", phi, psi), jacobian  # Frames first, for in_chunks.

  logits, jacobian = diagnose.in_chunks(chunk, probe.images, probe.actions)
  return CriticOutputs(np.moveaxis(logits, 0, 1), jacobian, np.asarray(psi))


def q_closeness(logits: np.ndarray, probe: diagnose.Probe) -> float:
  """Spearman of Q (log-mean-exp over the examples axis, then the twins' minimum) with closeness to the goal."""
  q = np.min(np.asarray(losses.log_mean_exp(jnp.asarray(logits), axis=-1)), axis=0)
  return diagnose.value_measures(q, probe)["q_goal_spearman"]


def action_gradients(outputs: CriticOutputs) -> np.ndarray:
  """grad_a Q [frames, A] of Q = min over twins of the log-mean-exp over the examples: the softmax-weighted sum of
  each example's J^T psi(s*), from the twin that is the minimum."""
  logits = outputs.logits.astype(np.float64)
  twin = np.argmin(np.asarray(losses.log_mean_exp(jnp.asarray(logits), axis=-1)), axis=0)  # [N]
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  psi_mean = np.einsum("knm,kmr->knr", weights, outputs.psi)
  grads = np.einsum("nkra,knr->nka", outputs.jacobian, psi_mean)
  return grads[np.arange(len(twin)), twin]


def gradient_measures(outputs: CriticOutputs, probe: diagnose.Probe) -> Tuple[float, float]:
  """(alignment, size) of grad_a Q on the probe frames: its mean cosine with the clean controller's movement where
  that moves (the diagnostic's measure), and its median |grad_a Q|, how hard the Q-term pulls the policy's action
  beside its fixed behaviour-cloning term."""
  grads = action_gradients(outputs)
  alignment = diagnose.mean_cosine(grads, probe.expert, diagnose.moving_frames(probe))
  return alignment, float(f"{np.median(np.linalg.norm(grads, axis=-1)):.3g}")


def subset_measures(outputs: CriticOutputs, probe: diagnose.Probe, size: int, draws: int) -> np.ndarray:
  """(q_closeness, alignment) [draws, 2] of `draws` random subsets of `size` examples (without replacement; a
  fixed seed)."""
  rng = np.random.default_rng(0)
  subsets = [rng.choice(outputs.logits.shape[-1], size, replace=False) for _ in range(draws)]
  return np.array(
    [(q_closeness(outputs.logits[:, :, s], probe), gradient_measures(outputs.subset(s), probe)[0]) for s in subsets]
  )


def check_runs(workdirs: Sequence[str], examples: np.ndarray) -> list:
  """Each run's (config, own success examples), once every run is one this script measures (a LAEO run with a
  checkpoint, on one task, with examples shaped as the pool's): a bad run anywhere in the list is refused before any
  row is written."""
  runs = []
  for workdir in workdirs:
    config = run_config_lib.load_run_config(run_config_lib.run_config_path(workdir))
    if config.agent != "laeo":
      raise SystemExit(f"{workdir}: a {config.agent} run; only LAEO's Q is built from success examples.")
    if runs and config.env != runs[0][0].env:
      raise SystemExit(f"{workdir}: task {config.env}, but {workdirs[0]} is on {runs[0][0].env}; one task per call.")
    if not checkpointing.for_run(workdir).latest_step():
      raise SystemExit(f"{workdir}: no checkpoint.")
    own = config.load_success_examples()
    if own.shape[1:] != examples.shape[1:]:
      raise SystemExit(f"{workdir}: its examples have shape {own.shape[1:]}, the pool's {examples.shape[1:]}.")
    runs.append((config, own))
  return runs


def measure_run(workdir: str, config, own: np.ndarray, examples: np.ndarray, probe: diagnose.Probe, code: str):
  """(the run's row, its per-example rows, the single-example correlations [M]); `config` and `own` (its success
  examples) as `check_runs` returns them."""
  checkpoint = checkpointing.for_run(workdir).latest()
  observation_spec, action_spec = config.specs()
  networks = config.make_builder().make_networks(observation_spec, action_spec, config.observation_stats)
  (critic_params,) = learner_lib.state_variables(checkpoint["learner"], ["critic_params"])
  pool = critic_outputs(networks, critic_params, probe, examples)
  own_outputs = critic_outputs(networks, critic_params, probe, own)
  single = np.array([q_closeness(pool.logits[:, :, [m]], probe) for m in range(len(examples))])
  single_grad, single_size = np.array([gradient_measures(pool.subset([m]), probe) for m in range(len(examples))]).T
  (own_grad, own_size), (all_grad, all_size) = gradient_measures(own_outputs, probe), gradient_measures(pool, probe)
  own_q = q_closeness(own_outputs.logits, probe)
  name, step = os.path.relpath(os.path.abspath(workdir), ROOT), int(checkpoint["step"])
  quantiles = np.percentile(single, [0, 10, 25, 50, 75, 90, 100])
  subsets = {n: subset_measures(pool, probe, n, SUBSET_DRAWS) for n in SUBSET_SIZES if n < len(examples)}
  row = {
    "workdir": name,
    "env": config.env,
    "seed": config.seed,
    "step": step,
    "num_own_examples": len(own),
    "num_examples": len(examples),
    "q_goal_own": own_q,
    "q_goal_all": q_closeness(pool.logits, probe),
    **{c: round(float(v), 3) for c, v in zip(COLUMNS[8:15], quantiles)},
    "single_below_own": round(float(np.mean(single < own_q)), 3),  # Where the run's own draw falls among one-draws.
    **{f"subset{n}_median": round(float(np.median(m[:, 0])), 3) for n, m in subsets.items()},
    "grad_own": own_grad,
    "grad_all": all_grad,
    "grad_single_median": round(float(np.median(single_grad)), 3),
    "grad_size_own": own_size,
    "grad_size_all": all_size,
    "grad_size_single_median": float(f"{np.median(single_size):.3g}"),
    **{f"grad_subset{n}_median": round(float(np.median(m[:, 1])), 3) for n, m in subsets.items()},
    "commit": code,
  }
  each = [
    {
      "workdir": name,
      "seed": config.seed,
      "step": step,
      "example": m,
      "q_goal_spearman": float(single[m]),
      "grad_expert_cosine": float(single_grad[m]),
      "commit": code,
    }
    for m in range(len(examples))
  ]
  return row, each, single


def save_png(path: str, own: np.ndarray, examples: np.ndarray, single: np.ndarray, own_q: float, count: int = 6):
  """The run's own examples (up to `count`), then the --examples whose single-example Q orders frames worst and
  best, each titled with its correlation."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  order = np.argsort(single)
  panels = [(own[i], f"own #{i}\n(own set {own_q:.2f})") for i in range(min(count, len(own)))]
  panels += [(examples[m], f"worst: {single[m]:.2f}") for m in order[:count]]
  panels += [(examples[m], f"best: {single[m]:.2f}") for m in order[::-1][:count]]
  fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * len(panels), 2.0))
  for ax, (image, title) in zip(np.atleast_1d(axes), panels):
    ax.imshow(image)
    ax.set_title(title, fontsize=7)
    ax.axis("off")
  fig.suptitle("Success examples and how well Q from each alone orders frames by closeness to the goal", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--workdirs", nargs="+", required=True, help="Finished LAEO runs of one task.")
  parser.add_argument("--examples", required=True, help="A dataset directory: its success examples are the pool.")
  parser.add_argument("--probe_episodes", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0, help="The probe's seed offset (as the diagnostic's).")
  parser.add_argument("--out", default=OUT)
  parser.add_argument("--png", default="", help="Where to draw the examples (none when empty).")
  args = parser.parse_args()
  examples = success_lib.load_success_examples(args.examples)
  if args.png and examples.ndim != 4:
    raise SystemExit(f"--png draws images; the success examples of {args.examples} have shape {examples.shape[1:]}.")
  code = reproduce.code_commit()
  runs = check_runs(args.workdirs, examples)
  probe = diagnose.probe_frames(runs[0][0].env, args.probe_episodes, seed=10_000 + args.seed)
  singles, own_qs = [], []
  for workdir, (config, own) in zip(args.workdirs, runs):
    row, each, single = measure_run(workdir, config, own, examples, probe, code)
    print(row, flush=True)
    reproduce.append_row(args.out, row, columns=COLUMNS)
    each_out = args.out[: -len(".csv")] + "_each.csv" if args.out.endswith(".csv") else args.out + "_each"
    for r in each:
      rounded = {k: round(r[k], 3) for k in ("q_goal_spearman", "grad_expert_cosine")}
      reproduce.append_row(each_out, {**r, **rounded}, columns=EACH_COLUMNS)
    singles.append(single)
    own_qs.append(row["q_goal_own"])
  if args.png:
    save_png(args.png, own, examples, np.mean(singles, axis=0), float(np.mean(own_qs)))


if __name__ == "__main__":
  main()
