"""Markdown (or plain text) as blocks: headings, paragraphs, list items, definitions, quotes, table rows, code.

Each block holds literal Markdown pieces and the texts between them, so the texts can be rewritten
(translated) and the structure put back around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union

from rich.cells import cell_len

from .sentences import first_word, join_text

Piece = Union[str, int]  # literal Markdown, or the index of a text to translate


@dataclass
class Block:
    """One block of the document: literal pieces and the indexes of translated texts between them."""

    kind: str
    pieces: list[Piece]
    texts: list[str] = field(default_factory=list)
    quotes: dict[int, str] = field(default_factory=dict)  # a front matter value's text: how it is quoted (`_scalar`)

    def render(self, translations: list[str]) -> str:
        return "".join(p if isinstance(p, str) else _scalar(translations[p], self.quotes[p]) if p in self.quotes else translations[p] for p in self.pieces)


# --- Markdown blocks -------------------------------------------------------------------------

_FENCE = re.compile(r"^([ \t]*)(`{3,}(?=[^`]*$)|~{3,}|\$\$(?=[ \t]*$))")  # $$ opens math; ```ls``` is inline code; the indent allowed: `_fence`
_RULE = re.compile(r"^ {0,3}(?:([-*_])(?:[ \t]*\1){2,}|=+)[ \t]*$")  # also a setext heading's underline
_HEADING = re.compile(r"^( {0,3}#{1,6}[ \t]+)(.*?)([ \t]+#+)?[ \t]*$")
_MARKER = re.compile(r"[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+")  # a list item's marker, without a task box
_ITEM = re.compile(r"^([ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+(?:\[[ xX]\][ \t]+)?)(\S.*)$")
_DEFINITION = re.compile(r"^( {0,3}:[ \t]+)(\S.*)$")  # ": its definition", under a term's line (PHP Markdown Extra, Pandoc)
_QUOTE = re.compile(r"^([ \t]*(?:>[ \t]?)+)(.*)$")
_ALERT = re.compile(r"^\[![A-Za-z]+\][ \t]*$")  # > [!NOTE] (GitHub): a marker, not text
_TABLE = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
_TABLE_RULE = re.compile(r"^[ \t|:-]+$")
_TABLE_DELIMITER = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$")  # --- | :--: (GFM)
# HTML blocks (CommonMark): up to a closing marker, blank lines included (comments, <pre>, ...);
# block-level tags up to a blank line; any other tag only when it is alone on its line, and not in
# the middle of a paragraph. Inline tags and autolinks (<https://...>) are text.
_HTML_UNTIL = re.compile(r"^[ \t]{0,3}(?:(<!--|<\?|<!\[CDATA\[|<![A-Za-z])|<(pre|script|style|textarea)(?=[\s>]|$))", re.I)
_HTML_CLOSERS = {"<!--": "-->", "<?": "?>", "<![cdata[": "]]>", "pre": "</pre>", "script": "</script>", "style": "</style>", "textarea": "</textarea>"}
_HTML_BLOCK = re.compile(
    r"^[ \t]{0,3}(?:<[!?]|</?(?:address|article|aside|blockquote|body|caption|center|col|colgroup|dd|details|dialog|dir|"
    r"div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|iframe|legend|li|link|"
    r"main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|table|tbody|td|tfoot|th|"
    r"thead|title|tr|track|ul)(?=[\s/>]|$))",
    re.I,
)
_HTML_TAG_LINE = re.compile(r"^[ \t]{0,3}(?:<[A-Za-z][\w-]*(?:\s+[^<>]*)?/?>|</[A-Za-z][\w-]*\s*>)[ \t]*$")
_REFERENCE = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]*\S")  # [id]: https://... (a link definition)
_FOOTNOTE = re.compile(r"^([ \t]{0,3}\[\^[^\]]+\]:[ \t]*)(\S.*)$")  # [^1]: its text (prose, translated)
_LETTER = re.compile(r"[^\W\d_]")
# A docs site's structure on a line of its own, kept as it is: Hugo shortcodes ({{< note >}}, {{% /x %}}), Liquid, Jinja and
# Nunjucks tags and comments ({% endif %}, {%- if a -%}, {# note #}), Docusaurus admonition fences (:::tip, :::), MkDocs
# admonitions (!!! note "Title", ??? and ???+ folded ones: their quoted title and their text, indented 4, translated).
# Each tag ends at its own closing delimiter, so a line is structure only when it is tags and spaces: the text in
# `{% if x %}Text{% endif %}` is translated (its tags kept as placeholders).
_SITE_MARKUP = re.compile(
    r"^[ \t]*(?:(?:(?:\{\{[<%](?:(?![>%]\}\}).)*[>%]\}\}|\{%(?:(?!%\}).)*%\}|\{#(?:(?!#\}).)*#\})[ \t]*)+|:{3,}(?:[A-Za-z][\w-]*.*)?|(?P<mkdocs>(?:!!!|\?\?\?\+?)[ \t]+[A-Za-z][\w-]*.*))$"
)
# Jekyll/Liquid blocks whose body is code or not text, on lines of their own: kept as a fenced block is ({% highlight ruby %} ... {% endhighlight %}).
# Not {% raw %}: it often wraps a whole post so its {{ }} survive Liquid; its tag lines are site markup, its body Markdown.
_LIQUID_OPEN = re.compile(r"^[ \t]*\{%-?[ \t]*(highlight|comment)\b(?:(?!%\}).)*-?%\}[ \t]*$")
_ADMONITION_TITLE = re.compile(r'^([ \t]*(?:!!!|\?\?\?\+?)[ \t]+[\w-]+(?:[ \t]+[\w-]+)*[ \t]+")(.*)("[ \t]*)$')  # !!! note "Title": its title is text
# A placeholder that a program fills in: {{name}} (Handlebars, Jinja, Hugo's {{< shortcode >}} and {{% x %}}), a Liquid,
# Jinja or Nunjucks tag or comment ({% include "x.html" %}, {%- if a -%}, {# note #}), ${var}, %{name}, {name}, {0}, an ICU
# {count, plural, ...} whole, printf's %s, %d, %1$s, %(name)s, %.2f, %@, and Laravel's :name after a space (not 10:30, a
# URL or :emoji:). A tag holds no brace but a {{ value }}, so a stray `{%s}` does not run on to a later `%}`.
PLACEHOLDER = re.compile(
    r"\{\{[^{}\n]*\}\}|\{%(?:[^{}%\n]|%(?!\})|\{\{[^{}\n]*\}\})*%\}|\{#(?:[^{}#\n]|#(?!\}))*#\}"
    r"|[$%]\{[^{}\s]+\}"
    r"|\{[\w.-]+(?:\s*,[^{}\n]*(?:\{[^{}\n]*\}[^{}\n]*)*)?\}"
    r"|(?<!%)%(?:\d+\$)?(?:\([\w.]+\))?[-+0#]*(?:\d+|\*)?(?:\.\d+)?(?:hh?|ll?|[Lqjzt])?[sdifFeEgGxXoucp@](?![A-Za-z])"
    r"|(?<![^\s(\[\"'])(?<!\w):[a-z_][a-z0-9_]*(?![\w:/])"
)
# Inline spans that must come back unchanged: code (`x` or <code>x</code>, <kbd>, <samp>, <var>), link and image
# destinations (one level of parentheses inside), reference labels, footnote references, autolinks, bare URLs, emoji shortcodes,
# HTML entities (&amp;, &#8212;: a model writes & or drops them, breaking the HTML) and placeholders (above).
_PROTECTED = re.compile(
    r"(?<![`\\])(`+)(?!`).+?(?<!`)\1(?!`)"  # a code span: its runs of backticks whole (one way to match, however long the run)
    r"|\[[^\[\]\n]+\]\[\]"  # [Docs][]: its text is its label
    r"|\]\((?:[^()\s]|\([^()\s]*\))*(?:[ \t]+\"[^\"]*\")?\)"
    r"|\]\[[^\]]*\]"
    r"|\[\^[^\[\]\s]+\]"
    r"|<(?:https?://|mailto:)[^<>\s]+>|<[^<>\s@]+@[^<>\s@]+>"  # autolinks, e-mail ones too
    r"|\{#[\w.:-]+\}"  # a heading's id: ## Install {#install}
    r"|(?<![\w:]):[a-z0-9_+-]+:(?![\w:])"  # an emoji shortcode, :tada: (GitHub, Slack)
    r"|<(?P<code>code|kbd|samp|var|CODE|KBD|SAMP|VAR)(?:\s[^<>]*)?>.*?</(?P=code)\s*>"  # HTML's code, keys, output, variables: whole
    r"|<!--(?:(?!-->|<!--).)*-->|</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>"  # inline HTML: comments and tags (their attributes too)
    rf"|{PLACEHOLDER.pattern}"
    r"|\$(?=[^\s$])[^$\n]+?(?<=[^\s$])\$(?!\d)"  # inline math, $x = y$ (not $5 and $10)
    r"|&(?:[A-Za-z][A-Za-z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});"  # an entity (CommonMark's forms)
    r"|(?:https?://|www\.)(?:[^\s<>()\[\]]|\([^\s<>()]*\))*(?:[^\s<>()\[\].,;:!?'\"]|\([^\s<>()]*\))"
)
_BRACKET = re.compile(r"!?\[|\]")
# Emphasis and strikethrough delimiters (**bold**, *italic*, _x_, ~~gone~~): a run that opens
# (before a non-space) or closes (after one); `_` not inside a word (snake_case), none escaped.
_EMPHASIS = re.compile(
    r"(?<![\\*])\*{1,3}(?=[^\s*])|(?<=[^\s*\\])\*{1,3}(?!\*)"
    r"|(?<![\\\w])_{1,3}(?=[^\s_])|(?<=[^\s_\\])_{1,3}(?![\w])"
    r"|(?<![\\~])~~(?=[^\s~])|(?<=[^\s~\\])~~(?!~)"
)


def _html_starts(line: str, in_paragraph: bool = False) -> bool:
    """Whether `line` starts an HTML block (inside a paragraph only the kinds that may interrupt one)."""
    return bool(_HTML_UNTIL.match(line) or _HTML_BLOCK.match(line) or (not in_paragraph and _HTML_TAG_LINE.match(line)))


def _fence(text: str, most: int) -> re.Match | None:
    """A code fence opening `text`, indented `most` columns at most (3, or a list item's text column + 3)."""
    match = _FENCE.match(text)
    return match if match and _indent(match.group(1)) <= most else None


def _starts_block(line: str) -> bool:
    """Whether `line` ends the paragraph before it."""
    return bool(
        not line.strip() or _fence(line, 3) or _SITE_MARKUP.match(line) or _RULE.match(line) or _HEADING.match(line) or _ITEM.match(line)
        or _DEFINITION.match(line) or _QUOTE.match(line) or _TABLE.match(line) or _html_starts(line, in_paragraph=True)
    )


def protected_ranges(text: str) -> list[tuple[int, int]]:
    """Where the protected spans of `text` lie, as `(start, end)`: no sentence is cut inside one."""
    return [m.span() for m in _PROTECTED.finditer(text)]


def protected_spans(text: str) -> list[str]:
    """The inline spans of `text` a translation must keep unchanged (code, link targets, URLs)."""
    return [m.group(0) for m in _PROTECTED.finditer(text)]


def placeholders(text: str) -> list[str]:
    """The placeholders of `text` outside its code spans and tags ({name}, %s, ...), in order."""
    return [span for span in protected_spans(text) if PLACEHOLDER.fullmatch(span)]


def emphasis_marks(text: str) -> list[str]:
    """The emphasis and strikethrough delimiters of `text` outside its protected spans, in order."""
    return _EMPHASIS.findall(_PROTECTED.sub("x", text))


def keeps_markup(source: str, translation: str) -> bool:
    """Whether `translation` still has every protected span of `source`, as many link brackets and
    the same emphasis delimiters (a lost or unbalanced `**` is not kept)."""
    spans = protected_spans(source)
    return (
        all(translation.count(span) >= spans.count(span) for span in set(spans))
        and all(translation.count(b) == source.count(b) for b in "[]")
        and sorted(emphasis_marks(translation)) == sorted(emphasis_marks(source))
    )


def without_emphasis(text: str) -> str:
    """`text` without emphasis delimiters outside its protected spans (a model's stray `**`)."""
    parts = [(m.start(), m.end()) for m in _PROTECTED.finditer(text)]
    out, start = [], 0
    for a, b in [*parts, (len(text), len(text))]:
        out += [_EMPHASIS.sub("", text[start:a]), text[a:b]]
        start = b
    return "".join(out)


def inline_parts(text: str) -> list[tuple[bool, str]]:
    """`text` cut around its protected spans, link brackets and emphasis delimiters: `(True, words)` for each run of
    words (from its first letter, without the spaces and opening brackets after it: "CI" of "CI (`x`)"),
    `(False, literal)` for everything else; joined, they give `text` back."""
    parts: list[tuple[bool, str]] = []
    start = 0
    literal = re.compile(f"{_PROTECTED.pattern}|{_BRACKET.pattern}|{_EMPHASIS.pattern}")
    for match in [*literal.finditer(text), None]:
        run = text[start : match.start() if match else len(text)]
        first = _LETTER.search(run)
        if first:  # punctuation and spaces before the words, and spaces and brackets opening the markup after, stay literal
            lead, core = run[: first.start()], run[first.start() :].rstrip().rstrip("([{").rstrip()
            parts += [(False, lead), (True, core), (False, run[len(lead) + len(core) :])]
        else:
            parts.append((False, run))
        if match:
            parts.append((False, match.group(0)))
            start = match.end()
    return [(is_text, piece) for is_text, piece in parts if piece]


def _indent(line: str) -> int:
    """The columns of white space `line` starts with (a tab to the next multiple of 4)."""
    expanded = line.expandtabs(4)
    return len(expanded) - len(expanded.lstrip())


def _hard_break(line: str) -> str:
    """The Markdown ending `line` with a hard line break: two or more spaces, or a backslash that is
    not itself escaped (`\\\\` is a literal one); "" when the line just wraps."""
    spaces = len(line) - len(line.rstrip(" "))
    if spaces >= 2:
        return line[-spaces:]
    return "\\" if (len(line) - len(line.rstrip("\\"))) % 2 else ""


def _kept_line(line: str, nxt: str, width: int) -> bool:
    """In plain text, whether the break after `line` was meant (an address, a list, a signature, a
    paragraph's end): the next line's first word (in Chinese or Japanese, its first character) would
    have fit on it within `width` columns, so no wrapping put it there, or the paragraph has a line
    wider than text is wrapped at (a paragraph a line). A Chinese or Japanese character is two columns."""
    return width > 100 or cell_len(line.rstrip()) + 1 + cell_len(first_word(nxt)) <= width


def _text_block(kind: str, before: str, text: str, after: str = "") -> Block:
    """A block whose text is translated, unless it has no letters outside code and URLs."""
    return _broken_block(kind, before, [text], [], after)


def _joined(line: str) -> str:
    """`line` with runs of spaces, tabs and line breaks outside its code, tags and URLs made one
    space (lines of a paragraph re-joined); a no-break space or the spaces inside code stay."""
    kept = protected_ranges(line)
    out, start = [], 0
    for a, b in [*kept, (len(line), len(line))]:
        out += [re.sub(r"[ \t\n]+", " ", line[start:a]), line[a:b]]
        start = b
    return "".join(out).strip(" \t\n")


def _broken_block(kind: str, before: str, lines: list[str], breaks: list[str], after: str = "") -> Block:
    """A block of lines joined by hard line breaks (`breaks[i]` is the literal Markdown between line
    i and i+1); each line's text is translated on its own, unless it has no letters outside code and URLs."""
    block = Block(kind, [before])
    for i, line in enumerate(lines):
        text = _joined(line)
        if any(is_text for is_text, _ in inline_parts(text)):
            block.pieces.append(len(block.texts))
            block.texts.append(text)
        else:
            block.pieces.append(text)
        block.pieces.append(breaks[i] if i < len(breaks) else after)
    return block


def _inner_marker(content: str) -> tuple[str, str]:
    """A heading, list or definition marker at the start of a quoted line, and the text after it."""
    for pattern in (_HEADING, _ITEM, _DEFINITION):
        match = pattern.match(content)
        if match:
            return match.group(1), match.group(2)
    return "", content


def _table_row(line: str) -> Block:
    if _TABLE_RULE.match(line):
        return Block("table", [line])
    block = Block("table", [])
    for i, cell in enumerate(re.split(r"(?<!\\)\|", line)):  # `a \| b` is one cell
        if i:
            block.pieces.append("|")
        inner = cell.strip()
        if any(is_text for is_text, _ in inline_parts(inner)):
            block.pieces += [cell[: len(cell) - len(cell.lstrip())], len(block.texts), cell[len(cell.rstrip()) :]]
            block.texts.append(inner)
        else:
            block.pieces.append(cell)
    return block


def _table_header(lines: list[str], i: int) -> bool:
    """Whether line `i` is the header row of a table (a delimiter row such as `--|--` follows)."""
    return "|" in lines[i] and i + 1 < len(lines) and bool(_TABLE_DELIMITER.match(lines[i + 1]))


# In an HTML block, what stays as it is: comments, elements whose content is no prose (<pre>, scripts,
# styles, drawings) whole, and every tag but the inline ones, which stay in their text as protected spans
# (<code> and the like with their content).
_HTML_LITERAL = re.compile(
    r"<!--.*?(?:-->|\Z)|<(pre|script|style|textarea|svg|math|template)(?=[\s/>]).*?(?:</\1\s*>|\Z)"
    r"|<(?!/?(?:a|abbr|b|bdi|bdo|br|cite|code|data|dfn|em|i|img|kbd|mark|q|s|samp|small|span|strong|sub|sup|time|u|var|wbr)(?=[\s/>]))/?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>",
    re.I | re.S,
)


def _html_block(html: str) -> Block:
    """An HTML block (`<details>`, `<div>`, `<p align="center">`) whose text between its tags is translated,
    its tags, attributes and the white space around its text kept as they are."""
    block = Block("html", [])
    start = 0
    for match in [*_HTML_LITERAL.finditer(html), None]:
        run = html[start : match.start() if match else len(html)]
        core = run.strip()
        text = _joined(core)
        if any(is_text for is_text, _ in inline_parts(text)):
            lead = run[: len(run) - len(run.lstrip())]
            block.pieces += [lead, len(block.texts), run[len(lead) + len(core) :]]
            block.texts.append(text)
        else:
            block.pieces.append(run)
        if match:
            block.pieces.append(match.group(0))
            start = match.end()
    return block


def _html_end(lines: list[str], start: int) -> int:
    """Where an HTML block starting at `start` ends: after its closing marker for comments, <pre>,
    <script>, <style> and <textarea> (blank lines included), else at the next blank line."""
    until = _HTML_UNTIL.match(lines[start])
    if until:
        opener = (until.group(1) or until.group(2)).lower()
        closer = _HTML_CLOSERS.get(opener, ">")  # <!DOCTYPE ...> ends at its >
        if closer in lines[start][until.end() :].lower():
            return start + 1
        j = start + 1
        while j < len(lines) and closer not in lines[j].lower():
            j += 1
        return min(j + 1, len(lines))
    j = start
    while j < len(lines) and lines[j].strip():
        j += 1
    return j


_FRONT_MATTER_LINE = re.compile(r"[ \t]*(?:[^\s#:\-\[{][^:\n]*?:(?:[ \t]|$)|[\w\"'.-]+[ \t]*=|\[[^\]\n]+\][ \t]*$|\{|#|\?)")  # key: value, key = value, [table], {...}, a comment


def _front_matter_end(lines: list[str]) -> int | None:
    """The line that closes YAML (`---`) or TOML (`+++`) front matter opened on the first line; None without any."""
    if not lines or lines[0].strip() not in ("---", "+++"):
        return None
    closers = ("---", "...") if lines[0].strip() == "---" else ("+++",)
    end = next((j for j in range(1, len(lines)) if lines[j].strip() in closers), None)
    keyed = end is not None and any(_FRONT_MATTER_LINE.match(line) for line in lines[1:end])
    return end if keyed else None


_FRONT_MATTER_TEXT = re.compile(r"""^((?:title|description)[ \t]*[:=][ \t]*)(?:"((?:[^"\\]|\\["\\])*)"|'((?:[^']|'')*)'|([^\s"'\[\]{}&*!|>%@`#][^#]*?))[ \t]*$""")


def _front_matter(lines: list[str], toml: bool) -> Block:
    """Front matter kept as it is but for the values of its top-level `title` and `description`
    (YAML `title: x`, `title: "x"`, TOML `title = "x"`), which are translated."""
    block = Block("front matter", [])
    for n, line in enumerate(lines):
        match = _FRONT_MATTER_TEXT.match(line) if 0 < n < len(lines) - 1 and (":" in line.split("=")[0]) != toml else None
        value = match and next((v for v in match.group(2, 3, 4) if v is not None), None)
        if not value or not any(is_text for is_text, _ in inline_parts(value)) or (toml and match.group(4) is not None):
            block.pieces.append(line + "\n" * (n < len(lines) - 1))
            continue
        quote = '"' if match.group(2) is not None else "'" if match.group(3) is not None else ""
        block.quotes[len(block.texts)] = ("toml" if toml else "yaml") + quote
        block.pieces += [match.group(1), len(block.texts), "\n"]
        block.texts.append(value.replace('\\"', '"').replace("\\\\", "\\") if quote == '"' else value.replace("''", "'") if quote == "'" and not toml else value)
    return block


def _scalar(text: str, style: str) -> str:
    """A translated front matter value, quoted as `style` says its source was (`yaml"`, `yaml'`,
    `yaml` plain, `toml"`, `toml'`), in double quotes where that quoting cannot hold it."""
    doubled = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if style == "yaml'":
        return "'" + text.replace("'", "''") + "'"
    if style == "toml'":
        return doubled if "'" in text or "\n" in text else f"'{text}'"
    if style == "yaml":
        return doubled if re.search(r":(\s|$)|\s#|^[\s\"'\[\]{}&*!|>%@`#,?-]", text) else text
    return doubled


def without_front_matter(text: str) -> str:
    """`text` after its YAML or TOML front matter (a document's metadata, not its words); empty
    where nothing follows the front matter."""
    lines = text.lstrip("\ufeff").split("\n")
    end = _front_matter_end(lines)
    return "\n".join(lines[end + 1 :]).strip() if end is not None else text


_TICKS_OR_COMMENT = re.compile(r"`+|<!--")


def without_comments(text: str) -> str:
    """`text` without its HTML comments (`<!-- notes -->`, unseen where it is rendered), but for those
    in code (fenced blocks and `spans`); the blank lines a comment leaves are one paragraph break."""
    lines = text.split("\n")
    out, prose, i = [], [], 0
    while i < len(lines):
        opening = _fence(lines[i], 3)
        if opening is None:
            prose.append(lines[i])
            i += 1
            continue
        end = _fence_end(lines, i, opening.group(2), quoted=False)
        end = len(lines) - 1 if end is None else end  # an unclosed fence runs to the end
        out += [_prose_without_comments("\n".join(prose))] if prose else []
        out.append("\n".join(lines[i : end + 1]))
        prose, i = [], end + 1
    out += [_prose_without_comments("\n".join(prose))] if prose else []
    return "\n".join(out)


def _prose_without_comments(chunk: str) -> str:
    """`chunk` (no fenced code) without its HTML comments and the blanks before each, its code spans
    kept; in one pass (an unclosed `<!--` or backtick run is text, and each is looked past once)."""
    if "<!--" not in chunk:
        return chunk
    kept, at, scan, unclosed = [], 0, 0, set()  # unclosed: backtick runs with no closing run after them
    while match := _TICKS_OR_COMMENT.search(chunk, scan):
        if match.group() == "<!--":
            close = chunk.find("-->", match.end())
            if close < 0:  # no comment closes: the rest is text
                break
            kept.append(chunk[at : match.start()].rstrip(" \t"))
            at = scan = close + 3
            continue
        ticks = match.group()
        close = None if len(ticks) in unclosed else re.compile(rf"(?<!`){ticks}(?!`)").search(chunk, match.end())
        if close is None:
            unclosed.add(len(ticks))
        scan = match.end() if close is None else close.end()
    kept.append(chunk[at:])
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", "".join(kept))


def code_block(text: str, last: bool = False) -> str | None:
    """The body of the first (or `last`) complete fenced code block of `text`: ``` or ~~~, with or
    without a language tag, indented or not (that indent taken off its lines), the fence lines left
    out; None where there is none. An unclosed fence runs to the end (CommonMark), so it holds no
    block and none comes after it."""
    lines = text.replace("\r\n", "\n").split("\n")
    found, i = None, 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match and match.group(2)[0] in "`~":  # not a $$ math block
            end = _fence_end(lines, i, match.group(2), quoted=False)
            if end is None:
                break
            indent = _indent(match.group(1))
            found = "\n".join(_dedented(line, indent) for line in lines[i + 1 : end])
            if not last:
                return found
            i = end
        i += 1
    return found


def extract_code(text: str, last: bool = False) -> str:
    """What `-x` (`--xl` with `last`) prints of an answer: its first (last) fenced code block's body,
    or the whole answer where it has none (as llm does)."""
    block = code_block(text, last)
    return text if block is None else block


def _dedented(line: str, columns: int) -> str:
    """`line` without up to `columns` columns of its leading white space."""
    cut = 0
    while cut < len(line) and line[cut] in " \t" and _indent(line[: cut + 1]) <= columns:
        cut += 1
    return line[cut:]


def _fence_end(lines: list[str], start: int, mark: str, quoted: bool) -> int | None:
    """The line that closes the fence `mark` opened on line `start` (inside the same quote, for a
    quoted one); None when none does."""
    closing = re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
    for j in range(start + 1, len(lines)):
        inner = _QUOTE.match(lines[j]) if quoted else None
        if quoted and not inner:
            return None
        if closing.match(inner.group(2) if quoted else lines[j]):
            return j
    return None


def _liquid_end(lines: list[str], start: int, tag: str) -> int | None:
    """The line after `start` that is `{% end<tag> %}` alone; None where there is none."""
    closer = re.compile(r"[ \t]*\{%-?[ \t]*end" + tag + r"[ \t]*-?%\}[ \t]*")
    return next((j for j in range(start + 1, len(lines)) if closer.fullmatch(lines[j])), None)


def parse_blocks(text: str, plain: bool = False) -> list[Block]:
    """Split Markdown (or plain text) into blocks; rendering them with their own texts gives the
    document back (paragraph and list-item lines re-joined on single spaces, or none between Chinese or
    Japanese lines: `join_text`). `plain`: text, not
    Markdown, so an indented line is a paragraph's first line and a tag is words (no indented code,
    no HTML blocks)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    end = _front_matter_end(lines)
    if end is not None:
        blocks.append(_front_matter(lines[: end + 1], toml=lines[0].strip() == "+++"))
        i = end + 1
    in_list, item_indent = False, 0  # item_indent: where the last list item's text starts
    widest = _widest_to_blank(lines) if plain else []
    unclosed: dict[str, int] = {}  # fence character -> the shortest fence of it that no line closes
    while i < len(lines):
        line = lines[i]
        if line.strip() and not line[:1].isspace() and not _ITEM.match(line):  # anything at the margin ends a list
            in_list = False
        quote = _QUOTE.match(line)
        fence = _fence(line, item_indent + 3 if in_list else 3) or (quote and _fence(quote.group(2), 3))
        mark = fence.group(2) if fence else ""
        known_open = not quote and len(mark) >= unclosed.get(mark[:1], float("inf"))  # no closer after an earlier one: none after this
        end = _fence_end(lines, i, mark, bool(quote)) if fence and not known_open else None
        if fence and end is None and not quote:
            unclosed[mark[0]] = min(len(mark), unclosed.get(mark[0], len(mark)))
        if fence and (end is not None or not plain):  # up to its closing fence, or else the end of the text (of the quote);
            if end is None:  # in plain text, an underline of ~~~ opens nothing
                end = i
                while end + 1 < len(lines) and (not quote or _QUOTE.match(lines[end + 1])):
                    end += 1
            blocks.append(Block("code", ["\n".join(lines[i : end + 1])]))
            i = end + 1
            continue
        if not line.strip():
            blocks.append(Block("blank", [line]))
            i += 1
            continue
        liquid = None if plain else _LIQUID_OPEN.match(line)
        end = _liquid_end(lines, i, liquid.group(1)) if liquid else None
        if end is not None:
            blocks.append(Block("code", ["\n".join(lines[i : end + 1])]))
            i = end + 1
            continue
        site = None if plain else _SITE_MARKUP.match(line)
        if site:  # its text (an MkDocs one's indented 4, as a list item's is) translated as the blocks after it
            title = site.group("mkdocs") and _ADMONITION_TITLE.match(line)
            blocks.append(_text_block("markup", *title.groups()) if title else Block("markup", [line]))  # an MkDocs one's quoted title translated
            if site.group("mkdocs"):
                in_list, item_indent = True, _indent(line) + 4
            i += 1
            continue
        if quote and (not quote.group(2).strip() or _ALERT.match(quote.group(2))):  # `>` between quoted paragraphs, or `> [!NOTE]`
            blocks.append(Block("quote", [line]))
            i += 1
            continue
        after_blank = not blocks or blocks[-1].kind in ("blank", "front matter")
        if quote and not plain and _indent(quote.group(2)) >= 4 and (after_blank or blocks[-1].pieces == [lines[i - 1]] and blocks[-1].kind == "quote"):
            j = i  # quoted indented code, after a blank (quoted) line
            while j < len(lines) and (inner := _QUOTE.match(lines[j])) and (_indent(inner.group(2)) >= 4 or not inner.group(2).strip()):
                j += 1
            while j > i + 1 and not _QUOTE.match(lines[j - 1]).group(2).strip():
                j -= 1
            blocks.append(Block("code", ["\n".join(lines[i:j])]))
            i = j
            continue
        if quote and _TABLE.match(quote.group(2)):  # a table row inside a quote: its cells translated, its pipes and quote marks kept
            blocks.append(_table_row(quote.group(2)))
            blocks[-1].pieces.insert(0, quote.group(1))
            i += 1
            continue
        if not plain and after_blank and not _ITEM.match(line) and _indent(line) >= (item_indent + 4 if in_list else 4):  # indented code
            j = i
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) >= (item_indent + 4 if in_list else 4)):
                j += 1
            while j > i + 1 and not lines[j - 1].strip():  # blank lines after it are not its own
                j -= 1
            blocks.append(Block("code", ["\n".join(lines[i:j])]))
            i = j
            continue
        if _RULE.match(line):
            blocks.append(Block("rule", [line]))
            in_list = False
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            blocks.append(_text_block("heading", heading.group(1), heading.group(2), heading.group(3) or ""))
            in_list = False
            i += 1
            continue
        if _TABLE.match(line):
            blocks.append(_table_row(line))
            i += 1
            continue
        if _table_header(lines, i):  # a table without outer pipes
            while i < len(lines) and lines[i].strip() and "|" in lines[i]:
                blocks.append(_table_row(lines[i]))
                i += 1
            continue
        if not plain and _html_starts(line):
            html = "\n".join(lines[i : (i := _html_end(lines, i))])
            blocks.append(Block("html", [html]) if _HTML_UNTIL.match(html) else _html_block(html))  # a comment or <pre> as it is
            continue
        footnote = _FOOTNOTE.match(line)
        if footnote:
            blocks.append(_text_block("footnote", footnote.group(1), footnote.group(2)))
            in_list, item_indent = True, 4  # its next paragraphs are indented 4, as a list item's are
            i += 1
            continue
        if _REFERENCE.match(line):
            blocks.append(Block("reference", [line]))
            i += 1
            continue
        kind, before, first = "paragraph", line[: len(line) - len(line.lstrip())], line.strip()
        item, definition = _ITEM.match(line), _DEFINITION.match(line)
        if item:
            kind, before, first = "item", item.group(1), item.group(2)
            in_list, item_indent = True, len(_MARKER.match(line).group(0).expandtabs(4))
        elif definition:  # its next paragraphs are indented, as a list item's are
            kind, before, first = "definition", definition.group(1), definition.group(2)
            in_list, item_indent = True, len(before.expandtabs(4))
        elif quote:
            marker, first = _inner_marker(quote.group(2))
            kind, before = "quote", quote.group(1) + marker
        parts, breaks, raw = [[first]], [], line
        if plain:  # the widest line of the paragraph (at least 60 columns): where its lines were wrapped
            width = max(60, widest[i])
        i += 1
        while i < len(lines) and lines[i].strip():  # continuation lines of the same paragraph
            nxt = lines[i]
            if kind == "quote":
                inner = _QUOTE.match(nxt)
                if not inner or _starts_block(inner.group(2)) or _ALERT.match(inner.group(2)) or inner.group(1).count(">") != quote.group(1).count(">"):
                    break  # a quote nested deeper (or less) is a block of its own
                prefix, content = inner.group(1), inner.group(2)
            elif _starts_block(nxt) or _table_header(lines, i) or (nxt.startswith("    ") and kind not in ("item", "definition") and not (in_list and _indent(nxt) < item_indent + 4)) or (kind == "item" and _fence(nxt, item_indent + 3)):
                break
            else:
                prefix, content = nxt[: len(nxt) - len(nxt.lstrip())], nxt
            hard = _hard_break(raw)
            if hard or plain and _kept_line(raw, nxt, width):  # the line before ends in a hard break: kept, with this line's own indent or quote marker
                parts[-1][-1] = parts[-1][-1].rstrip().removesuffix("\\") if hard == "\\" else parts[-1][-1].rstrip()
                breaks.append(hard + "\n" + prefix)
                parts.append([content.strip()])
            else:
                parts[-1].append(content.lstrip(" \t"))  # a continuation line's indent is not text (nor code)
            raw = nxt
            i += 1
        blocks.append(_broken_block(kind, before, [join_text(part) for part in parts], breaks))  # a Chinese or Japanese line joins the next without a space
    return blocks


def _widest_to_blank(lines: list[str]) -> list[int]:
    """For each line, the width in columns of the widest line from it to the next blank line (0 for a blank one)."""
    widest = [0] * (len(lines) + 1)
    for k in range(len(lines) - 1, -1, -1):
        widest[k] = max(cell_len(lines[k].rstrip()), widest[k + 1]) if lines[k].strip() else 0
    return widest


def render_blocks(blocks: list[Block], translations: list[list[str]]) -> str:
    return "\n".join(block.render(texts) for block, texts in zip(blocks, translations))
