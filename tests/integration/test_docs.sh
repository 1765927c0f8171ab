#!/usr/bin/env bash
# Docs a clone can follow (issue 9): no link or reference to a file outside
# the repository, every relative link resolves, every example has its
# run.sh, and the sample messages of docs/jobs.md are what the program says.
source "$(dirname "$0")/lib.sh"
cd "$NS_SRC"

# Nothing points outside the clone.
if git ls-files -z 2>/dev/null | xargs -0 grep -nE '\.\./shared/|ARCHITECTURE\.md|SCENARIOS\.md|STYLE\.md|REFERENCE\.md' \
    -- 2>/dev/null | grep -v '^tests/integration/test_docs.sh:'; then
    fail "references to files outside the repository (above)"
fi
# Every relative link of every Markdown file resolves.
python3 - <<'PY' || exit 1
import os, re, subprocess, sys
files = subprocess.run(["git", "ls-files", "*.md"], capture_output=True, text=True).stdout.split()
if not files:
    files = [os.path.join(d, f) for d, _, fs in os.walk(".") for f in fs if f.endswith(".md")]
bad = []
for f in files:
    for target in re.findall(r"\]\(([^)\s]+)\)", open(f, encoding="utf-8").read()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = os.path.normpath(os.path.join(os.path.dirname(f), target.split("#")[0]))
        if not os.path.exists(path):
            bad.append(f"{f}: {target}")
        elif not os.path.realpath(path).startswith(os.path.realpath(".")):
            bad.append(f"{f}: {target} (outside the repository)")
if bad:
    sys.exit("FAIL: links that do not resolve:\n  " + "\n  ".join(bad))
PY
# Every example runs by its run.sh.
for d in examples/*/; do
    [ -x "$d/run.sh" ] || fail "$d has no executable run.sh"
done

# The two sample messages at the top of docs/jobs.md, reproduced.
cd "$T"
cat > job.yaml <<'EOF'
job: users-upload
params:
  file: {type: string, required: true}
connections:
  target: "sqlite:app.db"
steps:
  - name: load
    reader: {csv: {path: "${params.file}"}}
    chunks: 5000
    writer: {table: {connection: target, name: users}}
EOF
expect_exit 2 "$NS" validate job.yaml
unknown=$(sed 's/^nightshift: //' "$T/err")
python3 - <<'EOF' > job.yaml
lines = ["job: users-upload", "params:", "  file: {type: string, required: true}",
         "connections:", '  target: "sqlite:app.db"', "steps:", "  - name: load",
         '    reader: {csv: {path: "${params.file}"}}',
         "    writer: {table: {connection: target, name: users}}",
         "    skip: {limit: 10}", "    # the interval of commits:", "    #", "    #", "    chunk: 0"]
print("\n".join(lines))
EOF
expect_exit 2 "$NS" validate job.yaml
chunk=$(sed 's/^nightshift: //' "$T/err")
assert_eq "$(sed -n '/^```$/,/^```$/p' "$NS_SRC/docs/jobs.md" | sed -n 2,3p)" "$chunk
$unknown" "the sample messages of docs/jobs.md"
echo "docs: links resolve, examples have run.sh, sample messages are the program's"
