#!/usr/bin/env bash
# The coupon-shadow example: load requests and the legacy output, run the new
# logic, compare both; the differences are expected (see README.md).
source "$(dirname "$0")/../common.sh"
say "seed: requests and what the legacy procedure issued"
run run seed.yaml
say "new logic + compare"
run run job.yaml
diff=$(ls out/diff-*.csv | tail -n 1)
say "the first differences of $(( $(wc -l < "$diff") - 1 )) ($diff)"
head -6 "$diff"
