"""Resuming an interrupted `aigc translate`: each sentence's translation is kept as it is made, so
the same run again (the same model, options, sampling settings and document) takes those up rather
than asking the model again.

A run's translations are one JSON Lines file in `~/.cache/aigc/translate/` (readable by its owner
only), named by a digest of all they depend on; the file goes once the run's result is written, and
of the files interrupted runs left, the `KEPT_RUNS` used last are kept. A checkpoint that cannot be
written is one `AigcWarning`, and the run goes on without it. A run holds its file's lock
(`locks.held`) while it translates: a second run of the same document and settings meanwhile
does not wait for it but translates all of it, with one `AigcWarning`, neither reading nor writing
that file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

from .. import config, locks
from ..errors import AigcWarning, BadInputError

VERSION = 1  # bump when what a translation depends on changes outside the key's parts
KEPT_RUNS = 16  # interrupted runs' files kept, those used last


class Checkpoint:
    """The translations of one run's sentences, by their place among the document's sentences."""

    def __init__(self, directory: Path | None = None, on_resume: Callable[[int, int], None] | None = None):
        self.directory = directory or config.cache_dir() / "translate"
        self.on_resume = on_resume  # called with (sentences reused, sentences in all) where a run resumes
        self.path: Path | None = None
        self.kept = 0  # sentences whose translation the file holds
        self.total = 0
        self.broken = False
        self.busy = False  # another process holds the run's file: this run neither reads nor writes it
        self._lock = contextlib.ExitStack()  # the run's file held, from start to release

    def start(self, key: list[Any], total: int) -> dict[int, dict[str, Any]]:
        """What an earlier run with this `key` (all that the translations depend on) kept, by place."""
        made = json.dumps([VERSION, *key], ensure_ascii=False, default=str)
        self.path = self.directory / (hashlib.sha256(made.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".jsonl")
        self.total, found = total, {}
        if not self._hold():
            return found
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):  # none yet (or unreadable): every sentence is to translate
            return found
        for line in lines:
            try:
                entry = json.loads(line)
                if 0 <= entry["at"] < total and isinstance(entry["translation"], str):
                    found[entry["at"]] = entry
            except (ValueError, KeyError, TypeError):  # the last line of a run killed while writing it
                continue
        self.kept = len(found)
        with contextlib.suppress(OSError):
            os.utime(self.path)  # used now: kept longest
        if found and self.on_resume:
            self.on_resume(len(found), total)
        return found

    def _hold(self) -> bool:
        """Hold the run's file; where another process holds it, warn and go on without it."""
        self.release()  # a lock this process held for an earlier run
        self.busy = False
        with contextlib.suppress(OSError):  # its lock beside it, where every run looks for it
            self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.enter_context(locks.held(self.path))
        except BadInputError:
            self.busy = True
            warnings.warn(
                f"another aigc is translating this text with the same model and settings, keeping its translations in {self.path}; "
                "this run translates all of it, without resuming from or adding to them", AigcWarning, stacklevel=3,
            )
            return False
        return True

    def release(self) -> None:
        """Let go of the run's file (its translations stay, for a run to resume): the run has stopped."""
        self._lock.close()

    def keep(self, entries: list[dict[str, Any]]) -> None:
        """Add translations (`{"at", "translation", ...}`) to the run's file, made on the first."""
        if self.broken or self.busy or not entries or self.path is None:
            return
        try:
            if not self.path.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
                _prune(self.path.parent, KEPT_RUNS)
            with open(self.path, "a", encoding="utf-8") as file:
                file.write("".join(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries))
        except OSError as exc:
            self.broken = True
            warnings.warn(
                f"cannot keep the translations made so far in {self.directory} ({exc.strerror or exc}), so an interrupted run would start over; "
                "point AIGC_CACHE_DIR at a writable directory to keep them", AigcWarning, stacklevel=2,
            )
            return
        self.kept += len(entries)

    def finish(self) -> None:
        """The run's result is written: its translations are not needed again (unless another run
        took them up meanwhile)."""
        self.release()
        if self.path is not None and not self.busy:
            with contextlib.suppress(OSError, BadInputError), locks.held(self.path):
                self.path.unlink(missing_ok=True)


def _prune(directory: Path, kept: int) -> None:
    """Remove all but the `kept` run files used last."""
    def used(file: Path) -> float:
        try:
            return file.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0

    for old in sorted(directory.glob("*.jsonl"), key=used, reverse=True)[kept:]:
        old.unlink(missing_ok=True)
