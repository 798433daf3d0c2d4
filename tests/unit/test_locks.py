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
