"""E-mail as a document: a message (.eml) or a mailbox (.mbox) read as its messages' subjects and
text, with Python's `email` package (MIME, quoted-printable, base64 and charsets undone)."""

from __future__ import annotations

import re
import warnings

from .errors import AigcWarning
from .html_text import html_to_text

SUFFIXES = (".eml", ".mbox")
# header names only mail has at its top (a memo's From:/To:/Subject: lines alone are not enough)
_MAIL_HEADERS = {"received", "return-path", "delivered-to", "message-id", "mime-version", "content-type", "content-transfer-encoding", "x-mailer", "dkim-signature"}
_HEADER = re.compile(rb"([A-Za-z0-9-]+):")
_MBOX_FROM = re.compile(rb"(?:\A|(?<=\n\n))From [^\n]*\n")  # the line that starts each message in a mailbox, after a blank line
_QUOTED = re.compile(r"^[ \t]*>")
_ATTRIBUTION = re.compile(r"\bwrote:\s*$")  # "On Tue, Ann <ann@x.org> wrote:" above a quoted reply
_SIGNATURE = re.compile(r"^--[ \t]*$")  # "-- ", the signature's separator (RFC 3676), its space often lost


def is_mail(data: bytes, suffix: str = "") -> bool:
    """Whether `data` is e-mail: it starts with a header block (after an mbox `From ` line or not),
    its first blank line ending it. With an .eml or .mbox suffix any header block will do (a draft
    or an exported message may have no `From:`); without one it takes a `From:` and a mail-only header
    (`Received:`, `MIME-Version:`, `Message-ID:`, ...): a memo's From:/To:/Subject: lines are not enough."""
    head = data[:8192].replace(b"\r\n", b"\n")
    block = head.split(b"\n\n", 1)[0].split(b"\n")
    if block and block[0].startswith(b"From "):
        block = block[1:]
    mailish = suffix.lower() in SUFFIXES
    if len(block) < (1 if mailish else 2) or not _HEADER.match(block[0]) or not all(_HEADER.match(line) or line[:1] in (b" ", b"\t") for line in block):
        return False
    names = {m.group(1).decode().lower() for line in block if (m := _HEADER.match(line))}
    return mailish or ("from" in names and bool(names & _MAIL_HEADERS))


def mail_text(data: bytes, name: str = "the message") -> str:
    """A message's (or an mbox's messages', in order) text: each its subject as a `# ` heading, then
    its text/plain part (else its HTML one, as text), without quoted reply lines (`> ...`, and the
    "... wrote:" line above them) or the signature below a `-- ` line. A message with no text part
    (an attachment only) is its subject, with an `AigcWarning` naming `name`."""
    import email.policy  # here, not at the top: it costs every `import aigc` (and `aigc --help`) about 12 ms

    data = data.replace(b"\r\n", b"\n")
    messages = _MBOX_FROM.split(data) if _MBOX_FROM.match(data) else [data]
    texts = []
    textless = []  # the messages (1-based) with no text part
    for raw in messages:
        if not raw.strip():
            continue
        raw = re.sub(rb"^>(>*From )", rb"\1", raw.lstrip(b"\r\n"), flags=re.MULTILINE)  # mboxrd's escaped From lines
        message = email.message_from_bytes(raw, policy=email.policy.default)
        subject = " ".join(str(message.get("subject", "")).split())
        body = message.get_body(preferencelist=("plain", "html"))
        text = ""
        if body is not None:
            try:
                text = body.get_content()
            except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
                text = body.get_payload(decode=True).decode("utf-8", "replace")
            text = html_to_text(text) if body.get_content_type() == "text/html" else _without_replies(text)
        else:
            textless.append(len(texts) + 1)
        texts.append("\n\n".join(part for part in (f"# {subject}" if subject else "", text.strip()) if part))
    if textless and len(texts) == 1:
        warnings.warn(f"{name} has no text part: only its subject is read", AigcWarning, stacklevel=3)
    elif textless:
        which = ", ".join(map(str, textless[:5])) + (", ..." if len(textless) > 5 else "")
        warnings.warn(f"{name}: {len(textless)} of its {len(texts)} messages have no text part (message {which}): only their subjects are read", AigcWarning, stacklevel=3)
    return "\n\n".join(text for text in texts if text)


def _without_replies(text: str) -> str:
    """A plain-text body without the lines quoted from earlier messages, the line that introduces
    them and the signature (below its last `-- ` line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    cut = max((at for at, line in enumerate(lines) if _SIGNATURE.match(line)), default=len(lines))
    lines = lines[:cut]
    kept: list[str] = []
    for at, line in enumerate(lines):
        if _QUOTED.match(line):
            continue
        following = next((later for later in lines[at + 1 :] if later.strip()), "")
        if _ATTRIBUTION.search(line) and _QUOTED.match(following):
            continue
        kept.append(line)
    return re.sub(r"\n(?:[ \t]*\n){2,}", "\n\n", "\n".join(kept))  # a quoted block's blank lines around it as one
