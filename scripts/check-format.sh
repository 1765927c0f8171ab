#!/usr/bin/env bash
# Fails when a tracked C file differs from what clang-format makes of it.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find src cli include tests bench -name '*.[ch]')
bad=0
for f in $files; do
    [ -f "$f" ] || continue
    if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
        echo "check-format: $f is not clang-formatted (run: make format)" >&2
        bad=1
    fi
done
exit $bad
