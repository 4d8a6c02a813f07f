#!/bin/bash
# The image-budget runs still to make, in order (docs/results.md, "Not reached yet"), 3 seeds, 40000 updates:
# Fig. 5's FetchReach-image pair already under way; Fig. 6's FetchPush-image cells (10 and 100 success examples,
# 0.1x and 10x the dataset; the 1-example cells and seed 0's 10-example pair are made); then the rest of Fig. 5
# (its cells have 3 seeds at 5000 updates in results/paper/fig5.csv).
# Each command skips the runs whose rows are in its table and resumes a killed run from its last checkpoint, so
# after a restart (or a wiped machine: datasets regenerate) the same line goes on from where the work stood:
#   mkdir -p runs && nohup results/image_budget/queue.sh > runs/image_budget_queue.log 2>&1 &
# Ctrl-C or a stopped launch ends the queue (status 130); a run that fails is counted and the queue goes on.
set -u
cd "$(dirname "$0")/../.."
R=(.venv/bin/python scripts/reproduce.py --out_dir=results/image_budget --jobs=2 --num_steps=40000)
run() {
  echo "=== $(date -u +%FT%T) $*"
  "$@"
  local rc=$?
  echo "=== rc=$rc"
  if [ $rc -eq 130 ]; then exit 130; fi
}
run "${R[@]}" --figure=5 --tasks fetch_reach_image --agents laeo oril --seeds 0
run "${R[@]}" --figure=6 --tasks fetch_push_image --seeds 0 1 2
run "${R[@]}" --figure=5 --tasks fetch_reach_image --seeds 0 1 2
