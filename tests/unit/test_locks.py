import pytest

from aigc import locks
from aigc.errors import BadInputError


def test_processes_with_different_data_directories_share_the_lock_of_one_file(tmp_path, monkeypatch):
    out = tmp_path / "shared" / "out.jsonl"  # two users' `aigc batch -o`, or one cache of models
    out.parent.mkdir()
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "u1"))
    with locks.held(out, "busy") as locked:
        assert locked and locks.lock_file(out) == out.parent / ".out.jsonl.lock"
        monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "u2"))
        with pytest.raises(BadInputError, match="^busy$"), locks.held(out, "busy"):
            pytest.fail("two held the same file")
    assert list(out.parent.iterdir()) == []  # let go of: its lock file went too


def test_a_file_in_a_directory_that_cannot_be_written_is_locked_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(locks.os, "access", lambda path, mode: False)
    out = tmp_path / "read-only" / "out.jsonl"
    assert locks.lock_file(out).parent == tmp_path / "data" / "locks"
    with locks.held(out, "busy") as locked:
        assert locked and locks.lock_file(out).exists()
        with pytest.raises(BadInputError, match="^busy$"), locks.held(out, "busy"):
            pytest.fail("two held the same file")


def test_waiting_for_a_lock_with_a_timeout_gives_up_busy_after_it_or_takes_it_once_let_go(tmp_path):
    import threading
    import time

    out = tmp_path / "out.jsonl"
    with locks.held(out, "busy"):
        started = time.monotonic()
        with pytest.raises(BadInputError, match="^still busy$"), locks.held(out, "still busy", wait=True, timeout=0.3):
            pytest.fail("two held the same file")
        assert 0.3 <= time.monotonic() - started < 5
    holding, free = threading.Event(), threading.Event()

    def other() -> None:
        with locks.held(out, "busy"):
            holding.set()
            free.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    holding.wait(10)
    threading.Timer(0.2, free.set).start()
    with locks.held(out, "busy", wait=True, timeout=10) as locked:  # let go of after 0.2 s: taken then
        assert locked and free.is_set()
    thread.join()
