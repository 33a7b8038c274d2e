#!/usr/bin/env bash
# The CFQP sweep's whole queue, in the order that completes comparisons soonest (README.md); every
# command resumes where its results file stops, so rerun this after an interruption.
# Usage: bash experiments/cfqp/queue.sh   (from the repo root; logs in experiments/cfqp/logs/)
set -e
mkdir -p experiments/cfqp/logs
sweep() { npx tsx experiments/cfqp/sweep.ts "$@"; }
for m in espcn-x3 fsrcnn-x3; do sweep --model "$m" --tier small 2>> "experiments/cfqp/logs/sweep-$m.log"; done
for c in gray rgb; do
  sweep --model edsr-lite-x2 --color "$c" --tier small --jobs '^(fp|ri:)' --ri-sample 20 2>> "experiments/cfqp/logs/sweep-edsr-lite-x2-$c.log"
done
for m in espcn-x3 fsrcnn-x3; do sweep --model "$m" --tier large 2>> "experiments/cfqp/logs/sweep-$m.log"; done
