"""The completion scripts `aigc --show-completion` prints and `--install-completion` installs: typer's,
but for bash one that completes `remote:NAME` and `openai:URL` as one word (bash breaks words at `:`),
and for zsh an installer that adds one line to ~/.zshrc (typer's adds a second `compinit` and a
`zstyle` that changes every command's completion)."""

from pathlib import Path

PROG, VAR = "aigc", "_AIGC_COMPLETE"

# typer's bash script, but where the word being completed holds a `:` that bash breaks words at
# (COMP_WORDBREAKS), the line up to the cursor is sent whole (its last word the one completed: `''`
# ends it, as an empty word after a space), and the part up to the last `:`, which bash keeps, is
# taken off what is offered (as bash-completion's __ltrim_colon_completions does).
BASH = r"""
_aigc_completion() {
    local IFS=$'\n' line="${COMP_LINE:0:COMP_POINT}" words cword=$COMP_CWORD kept=""
    words="${COMP_WORDS[*]}"
    local cur="${line##*[[:space:]]}"
    if [[ $COMP_WORDBREAKS == *:* && $cur == *:* ]]; then
        words="$line''" cword=-1 kept="${cur%:*}:"
    fi
    COMPREPLY=( $( env COMP_WORDS="$words" COMP_CWORD=$cword _AIGC_COMPLETE=complete_bash $1 ) )
    if [[ -n $kept ]]; then
        COMPREPLY=( "${COMPREPLY[@]#"$kept"}" )
    fi
    return 0
}

complete -o default -F _aigc_completion aigc
"""

ZSHRC_LINE = "if (( $+functions[compdef] )); then source ~/.zfunc/_aigc; else fpath+=~/.zfunc; autoload -Uz compinit && compinit; fi  # aigc's completion"


def script(shell: str) -> str:
    """The completion script for `shell` (bash, zsh, fish, powershell, pwsh)."""
    if shell == "bash":
        return BASH.strip()
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=VAR, shell=shell)


def install(shell: str) -> Path:
    """Install the completion script for `shell`; the file written, where it is loaded from. bash:
    ~/.bash_completions/aigc.sh, sourced from ~/.bashrc (as typer does); zsh: ~/.zfunc/_aigc, and one
    line in ~/.zshrc that sources it where compinit already ran (oh-my-zsh, prezto, your own), else adds
    ~/.zfunc to fpath and runs compinit; fish and PowerShell: typer's installer."""
    if shell == "bash":
        path = Path.home() / ".bash_completions" / f"{PROG}.sh"
        _write(path, script(shell) + "\n")
        _add_line(Path.home() / ".bashrc", f"source '{path}'")
        return path
    if shell == "zsh":
        path = Path.home() / ".zfunc" / f"_{PROG}"
        _write(path, script(shell) + "\n")
        _add_line(Path.home() / ".zshrc", ZSHRC_LINE)
        return path
    from typer._completion_shared import install as typer_install

    return typer_install(shell=shell, prog_name=PROG, complete_var=VAR)[1]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _add_line(rc: Path, line: str) -> None:
    """`line` at the end of the shell's startup file `rc`, unless it is there already."""
    text = rc.read_text() if rc.is_file() else ""
    if line in text.splitlines():
        return
    rc.parent.mkdir(parents=True, exist_ok=True)
    rc.write_text(f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{line}\n")
