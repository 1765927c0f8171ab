#!/usr/bin/env bash
# The README's tour, word for word (issue 9): its console blocks are run as
# written, in order, from a copy of the clone's top (examples/ is there),
# with the job file the README shows; each command's output must be what
# the README prints under it, but for what differs from run to run (times,
# rates, pids, the host, the clone's path), and a command commented
# "# exit N" must exit N. So the README cannot drift from the program.
source "$(dirname "$0")/lib.sh"
unset NIGHTSHIFT_REPOSITORY # the tour uses the default, ./nightshift.db
ln -s "$NS_SRC/examples" examples
mkdir -p bin
ln -s "$NS" bin/nightshift
export PATH="$T/bin:$PATH"

python3 - "$NS_SRC/README.md" "$T" <<'PY' || exit 1
import re, subprocess, sys

readme, top = sys.argv[1], sys.argv[2]
text = open(readme, encoding="utf-8").read()
tour = text.split("## A tour", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```(\w+)\n(.*?)```", tour, re.S)
if not blocks:
    sys.exit("FAIL: the README has no tour")

# One script runs every command in one shell (cd carries over); markers
# separate the outputs; the job file is written where the README says to
# save it, before the first command that follows it.
script, expected, exits = ["set +e"], [], []
for kind, body in blocks:
    if kind == "yaml":
        if not body.startswith("# job.yaml"):
            sys.exit("FAIL: a yaml block of the tour is not job.yaml")
        script.append("cat > job.yaml <<'NS_README_EOF'\n" + body + "NS_README_EOF")
        continue
    if kind != "console":
        continue
    for line in body.splitlines():
        if line.startswith("$ "):
            cmd = line[2:]
            m = re.search(r"#\s*exit (\d+)", cmd)
            exits.append(int(m.group(1)) if m else 0)
            expected.append([])
            n = len(expected) - 1
            script.append(f"echo '@@cmd {n}'; {cmd}\necho \"@@rc $?\"")
        else:
            expected[-1].append(line)

out = subprocess.run(["bash", "-c", "\n".join(script) + "\n"], cwd=top, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
got, rcs = [], []
for line in (out.stdout).splitlines():
    if line.startswith("@@cmd "):
        got.append([])
    elif line.startswith("@@rc "):
        rcs.append(int(line[5:]))
    else:
        got[-1].append(line)

def norm(lines):
    out = []
    for l in lines:
        l = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Za-z+\-0-9]+", "TIME", l)
        l = re.sub(r"\b\d+\.\d\ds\b", "Ns", l)
        l = re.sub(r"[\d,]+ items/s", "N items/s", l)
        l = re.sub(r"pid \d+ on \S+", "pid N on HOST", l)
        l = re.sub(r"\S*/tour/job\.yaml", ".../tour/job.yaml", l)
        out.append(" ".join(l.split()))
    return out

if len(got) != len(expected):
    sys.exit(f"FAIL: {len(expected)} commands in the README, {len(got)} ran\n{out.stdout}")
bad = 0
for i, (want, have) in enumerate(zip(expected, got)):
    if rcs[i] != exits[i]:
        print(f"FAIL: tour command {i + 1} exited {rcs[i]}, the README says {exits[i]}",
              file=sys.stderr)
        bad = 1
    if norm(want) != norm(have):
        print(f"FAIL: tour command {i + 1}: the README says\n  " + "\n  ".join(want) +
              "\nbut it printed\n  " + "\n  ".join(have), file=sys.stderr)
        bad = 1
if bad:
    sys.exit(1)
print(f"readme: the tour's {len(got)} commands print what the README shows")
PY
