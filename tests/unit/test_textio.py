import re

import sys

import pytest

from aigc.errors import BadInputError
from aigc.html_text import html_to_text
from aigc.textio import STDIN, decode_text, file_style, numbered_lines, parse_json, read_document, read_input


def test_html_text_is_extracted_and_scripts_dropped(tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<html><head><style>p{}</style></head><body><h1>Title</h1><script>alert(1)</script>"
                    "<p>First &amp; one.</p><p>Second\n  para.</p></body></html>")
    assert read_document(str(page)) == "# Title\n\nFirst & one.\n\nSecond para."
    page.write_text("<body><nav><a href='/'>Home</a> | About</nav><h1>Bees</h1><p>They buzz.</p><footer>© 2025 Bee News</footer></body>")
    assert read_document(str(page)) == "# Bees\n\nThey buzz."  # navigation and footer are not the page's words


def test_html_lists_and_pre_come_as_markdown():
    page = ('<ul><li>one</li><li></li><li>two <b>bold</b></li></ul><p>See <a href="https://x.org/a">our page</a>'
            '<noscript><a href="/x">js off</a></noscript>.</p><pre><code>hours = "10-21"\n  indented<br>next\n</code></pre><pre>x ``` y</pre>')
    assert html_to_text(page) == (
        '- one\n\n- two bold\n\nSee our page.\n\n```\nhours = "10-21"\n  indented\nnext\n```\n\n````\nx ``` y\n````'
    )


def test_an_html_page_in_another_charset_is_read_in_the_one_its_meta_declares(tmp_path):
    page = tmp_path / "page.html"
    page.write_bytes(b'<html><head><meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1"></head><p>Caf\xe9 \x93cr\xe8me\x94</p></html>')
    assert read_document(str(page)) == "Caf\u00e9 \u201ccr\u00e8me\u201d"  # ISO-8859-1 read as windows-1252, as browsers do
    page.write_bytes('<meta charset="shift_jis"><p>\u732b</p>'.encode("shift_jis"))
    assert read_document(str(page)) == "\u732b"
    page.write_bytes('<meta charset="latin1"><p>\u732b</p>'.encode())
    assert read_document(str(page)) == "\u732b"  # UTF-8, whatever it declares
    text = tmp_path / "notes.txt"
    text.write_bytes(b'Caf\xe9 <meta charset="latin1">')
    with pytest.raises(BadInputError, match="not valid UTF-8"):
        read_document(str(text))  # only a page is read in its declared charset


def test_html_ordered_lists_keep_their_numbers():
    page = '<ol start="3"><li>three<ul><li>dot</li></ul></li><li></li><li value="7">seven</li><li>eight</li></ol><ol><li>one</li></ol>'
    assert html_to_text(page) == "3. three\n\n   - dot\n\n7. seven\n\n8. eight\n\n1. one"


def test_an_html_headings_permalink_is_left_out():
    page = '<h2><a href="#setup">#</a> Setup</h2><h2>Install<a class="headerlink" href="#install">\u00b6</a></h2><h3>Learn C#</h3><p>See \u00b6 2.</p>'
    assert html_to_text(page) == "## Setup\n\n## Install\n\n### Learn C#\n\nSee \u00b6 2."


def test_html_links_are_markdown_links_only_on_request(tmp_path):
    page = ('<h2>Setup<a href="#setup">\u00b6</a></h2><p>See <a href="https://x.org/a_(b)">the <b>docs</b></a>, <a href="javascript:go()">this</a>'
            ' and <a href="/faq">[FAQ]</a>.</p><table><tr><td><a href="/u">cell</a></td></tr></table>')
    assert html_to_text(page) == "## Setup\n\nSee the docs, this and [FAQ].\n\n| cell |\n|---|"  # as summarize reads it: no URLs
    assert html_to_text(page, links=True) == "## Setup\n\nSee [the docs](https://x.org/a_(b)), this and [FAQ].\n\n| [cell](/u) |\n|---|"
    (tmp_path / "page.html").write_text(page)
    assert "[the docs](https://x.org/a_(b))" in read_input(str(tmp_path / "page.html"), links=True)
    assert "https" not in read_input(str(tmp_path / "page.html"))


def test_an_html_link_whose_target_has_spaces_keeps_it_percent_encoded():
    page = '<p>Open <a href=" my file.html#part two ">the file</a> or <a href="a\n b.html">this one</a>.</p>'
    assert html_to_text(page, links=True) == "Open [the file](my%20file.html#part%20two) or [this one](a%20b.html)."  # as a browser reads the target


def test_an_html_list_items_first_paragraph_keeps_its_marker():
    page = "<ol><li>\n<p>Open it.</p></li><li><div><p>Run it.</p></div><p>It takes a while.</p></li></ol><p>Done.</p>"
    assert html_to_text(page) == "1. Open it.\n\n2. Run it.\n\n   It takes a while.\n\nDone."  # the item's second paragraph, under its text


def test_html_tables_definitions_and_inline_code_come_as_markdown():
    page = ("<table><tr><th>Name</th><th>Age</th></tr><tr><td><p>Ann</p><ul><li>Lee</li></ul></td><td>30 | 31</td></tr><tr></tr></table>"
            "<dl><dt>Term</dt><dd>Its sense</dd></dl><p>Run <code>ls -l</code>.</p>")
    assert html_to_text(page) == "| Name | Age |\n|---|---|\n| Ann Lee | 30 \\| 31 |\n\nTerm\n: Its sense\n\nRun `ls -l`."


def test_html_quotes_nested_lists_and_definitions_keep_their_structure():
    page = ("<p>Intro.</p><blockquote><p>Said.</p><ul><li>a<pre>x = 1</pre></li></ul><blockquote>Deeper</blockquote></blockquote>"
            "<ul><li>Top<ul><li>Child<ol><li>Deep</li></ol></li></ul></li><li>Open<li>Unclosed</ul>"
            "<dl><dt>Term</dt><dd>Its sense.</dd><dd><p>Another.</p><p>More.</p></dd></dl>")
    assert html_to_text(page).split("\n") == [
        "Intro.", "", "> Said.", ">", "> - a", ">", ">   ```", ">   x = 1", ">   ```", ">", "> > Deeper", "",
        "- Top", "", "  - Child", "", "    1. Deep", "", "- Open", "", "- Unclosed", "",
        "Term", ": Its sense.", ": Another.", "", "    More.",
    ]


def test_a_document_keeps_its_first_lines_indent(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("\n\n    $ foo --help\n\nText.\n\n")
    assert read_document(str(doc)) == "    $ foo --help\n\nText."


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


def test_a_url_for_a_file_says_to_download_it_first(tmp_path):
    with pytest.raises(BadInputError) as caught:
        read_document("https://example.com/notes?id=1&x=2")  # llm -f URL fetches it; aigc reads files
    assert str(caught.value) == "no such file: https://example.com/notes?id=1&x=2 (aigc reads local files, not URLs; download it first: curl -sL 'https://example.com/notes?id=1&x=2' -o FILE)"
    with pytest.raises(BadInputError) as caught:
        read_document(str(tmp_path / "http:" / "notes.txt"))  # a path that only holds http:
    assert "URL" not in str(caught.value)
    with pytest.raises(BadInputError) as caught:
        read_input("https://example.com/post.html")  # translate, classify, embed: a document's name, not text
    assert str(caught.value) == "no such file: https://example.com/post.html (aigc reads local files, not URLs; download it first: curl -sL https://example.com/post.html -o FILE)"
    assert read_input("https://example.com/blog/launch") == "https://example.com/blog/launch"  # classify, embed: a URL may be the text
    with pytest.raises(BadInputError) as caught:
        read_input("https://example.com/blog/launch", urls_as_text=False)  # translate: a URL has nothing to translate
    assert str(caught.value) == "no such file: https://example.com/blog/launch (aigc reads local files, not URLs; download it first: curl -sL https://example.com/blog/launch -o FILE)"


@pytest.mark.parametrize("name", ["reveiws.csv", "data.jsonl", "notes.tsv", "rows.json", "notes.txt"])
def test_a_missing_file_of_a_data_suffix_is_no_such_file_not_text_to_classify(tmp_path, name):
    with pytest.raises(BadInputError, match=f"^no such file: {re.escape(str(tmp_path / name))}$"):
        read_input(str(tmp_path / name))
    assert read_input("v1.5") == "v1.5" and read_input("see data.csv") == "see data.csv"  # words, not a file name


@pytest.mark.parametrize("name", ["docs/report.pdf", "./notes.docx", "../notes", "~/notes", "/home/me/notes.rst", "data.parquet", "report.PDF", "drafts/"])
def test_one_word_that_reads_as_a_path_and_names_no_file_is_no_such_file_not_the_text(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BadInputError, match=f"^no such file: {re.escape(name)}$"):
        read_input(name)


@pytest.mark.parametrize("text", ["good movie", "a/b testing rocks", "and/or", "24/7", "TCP/IP", "1/2.5", "Node.js", "v1.5", "https://example.com/blog/launch", "https://example.com/a.pdf",
                                  ":/", ":-/", "=/", "/s", "/start", "www.example.com/", "example.com/about.php", "github.com/u/r.git"])
def test_words_with_a_slash_or_a_dot_are_the_text(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    assert read_input(text) == text


def test_html_after_comments_is_detected(tmp_path):
    page = tmp_path / "page.txt"
    page.write_text("<!-- saved page -->\n<!DOCTYPE html><html><body><p>Bees</p><script>x()</script></body></html>")
    assert read_document(str(page)) == "Bees"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read_and_without_one_says_how_to_convert(tmp_path, encoding):
    path = tmp_path / "in.txt"
    path.write_bytes((("" if encoding == "utf-16" else "\ufeff") + "Grüße, 世界\n").encode(encoding))  # utf-16 writes its own mark
    assert read_document(str(path)) == "Grüße, 世界"
    for endian in ("le", "be"):  # told apart by where the NULs fall
        path.write_bytes("Grüße, the world".encode(f"utf-16-{endian}"))
        with pytest.raises(BadInputError, match=f"iconv -f utf-16{endian} "):
            read_document(str(path))
    path.write_bytes("Grüße, 世界".encode("utf-32"))  # its mark begins like UTF-16's
    assert read_document(str(path)) == "Grüße, 世界"
    path.write_bytes(bytes(64))  # NULs only: no side to tell
    with pytest.raises(BadInputError, match=r"binary file; give a document \(\.txt, \.md or \.html, \.srt/\.vtt/\.sbv/\.ass/\.ssa subtitles or \.eml/\.mbox e-mail\)$"):
        read_document(str(path))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(BadInputError, match=r"binary file; give a document \(\.txt, \.md or \.html, \.srt/\.vtt/\.sbv/\.ass/\.ssa subtitles or \.eml/\.mbox e-mail\)$"):  # no UTF-16 hint for an image
        read_document(str(path))


def test_lines_end_at_line_feeds_only_and_keep_their_numbers(tmp_path):
    assert numbered_lines("\n\nfirst\u2028still first\r\n\nsecond\x85 too\n") == [(3, "first\u2028still first"), (5, "second\x85 too")]
    assert numbered_lines("I loved it\nprogress 10%\rprogress 100% terrible\nawful\n") == [(1, "I loved it"), (2, "progress 10%\rprogress 100% terrible"), (3, "awful")]  # as wc -l counts
    path = tmp_path / "in.txt"
    path.write_text("\n<html> is a language\n")
    assert read_input(str(path), lines=True) == "\n<html> is a language\n"  # as lines: no markup read, nothing cut
    page = tmp_path / "page.html"
    page.write_text("<p>One</p><p>Two</p>")
    assert numbered_lines(read_input(str(page), lines=True)) == [(1, "One"), (3, "Two")]  # an .html file by its suffix: its paragraphs


def test_text_that_is_not_utf8_names_its_line_and_the_hint_keeps_the_suffix():
    with pytest.raises(BadInputError, match=r"latin.csv is not valid UTF-8 \(at line 2\); .*convert it first, e.g. `iconv -f \S+ -t utf-8 latin.csv > converted.csv`"):
        decode_text(b"\xef\xbb\xbfid,text\n1,caf\xe9\n", "latin.csv")  # a byte-order mark is not counted
    with pytest.raises(BadInputError, match=r"notes is not valid UTF-8 \(at line 1\); .* > converted.txt`"):
        decode_text(b"caf\xe9", "notes")
    with pytest.raises(BadInputError, match=r"^the examples x.tsv is not valid UTF-8 \(at line 1\); .* utf-8 x.tsv > converted.tsv`(, ENCODING being .*)?$"):
        decode_text(b"caf\xe9", "the examples x.tsv", path="x.tsv")  # the file named, not the words around it


@pytest.mark.parametrize(
    "text, encoding, named",
    [
        ("人工智能正在改变内容创作的方式。许多公司开始使用大型语言模型来撰写新闻稿！但是专家警告说，这些模型可能产生不准确的信息。读者需要提高媒体素养。", "gbk", "GB18030"),
        ("東京で花見をします。桜が好きです。今年の春はとても暖かいので、花が早く咲きました。友達と一緒に公園へ行きます。", "shift_jis", "CP932"),
        ("Пчёлы на крыше: пять секретов городского мёда. Летом пасечники собирают много мёда в центре Москвы.", "koi8_r", "KOI8-R"),
    ],
)
def test_the_hint_for_text_in_another_encoding_names_its_likely_encoding_not_latin1(text, encoding, named):
    pytest.importorskip("charset_normalizer")
    with pytest.raises(BadInputError) as failed:
        decode_text(text.encode(encoding), "doc.txt")
    assert str(failed.value) == f"doc.txt is not valid UTF-8 (at line 1); it looks like {named}: convert it first, e.g. `iconv -f {named} -t utf-8 doc.txt > converted.txt`"
    with pytest.raises(BadInputError, match=f"pipe it through `iconv -f {named} -t utf-8`$"):
        decode_text(text.encode(encoding), STDIN)


@pytest.mark.parametrize("data", [b"caf\xe9", b"caf\xe9\tcoffee\n", "人工".encode("gbk")])
def test_a_few_odd_bytes_that_fit_many_encodings_get_no_guess(data):
    pytest.importorskip("charset_normalizer")
    with pytest.raises(BadInputError, match=r"`iconv -f ENCODING -t utf-8 doc.txt > converted.txt`, ENCODING being the one it was saved in"):
        decode_text(data, "doc.txt")  # charset_normalizer's first guess for caf\xe9 is UTF-16-BE


def test_without_charset_normalizer_the_hint_names_no_encoding_rather_than_latin1(monkeypatch):
    monkeypatch.setitem(sys.modules, "charset_normalizer", None)  # not installed
    with pytest.raises(BadInputError) as failed:
        decode_text("人工智能正在改变内容创作的方式。".encode("gbk"), "doc.txt")
    assert str(failed.value) == (
        "doc.txt is not valid UTF-8 (at line 1); convert it first, e.g. `iconv -f ENCODING -t utf-8 doc.txt > converted.txt`, "
        "ENCODING being the one it was saved in (CP1252, GB18030, SHIFT_JIS, ...)"
    )


def test_bytes_that_are_not_utf8_and_hold_control_bytes_are_a_binary_file_not_another_encoding():
    import random

    rng = random.Random(7)
    noise = bytes(rng.randrange(1, 256) for _ in range(100))  # no NUL to tell it by
    for name in ("rows.jsonl", STDIN):
        with pytest.raises(BadInputError, match=f"^{name} looks like a binary file; give a document \\(.txt"):
            decode_text(noise, name)
    text = "Où est la gare? Ça coûte 5 €.\f\x1a\n".encode("cp1252") * 3  # a page break and DOS's end of file: still text
    with pytest.raises(BadInputError, match="is not valid UTF-8"):
        decode_text(text, "notes.txt")


def test_a_pdf_or_word_document_says_how_to_take_its_text_out(tmp_path):
    import io
    import zipfile

    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
    with pytest.raises(BadInputError, match=r"^my paper.pdf looks like a binary file; give .* \(a PDF: take its text out first, e.g. `pdftotext 'my paper.pdf' -`, and pipe that in\)$"):
        decode_text(pdf, "my paper.pdf")
    with pytest.raises(BadInputError, match=r"^standard input looks like .* `pdftotext FILE -`"):
        decode_text(pdf, STDIN)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as docx:
        docx.writestr("[Content_Types].xml", "<Types/>")
        docx.writestr("word/document.xml", "<w:document/>")
    with pytest.raises(BadInputError, match=r"\(a Word document: take its text out first, e.g. `pandoc -t plain notes.docx`, and pipe that in\)$"):
        decode_text(packed.getvalue(), "notes.docx")


@pytest.mark.parametrize(
    "data, style",
    [
        ("a\r\nb\r\n".encode("utf-8"), (True, "utf-8")),
        ("\ufeffa\r\nb\r\n".encode("utf-16-le"), (True, "utf-16-le")),
        ("\ufeffa\r\nb\r\n".encode("utf-16-be"), (True, "utf-16-be")),
        ("\ufeffa\nb\n".encode("utf-16-le"), (False, "utf-16-le")),
        ("\ufeffa\r\nb\r\n".encode("utf-32-le"), (True, "utf-32-le")),
        ("a\nb\n".encode("utf-8"), (False, "utf-8")),
        ("\ufeffa\r\nb\r\n".encode("utf-8"), (True, "utf-8-sig")),
    ],
)
def test_file_style_counts_line_ends_in_the_decoded_text(tmp_path, data, style):
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    assert file_style(str(path)) == style
    assert file_style("-") == (False, "utf-8")


def test_json_nested_too_deeply_is_a_value_error_like_other_bad_json():
    deep = "[" * 100000 + "]" * 100000
    for text in (deep, deep.encode()):
        with pytest.raises(ValueError, match="^nested too deeply$"):
            parse_json(text)
    assert parse_json(b'{"a": [1.5]}', parse_float=str) == {"a": ["1.5"]}  # json.loads' options are passed on


def test_command_line_text_in_another_encoding_names_its_likely_encoding():
    from aigc.textio import check_utf8

    pytest.importorskip("charset_normalizer")
    argument = "人工智能正在改变内容创作的方式。许多公司开始使用大型语言模型来撰写新闻稿！".encode("gbk").decode("utf-8", "surrogateescape")  # as Python reads argv
    with pytest.raises(BadInputError, match=r"convert with `iconv -f GB18030 -t utf-8`\)$"):
        check_utf8({"prompt": [argument]}, "prompt")
    with pytest.raises(BadInputError, match=r"convert with `iconv -f ENCODING -t utf-8`\)$"):
        check_utf8("\ud800", "prompt")  # no bytes behind it to guess from


@pytest.mark.parametrize(
    "text, encoding, named",
    [
        ("Café crème, München. La ville a voté mardi pour créer des jardins sur les toits des écoles. Les critiques s'inquiètent du coût, mais le maire parle d'un « investissement » pour l'été. Une idée naïve?", "cp1252", "CP1252"),
        ("Café crème à la française: le conseil a décidé. Où est l'élève? Ça coûte cher, dit-il. Noël approche.", "latin-1", "CP1252"),
        ("Die Bürger in München stimmten am Dienstag für Gärten auf den Dächern. Kritiker äußerten Bedenken über die Kosten; die Größe der Flächen ist fraglich. „Schön“, sagte er.", "cp1252", "CP1252"),
        ("El ayuntamiento votó el martes a favor de crear jardines en los tejados. ¿Cuánto costará? Los críticos señalaron que el año pasado la señora Núñez pidió más información.", "cp1252", "CP1252"),
        ("Městská rada v úterý odhlasovala zřízení zahrad na střechách škol. Kritici se obávají nákladů, ale starosta řekl, že jde o investici. Příští léto bude žluťoučký kůň úpět ďábelské ódy.", "cp1250", "CP1250"),
        ("Rada miejska we wtorek zagłosowała za utworzeniem ogrodów na dachach szkół. Krytycy obawiają się kosztów, ale burmistrz powiedział, że to inwestycja. Zażółć gęślą jaźń — pchnąć w tę łódź jeża.", "cp1250", "CP1250"),
        ("A városi tanács kedden megszavazta, hogy az iskolák tetején kerteket hozzanak létre. Árvíztűrő tükörfúrógép. A kritikusok aggódnak a költségek miatt.", "cp1250", "CP1250"),
    ],
)
def test_western_and_central_european_text_is_told_apart_by_its_letters(text, encoding, named):
    pytest.importorskip("charset_normalizer")  # it ties CP1250 with CP1252 on French, and names CP1250 or CP1257 first
    with pytest.raises(BadInputError, match=f"it looks like {named}: convert it first, e.g. `iconv -f {named} -t utf-8 doc.txt"):
        decode_text(text.encode(encoding), "doc.txt")
    assert text.encode(encoding).decode(named) == text  # converting as the hint says gives the text back


def test_a_few_stray_nul_bytes_are_dropped_with_a_warning_wherever_they_are_and_many_are_binary():
    from aigc.errors import AigcWarning

    text = "The city council voted on Tuesday to expand the rooftop garden program. " * 200  # 14 KB
    for at in (200, 12000):  # in the first 8 KB or after it: the same
        with pytest.warns(AigcWarning, match=rf"^doc.txt holds 1 NUL byte \(at byte {at}\), which no text holds; read without it$"):
            assert decode_text((text[:at] + "\x00" + text[at:]).encode(), "doc.txt") == text
    with pytest.warns(AigcWarning, match=r"holds 3 NUL bytes \(the first at byte 14400\)"):
        assert decode_text((text + "\x00\x00\x00").encode(), "doc.txt") == text
    for data in ((text + "\x00" * 500).encode(), text.encode() + bytes(range(256)) * 20):  # padded with NULs, or a binary tail after 8 KB
        with pytest.raises(BadInputError, match="^doc.txt looks like a binary file"):
            decode_text(data, "doc.txt")
    with pytest.raises(BadInputError, match=r"UTF-16 without a byte-order mark: convert it with `iconv -f utf-16le"):
        decode_text(text.encode("utf-16-le"), "doc.txt")


def test_an_rtf_document_is_refused_with_a_command_that_takes_its_text_out():
    rtf = rb"{\rtf1\ansi\deff0 {\fonttbl {\f0 Times New Roman;}}\f0\fs24 The council voted.\par}"
    with pytest.raises(BadInputError, match=r"^my doc.rtf is an RTF document, which aigc does not read; take its text out first, e.g. `pandoc -t plain 'my doc.rtf'`, and pipe that in$"):
        decode_text(rtf, "my doc.rtf")
    with pytest.raises(BadInputError, match=r"`pandoc -t plain FILE`"):
        decode_text(rtf, STDIN)


MAIL = (
    b"From: Ann <ann@example.com>\nTo: Bob <bob@example.com>\nSubject: =?UTF-8?Q?Garden_update_=E2=80=94_vote?=\n"
    b"MIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n"
    b"The council voted for gardens. They cost two mil=\nlion dollars, caf=E9 included.\n\n"
    b"On Mon, Bob <bob@example.com> wrote:\n> Will it pass?\n>> Older.\n\nSee you.\n-- \nAnn\n+1 555 0100\n"
)


def test_an_email_is_read_as_its_subject_and_text_without_quoted_replies_or_signature(tmp_path):
    expected = "# Garden update \u2014 vote\n\nThe council voted for gardens. They cost two million dollars, caf\u00e9 included.\n\nSee you."
    (tmp_path / "mail.eml").write_bytes(MAIL)
    assert read_document(str(tmp_path / "mail.eml")) == expected
    (tmp_path / "saved").write_bytes(MAIL.replace(b"\n", b"\r\n"))  # no suffix: told by its MIME-Version header
    assert read_document(str(tmp_path / "saved")) == expected
    memo = tmp_path / "memo.txt"
    memo.write_bytes(b"From: Ann\nTo: Bob\nSubject: Plans\n\nWe meet at noon.\n> not a reply")
    assert read_document(str(memo)) == memo.read_text()  # a memo's From:/To: lines are not enough to make it mail
    assert read_input(str(tmp_path / "mail.eml"), lines=True).startswith("From: Ann")  # as lines: as it is


def test_an_html_email_and_a_mailbox_of_several_messages_are_read_in_order(tmp_path):
    import base64

    html = base64.b64encode("<html><body><p>Bees <b>buzz</b>.</p><p>Honey \u2014 sweet.</p></body></html>".encode()).decode()
    second = (
        "From: Bob\nSubject: Re: bees\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\n"
        f"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{html}\n--XX--\n"
    )
    box = tmp_path / "inbox.mbox"
    mailbox = b"From ann@example.com Tue Dec  1 10:00:00 2026\n" + MAIL + b"\nFrom bob@example.com Tue Dec  1 11:00:00 2026\n" + second.encode()
    for data in (mailbox, mailbox.replace(b"\n", b"\r\n")):
        box.write_bytes(data)
        assert read_document(str(box)) == (
            "# Garden update \u2014 vote\n\nThe council voted for gardens. They cost two million dollars, caf\u00e9 included.\n\nSee you."
            "\n\n# Re: bees\n\nBees buzz.\n\nHoney \u2014 sweet."
        )


def test_an_eml_or_mbox_without_a_from_header_is_still_read_as_e_mail_but_other_files_need_one(tmp_path):
    draft = (
        b"Subject: =?utf-8?q?Caf=C3=A9?=\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=XX\n\n--XX\n"
        b"Content-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n<p>Caf=E9 cr=E8me</p>\n--XX--\n"
    )
    for suffix in (".eml", ".mbox", ".EML"):
        (tmp_path / f"draft{suffix}").write_bytes(draft)
        assert read_document(str(tmp_path / f"draft{suffix}")) == "# Caf\u00e9\n\nCaf\u00e9 cr\u00e8me"
    odd = tmp_path / "odd.eml"
    odd.write_bytes(b"To: bob@example.com\nContent-Type: text/plain; charset=x-nonexistent\n\nHello there.\n")
    assert read_document(str(odd)) == "Hello there."
    (tmp_path / "draft.txt").write_bytes(draft)  # no mail suffix and no From: a text file as it is
    assert read_document(str(tmp_path / "draft.txt")).startswith("Subject: =?utf-8?q?Caf=C3=A9?=")
    (tmp_path / "notes.eml").write_bytes(b"Just some words: no headers here.\n\nMore.")  # no header block: as it is
    assert read_document(str(tmp_path / "notes.eml")) == "Just some words: no headers here.\n\nMore."


def test_an_e_mail_of_attachments_only_is_its_subject_with_a_warning(tmp_path, monkeypatch):
    from aigc.errors import AigcWarning

    monkeypatch.chdir(tmp_path)
    att = b"From: x@y.z\nSubject: att\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n"
    (tmp_path / "att.eml").write_bytes(att)
    with pytest.warns(AigcWarning, match=r"^att.eml has no text part: only its subject is read$"):
        assert read_document("att.eml") == "# att"
    (tmp_path / "in.mbox").write_bytes(b"From a Tue Dec  1 10:00:00 2026\n" + MAIL + b"\nFrom b Tue Dec  1 11:00:00 2026\n" + att)
    with pytest.warns(AigcWarning, match=r"^in.mbox: 1 of its 2 messages have no text part \(message 2\): only their subjects are read$"):
        assert read_document("in.mbox").endswith("See you.\n\n# att")
