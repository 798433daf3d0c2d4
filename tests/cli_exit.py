"""What unit tests make of the CLI's os._exit: an exception, not the end of pytest's process."""


class LeftProcess(SystemExit):
    """What `aigc.cli.app._leave` raises under the unit tests: the CLI would have ended the process there."""


def leave(code: int) -> None:
    raise LeftProcess(code)
