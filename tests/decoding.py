"""An engine that decodes for a long while, asking between its steps whether to stop, for the tests of stopping."""

import asyncio
import threading
import time

from aigc.batch import WORKER
from aigc.engine.base import check_stopped
from aigc.testing import FakeEngine


class Decoding(FakeEngine):
    """Decodes for up to 30 s, asking between its 10 ms steps whether to stop, as the local engine does."""

    def __init__(self):
        super().__init__()
        self.decoding = threading.Event()
        self.begun = self.stopped = 0  # calls made, and those told to stop

    def steps(self):
        self.decoding.set()
        for _ in range(3000):
            try:
                check_stopped()
            except asyncio.CancelledError:
                self.stopped += 1
                raise
            time.sleep(0.01)

    def generate(self, prompts, params):
        self.begun += 1
        self.steps()
        return super().generate(prompts, params)


def workers() -> list[str]:
    """The batch workers still running."""
    return [thread.name for thread in threading.enumerate() if thread.name == WORKER]
