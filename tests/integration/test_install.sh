#!/usr/bin/env bash
# `make install PREFIX=...` (cmake --install, the same rules) installs the
# command, the library and its header with a pkg-config file that compiles,
# the manual page, bash and zsh completions, and the documentation; the
# manual page renders without warnings and names the command's version; the
# bash completion completes commands, options and statuses.
source "$(dirname "$0")/lib.sh"
build=$(dirname "$NS")
cmake --install "$build" --prefix "$T/x" > install.log 2>&1 || { cat install.log >&2; fail "install failed"; }
for f in bin/nightshift include/nightshift.h share/man/man1/nightshift.1 \
    share/bash-completion/completions/nightshift share/zsh/site-functions/_nightshift \
    share/doc/nightshift/README.md share/doc/nightshift/docs/jobs.md; do
    [ -e "$T/x/$f" ] || fail "make install did not install $f"
done
pc=$(find "$T/x" -name nightshift.pc | head -1)
[ -n "$pc" ] || fail "no nightshift.pc installed"

# The manual page: renders cleanly, and its version is the command's.
warnings=$(groff -man -ww -z "$T/x/share/man/man1/nightshift.1" 2>&1)
[ -z "$warnings" ] || fail "the manual page has warnings: $warnings"
version=$("$T/x/bin/nightshift" -V | awk '{print $2}')
grep -q "\"nightshift $version\"" "$T/x/share/man/man1/nightshift.1" ||
    fail "the manual page does not name version $version"
MANPATH="$T/x/share/man" man -P cat nightshift 2>/dev/null | grep "EXIT STATUS" > /dev/null ||
    fail "man nightshift does not find the installed page"
# Every command of the program is in the manual page, and the other way round.
for c in run restart stop abandon recover purge list show validate; do
    grep -q "^\.B nightshift $c" "$T/x/share/man/man1/nightshift.1" || fail "the manual page lacks $c"
done

# The bash completion.
complete_() { # complete_ WORDS...: what the completion offers for the last word
    bash -c 'shopt -s extglob; source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _nightshift; echo "${COMPREPLY[*]}"' \
        _ "$T/x/share/bash-completion/completions/nightshift" "$@"
}
assert_eq "$(complete_ nightshift ru)" "run" "bash completion of 'ru'"
assert_eq "$(complete_ nightshift list --status fai)" "FAILED" "bash completion of a status"
assert_eq "$(complete_ nightshift restart --ad)" "--adopt-checkpoint" "bash completion of an option"
assert_eq "$(complete_ nightshift help sh)" "show" "bash completion after help"
if command -v zsh > /dev/null; then
    zsh -n "$T/x/share/zsh/site-functions/_nightshift" || fail "the zsh completion does not parse"
fi
head -1 "$T/x/share/zsh/site-functions/_nightshift" | grep '^#compdef nightshift' > /dev/null ||
    fail "the zsh completion lacks #compdef"
echo "install: command, library, manual page, completions, docs"
