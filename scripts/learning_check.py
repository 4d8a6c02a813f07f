"""Learning check (not a test): trains an agent through the full local launch and records its success rate.

  python scripts/learning_check.py --agent=laeo --env=fetch_reach --quality=medium --num_steps=10000

Runs launch/local.py (Reverb + Launchpad + evaluator processes), reads the evaluator's CSV log (the success
curve during training), evaluates the final checkpoint on --final_episodes episodes (launch/evaluate.py), and
writes results/learning_check_<agent>_<env>_<quality>[_<tag>].json with whether that final success rate
clears --threshold.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from launch import evaluate  # noqa: E402  (after the path set-up above)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--agent", default="laeo")
  parser.add_argument("--env", default="fetch_reach")
  parser.add_argument("--quality", default="medium")
  parser.add_argument("--dataset_episodes", type=int, default=500)
  parser.add_argument("--num_steps", type=int, default=10000)
  parser.add_argument("--eval_every", type=int, default=1000)
  parser.add_argument("--episodes_per_eval", type=int, default=20)
  parser.add_argument("--preset", default="laptop")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--threshold", type=float, default=0.8)
  parser.add_argument("--final_episodes", type=int, default=100)
  parser.add_argument("--config", action="append", default=[], help="Agent override NAME=VALUE (repeatable).")
  parser.add_argument("--tag", default="", help="Suffix of the run and result names, e.g. lambda0.5.")
  args = parser.parse_args()

  name = f"{args.agent}_{args.env}_{args.quality}" + (f"_{args.tag}" if args.tag else "")
  workdir = os.path.join(ROOT, "runs", f"learning_check_{name}_seed{args.seed}")
  command = [sys.executable, os.path.join(ROOT, "launch", "local.py"), f"--agent={args.agent}",
             f"--env={args.env}", f"--quality={args.quality}", f"--dataset_episodes={args.dataset_episodes}",
             f"--num_steps={args.num_steps}", f"--eval_every={args.eval_every}",
             f"--episodes_per_eval={args.episodes_per_eval}", f"--preset={args.preset}", f"--seed={args.seed}",
             f"--workdir={workdir}", "--num_evaluators=1", *[f"--config={c}" for c in args.config]]
  started = time.time()
  subprocess.run(command, check=True, cwd=ROOT)
  with open(os.path.join(workdir, "logs", "evaluator_0", "logs.csv")) as f:
    curve = [(int(float(r["learner_steps"])), float(r["success_rate"])) for r in csv.DictReader(f)]
  final = evaluate.evaluate_latest_checkpoint(workdir, args.final_episodes, seed=12345)["success_rate"]
  result = {
      "agent": args.agent, "env": args.env, "quality": args.quality, "dataset_episodes": args.dataset_episodes,
      "num_steps": args.num_steps, "preset": args.preset, "overrides": args.config, "seed": args.seed,
      "episodes_per_eval": args.episodes_per_eval, "success_curve": curve,
      "final_checkpoint_episodes": args.final_episodes, "final_success_rate": final, "threshold": args.threshold,
      "passed": final > args.threshold, "invocation_wall_time_s": round(time.time() - started, 1), "command": " ".join(command),
  }
  os.makedirs(os.path.join(ROOT, "results"), exist_ok=True)
  out = os.path.join(ROOT, "results", f"learning_check_{name}.json")
  with open(out, "w") as f:
    json.dump(result, f, indent=2)
  print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=2))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
