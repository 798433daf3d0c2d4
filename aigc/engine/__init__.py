"""The shared model loader and sampling core. Nothing here knows about tasks.

What a backend (a plugin's engine) uses to stop when told to (Ctrl-C in a batch, a cancelled
`aigc.aio` call): `check_stopped()` between its steps, `on_stop(callback)` around a blocking request,
`pause(seconds)` for its waits (docs/plugins.md, Backends)."""

from .base import check_stopped, on_stop, pause

__all__ = ["check_stopped", "on_stop", "pause"]
