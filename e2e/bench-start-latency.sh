#!/usr/bin/env bash
# The start latency Palisade adds to pods without any policy, on an idle real-node cluster
# (BENCHMARKS.md): 40 pods one at a time with the chart's defaults (first-packet isolation on),
# then 40 without Palisade; prints creation-to-Running p50/p99 of each.
#
#   e2e/bench-start-latency.sh                  # the image e2e/image.sh wrote last
#   PALISADE_IMAGE=FILE PALISADE_BENCH_PODS=N e2e/bench-start-latency.sh
#
# Needs what the real-node tests need (root, e2e/tools/install.sh's tools).
set -euo pipefail
cd "$(dirname "$0")/.."
PALISADE_TOOLS=$(e2e/tools/install.sh --print)
export PALISADE_TOOLS
exec cargo test -p palisade-e2e --test start_latency -- --ignored --nocapture
