"""How far LAEO's Q-term moves when its log-mean-exp runs over a subset of the success examples (not a test).

  python scripts/measure_q_subset_bias.py [--dataset_dir=DIR --steps=0,500,2000 --subsets=8,16,32,64,128]

Trains LAEO (laptop preset, in process, in-memory batches) on a FetchPush dataset and, at each of `--steps`, takes
one batch's states with actions from the current policy and compares, per twin, the full
Q(s, a) = log mean_k exp f(s, a, s*_k) over all N success examples with the same over M examples drawn without
replacement (`num_q_success_examples=M`; 200 draws per M):
  * bias: mean over draws and states of Q_M - Q_N (Jensen: <= 0), beside the spread of Q_N over the batch's states;
  * rank: Spearman correlation over the batch between one draw's min-twin Q_M and the full min-twin Q_N;
  * gradient: cosine between the policy gradient of the Q-term from one draw and from all N examples.
Writes results/q_subset_bias.{json,md}.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import agents  # noqa: E402
import environments  # noqa: E402
from agents.common import distributions  # noqa: E402
from agents.common import losses  # noqa: E402
from agents.laeo import learning as laeo_learning  # noqa: E402
from data_pipeline import reverb_pipeline  # noqa: E402
from data_pipeline import rlds_io  # noqa: E402
from data_pipeline import success_examples as success_lib  # noqa: E402
from launch import run_config as run_config_lib  # noqa: E402

OUT = os.path.join(ROOT, "results", "q_subset_bias")
DRAWS = 200


def _rankdata(x):
  return np.argsort(np.argsort(x)).astype(np.float64)


def spearman(a, b) -> float:
  return float(np.corrcoef(_rankdata(a), _rankdata(b))[0, 1])


def measure(networks, config, state, batch, success, subsets, key) -> list:
  obs = batch["observation"]
  features = networks.encode(state.critic_params, obs)
  mean, log_std = networks.policy.apply(state.policy_params, obs)
  action, _ = distributions.tanh_gaussian_sample(jax.random.PRNGKey(7), mean, log_std)
  phi = networks.phi_head(state.critic_params, features, action)  # [2, B, R]
  logits = jnp.einsum("kbr,knr->kbn", phi, networks.psi(state.critic_params, success))  # [2, B, N]
  full = losses.log_mean_exp(logits, axis=-1)  # [2, B]
  full_min = np.asarray(jnp.min(full, axis=0))

  def q_term_grad(cfg, k):
    def q_loss(policy_params):
      m, s = networks.policy.apply(policy_params, obs)
      a, _ = distributions.tanh_gaussian_sample(jax.random.PRNGKey(7), m, s)
      q = laeo_learning.q_values(networks, cfg, state.critic_params, features, a, success, k)
      return jnp.mean(-jnp.min(q, axis=0))

    g = jax.grad(q_loss)(state.policy_params)
    return jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)])

  full_grad = q_term_grad(config, key)
  rows = []
  for m in subsets:
    keys = jax.random.split(jax.random.fold_in(key, m), DRAWS)
    idx = jax.vmap(lambda k: jax.random.choice(k, success.shape[0], (m,), replace=False))(keys)  # [D, M]
    sub = jax.vmap(lambda i: losses.log_mean_exp(logits[:, :, i], axis=-1))(idx)  # [D, 2, B]
    bias = np.asarray(jnp.mean(sub - full[None]))
    spread = np.asarray(jnp.std(sub - full[None], axis=0).mean())
    sub_min = np.asarray(jnp.min(sub, axis=1))  # [D, B]
    ranks = [spearman(sub_min[d], full_min) for d in range(20)]
    cfg = dataclasses.replace(config, num_q_success_examples=m)
    cosines = []
    for k in keys[:10]:
      g = q_term_grad(cfg, k)
      cosines.append(float(jnp.dot(g, full_grad) / (jnp.linalg.norm(g) * jnp.linalg.norm(full_grad))))
    rows.append(
      {
        "subset": int(m),
        "bias_mean": round(float(bias), 4),
        "draw_std": round(float(spread), 4),
        "q_std_over_states": round(float(np.std(full_min)), 4),
        "spearman_mean": round(float(np.mean(ranks)), 4),
        "grad_cosine_mean": round(float(np.mean(cosines)), 4),
        "grad_cosine_min": round(float(np.min(cosines)), 4),
      }
    )
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset_dir", default=os.path.join(ROOT, "data", "bench", "fetch_push_medium_2000ep_seed0"))
  parser.add_argument("--steps", default="0,500,2000")
  parser.add_argument("--subsets", default="8,16,32,64,128")
  args = parser.parse_args()
  steps = [int(s) for s in args.steps.split(",")]
  subsets = [int(s) for s in args.subsets.split(",")]
  metadata = rlds_io.read_metadata(args.dataset_dir)
  env = environments.make(metadata["env_name"], seed=0)
  observation_spec, action_spec = env.observation_spec(), env.action_spec()
  env.close()
  overrides = run_config_lib.preset_overrides("laeo", "laptop")
  builder = agents.make_builder("laeo", **overrides)
  config = builder.config
  stats = rlds_io.dataset_observation_stats(args.dataset_dir)
  networks = builder.make_networks(observation_spec, action_spec, stats)
  episodes = rlds_io.load_episodes(args.dataset_dir, include_success=False)
  iterator = reverb_pipeline.make_in_memory_iterator(episodes, "future", config.batch_size, config.discount, seed=0)
  success = jnp.asarray(success_lib.load_success_examples(args.dataset_dir))
  learner = builder.make_learner(networks, iterator, success, jax.random.PRNGKey(0))
  probe = next(iterator)
  result = {"dataset": os.path.basename(args.dataset_dir), "num_success_examples": int(success.shape[0]), "rows": []}
  done = 0
  for step in steps:
    while done < step:
      n = min(10, step - done)
      learner.step(n)
      done += n
    for row in measure(networks, config, learner.state, probe, success, subsets, jax.random.PRNGKey(step)):
      result["rows"].append({"learner_step": step, **row})
      print(result["rows"][-1], flush=True)
  with open(OUT + ".json", "w") as f:
    json.dump(result, f, indent=2)
  lines = [
    f"LAEO laptop preset, {result['dataset']}, N = {result['num_success_examples']} success examples; one batch of "
    f"{config.batch_size} states, actions from the policy; {DRAWS} subsets per M (`scripts/measure_q_subset_bias.py`).",
    "",
    "| learner step | M | bias E[Q_M - Q_N] | std over draws | std of Q_N over states | Spearman(Q_M, Q_N) | "
    "cos(grad_M, grad_N) mean / min |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['learner_step']} | {r['subset']} | {r['bias_mean']} | {r['draw_std']} | {r['q_std_over_states']} | "
      f"{r['spearman_mean']} | {r['grad_cosine_mean']} / {r['grad_cosine_min']} |"
    )
  with open(OUT + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
