# bash completion for nightshift (installed as
# share/bash-completion/completions/nightshift by `make install`).
_nightshift() {
    local cur prev cmd i
    COMPREPLY=()
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    local commands="run restart stop abandon recover purge list show validate schedule scheduler help"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --repository | --job | --status | --limit | --before | --keep-last | --count | --from) ((i++)) ;;
        -*) ;;
        *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    case $prev in
    --repository)
        COMPREPLY=($(compgen -W "sqlite: postgresql://" -- "$cur"))
        return ;;
    --status)
        COMPREPLY=($(compgen -W "STARTING STARTED STOPPING STOPPED FAILED COMPLETED ABANDONED UNKNOWN" -- "${cur^^}"))
        return ;;
    --job | --limit | --before | --keep-last | --count | --from) return ;;
    esac
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$commands --help --version -V" -- "$cur"))
        return
    fi
    local opts="--repository --help"
    case $cmd in
    run) opts="$opts --next --adopt-checkpoint --ignore-checkpoint --restart-from-beginning" ;;
    restart) opts="$opts --adopt-checkpoint --ignore-checkpoint --restart-from-beginning" ;;
    list) opts="$opts --job --status --limit --json" ;;
    recover) opts="$opts --dry-run --job" ;;
    purge) opts="$opts --before --keep-last --job --dry-run --with-files" ;;
    show) opts="$opts --json" ;;
    validate) opts="$opts --plugins" ;;
    schedule) opts="--help --count --from --json" ;;
    scheduler) opts="$opts" ;;
    help) COMPREPLY=($(compgen -W "$commands" -- "$cur")); return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [ "$cmd" = run ] || [ "$cmd" = validate ] || [ "$cmd" = schedule ] || [ "$cmd" = scheduler ]; then
        COMPREPLY=($(compgen -f -X '!*.@(yaml|yml)' -- "$cur") $(compgen -d -- "$cur"))
    fi
}
complete -F _nightshift nightshift
