#!/usr/bin/env bash
# The goods-filter example: sync the catalogue, rebuild goods_filter from the
# hierarchy, check it; then a second day's run, and the row counts per run.
source "$(dirname "$0")/../common.sh"
say "nightshift run job.yaml day=2026-11-20"
run run job.yaml day=2026-11-20
say "goods_filter: $(q "SELECT count(*) FROM goods_filter") albums are shipping-discounted, e.g."
q "SELECT shop_no, goods_no, filter_type FROM goods_filter ORDER BY goods_no LIMIT 5"
say "the next day (a new instance)"
run run job.yaml day=2026-11-21
say "the run as recorded: rows per step"
run show 2
