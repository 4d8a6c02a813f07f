#!/bin/bash
# The image-budget runs still to make, in order (docs/results.md, "Not reached yet"), 3 seeds, 40000 updates:
# Fig. 6's FetchPush-image cells on 1000 and 100 episodes (10 and 100 success examples, 0.1x the dataset; the
# 1-example cells are made), then the rest of Fig. 5 (its cells have 3 seeds at 5000 updates in
# results/paper/fig5.csv), then Fig. 6's 10x cells (10,000 episodes).
# Two workers walk the same list, one run at a time each (two image runs at once use this 2-core machine best:
# docs/performance.md, "Sweeps"); a worker passes by the run the other is training (reproduce.py claims each run),
# so neither waits at the end of a figure for the other's last run. Each command skips the runs whose rows are in
# its table and resumes a killed run from its last checkpoint, so after a restart the same line goes on from where
# the work stood:
#   mkdir -p runs && nohup results/image_budget/queue.sh > runs/image_budget_queue.log 2>&1 &
# Run it from a worktree of its own (its tables change under it); its rows and curves come into the checkout with
#   python scripts/reproduce.py --figure=6 --out_dir=results/image_budget --merge_from=WORKTREE/results/image_budget
# A wiped machine loses datasets and checkpoints alike: a pair of runs started together takes 2.2-2.7 hours here,
# so a 3-hour session lands the pair it starts. Hence the order: two runs that share a dataset cheap to make (1000
# episodes render in about 3 minutes) side by side, and the 10x cells last, on worker 1 alone: their dataset
# renders for 30-40 minutes on one core, after which one run alone (6.6-7 updates/s) still fits a session.
# Arguments are passed to every command (`queue.sh --dry_run`: what each would do). A stopped launch (SIGTERM to
# launch/local.py) ends its worker (status 130) and the queue, once both workers end, with 130; a run that fails is
# counted and its worker goes on.
set -u
cd "$(dirname "$0")/../.."
R=(.venv/bin/python scripts/reproduce.py --out_dir=results/image_budget --jobs=1 --num_steps=40000 "$@")
run() {  # run WORKER COMMAND...: its output, each line marked with the worker; false when it was stopped.
  local worker=$1
  shift
  echo "=== [w$worker] $(date -u +%FT%T) $*"
  "$@" 2>&1 | sed -u "s/^/[w$worker] /"
  local rc=${PIPESTATUS[0]}
  echo "=== [w$worker] rc=$rc"
  [ "$rc" -ne 130 ]
}
worker() {
  run "$1" "${R[@]}" --figure=6 --tasks fetch_push_image --seeds 0 1 2 --dataset_scales 0.1 1 &&
    run "$1" "${R[@]}" --figure=5 --tasks fetch_reach_image --seeds 0 1 2 || return 130
  if [ "$1" -eq 1 ]; then
    run "$1" "${R[@]}" --figure=6 --tasks fetch_push_image --seeds 0 1 2 --dataset_scales 10 || return 130
  fi
}
worker 1 &
first=$!
worker 2
second=$?
wait "$first"
if [ $? -eq 130 ] || [ "$second" -eq 130 ]; then exit 130; fi
