import os

import pytest

from aigc.errors import BadInputError
from aigc.textio import html_to_text, read_document, write_atomic


def test_html_text_is_extracted_and_scripts_dropped(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><style>p{}</style></head><body><h1>Title</h1><script>alert(1)</script>"
                    "<p>First &amp; one.</p><p>Second\n  para.</p></body></html>")
    assert read_document(str(page)) == "Title\n\nFirst & one.\n\nSecond para."


def test_html_without_suffix_is_detected():
    assert html_to_text("<p>a</p><div>b</div>") == "a\n\nb"


@pytest.mark.parametrize(
    "content, words",
    [(b"", "empty"), (b"  \n\t ", "empty"), (b"\x89PNG\x00\x00\x01", "binary"), (b"\x89PNG\r\n\x1a\nIHDR", "binary"), ("caf\xe9".encode("latin-1"), "UTF-8")],
)
def test_unusable_files_are_bad_input(tmp_path, content, words):
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match=words):
        read_document(str(path))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_document(str(tmp_path / "nope.txt"))
    with pytest.raises(BadInputError, match="directory"):
        read_document(str(tmp_path))


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        write_atomic(target, "text")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_into_missing_directory_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        write_atomic(tmp_path / "no" / "out.txt", "x")
