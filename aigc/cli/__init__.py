"""The Typer CLI: parses arguments, calls the library, renders results."""


def examples(*lines: str) -> str:
    """A command's `--help` epilog: `lines` under "Examples:", indented as given (the leading newline
    keeps the help's dedent off them) and with rich markup's [ escaped."""
    return "\nExamples:\n" + "\n".join("  " + line.replace("[", "\\[") for line in lines)
