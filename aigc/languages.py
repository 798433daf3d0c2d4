"""Languages by name or code: `lookup("de")`, `lookup("German")`, `lookup("pt-BR")`, `lookup("Deutsch")`.

A small table of common languages (ISO 639-1 codes, their 639-2/639-3 three-letter codes, a few
regional variants; other regions and scripts as tags), enough to put a language's English name
into a prompt and to reject a typo with close matches (only close ones: Klingonese suggests nothing).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from .errors import BadInputError, OptionError


@dataclass(frozen=True)
class Language:
    code: str  # "de", "pt-BR"
    name: str  # English name, as prompts use it: "German", "Brazilian Portuguese"
    native: str = ""  # "Deutsch"

    @property
    def base(self) -> str:
        """The code without its region: "pt" for "pt-BR"."""
        return self.code.split("-")[0]


_TABLE = [
    Language("en", "English", "English"),
    Language("en-US", "American English", "English"),
    Language("en-GB", "British English", "English"),
    Language("fr", "French", "Français"),
    Language("es", "Spanish", "Español"),
    Language("es-MX", "Mexican Spanish", "Español"),
    Language("de", "German", "Deutsch"),
    Language("it", "Italian", "Italiano"),
    Language("pt", "Portuguese", "Português"),
    Language("pt-BR", "Brazilian Portuguese", "Português"),
    Language("pt-PT", "European Portuguese", "Português"),
    Language("nl", "Dutch", "Nederlands"),
    Language("sv", "Swedish", "Svenska"),
    Language("da", "Danish", "Dansk"),
    Language("no", "Norwegian", "Norsk"),
    Language("fi", "Finnish", "Suomi"),
    Language("is", "Icelandic", "Íslenska"),
    Language("pl", "Polish", "Polski"),
    Language("cs", "Czech", "Čeština"),
    Language("sk", "Slovak", "Slovenčina"),
    Language("sl", "Slovenian", "Slovenščina"),
    Language("hr", "Croatian", "Hrvatski"),
    Language("sr", "Serbian", "Српски"),
    Language("hu", "Hungarian", "Magyar"),
    Language("ro", "Romanian", "Română"),
    Language("bg", "Bulgarian", "Български"),
    Language("el", "Greek", "Ελληνικά"),
    Language("lt", "Lithuanian", "Lietuvių"),
    Language("lv", "Latvian", "Latviešu"),
    Language("et", "Estonian", "Eesti"),
    Language("ru", "Russian", "Русский"),
    Language("uk", "Ukrainian", "Українська"),
    Language("tr", "Turkish", "Türkçe"),
    Language("ar", "Arabic", "العربية"),
    Language("he", "Hebrew", "עברית"),
    Language("fa", "Persian", "فارسی"),
    Language("hi", "Hindi", "हिन्दी"),
    Language("bn", "Bengali", "বাংলা"),
    Language("ur", "Urdu", "اردو"),
    Language("ta", "Tamil", "தமிழ்"),
    Language("zh", "Chinese", "中文"),
    Language("zh-CN", "Simplified Chinese", "简体中文"),
    Language("zh-TW", "Traditional Chinese", "繁體中文"),
    Language("ja", "Japanese", "日本語"),
    Language("ko", "Korean", "한국어"),
    Language("vi", "Vietnamese", "Tiếng Việt"),
    Language("th", "Thai", "ไทย"),
    Language("id", "Indonesian", "Bahasa Indonesia"),
    Language("ms", "Malay", "Bahasa Melayu"),
    Language("tl", "Filipino", "Tagalog"),
    Language("sw", "Swahili", "Kiswahili"),
    Language("ca", "Catalan", "Català"),
    Language("eu", "Basque", "Euskara"),
    Language("ga", "Irish", "Gaeilge"),
    Language("cy", "Welsh", "Cymraeg"),
]
_ALIASES = {  # other names people use
    "mandarin": "zh", "farsi": "fa", "tagalog": "tl", "brazilian": "pt-BR", "castilian": "es",
    "bokmal": "no", "bokmål": "no", "nb": "no", "nn": "no", "iw": "he", "zh-hans": "zh-CN", "zh-hant": "zh-TW",
}
_THREE_LETTER = {  # ISO 639-2 (bibliographic and terminological) and 639-3 codes of the table's languages
    "en": "eng", "fr": "fra fre", "es": "spa", "de": "deu ger", "it": "ita", "pt": "por", "nl": "nld dut", "sv": "swe",
    "da": "dan", "no": "nor nob nno", "fi": "fin", "is": "isl ice", "pl": "pol", "cs": "ces cze", "sk": "slk slo",
    "sl": "slv", "hr": "hrv", "sr": "srp", "hu": "hun", "ro": "ron rum", "bg": "bul", "el": "ell gre", "lt": "lit",
    "lv": "lav", "et": "est", "ru": "rus", "uk": "ukr", "tr": "tur", "ar": "ara", "he": "heb", "fa": "fas per",
    "hi": "hin", "bn": "ben", "ur": "urd", "ta": "tam", "zh": "zho chi cmn", "ja": "jpn", "ko": "kor", "vi": "vie",
    "th": "tha", "id": "ind", "ms": "msa may", "tl": "tgl fil", "sw": "swa", "ca": "cat", "eu": "eus baq",
    "ga": "gle", "cy": "cym wel",
}
_ALIASES.update({three: code for code, codes in _THREE_LETTER.items() for three in codes.split()})
_REGIONS = {  # country names in "Portuguese (Brazil)", and scripts in "Chinese (Simplified)"
    "simplified": "hans", "traditional": "hant",
    "brazil": "br", "portugal": "pt", "mexico": "mx", "spain": "es", "argentina": "ar", "latin america": "419",
    "united states": "us", "usa": "us", "united kingdom": "gb", "uk": "gb", "canada": "ca", "france": "fr", "belgium": "be",
    "switzerland": "ch", "austria": "at", "germany": "de", "china": "cn", "taiwan": "tw", "hong kong": "hk", "india": "in", "australia": "au",
}
_SCRIPTS = {"latn": "Latin", "cyrl": "Cyrillic", "arab": "Arabic", "deva": "Devanagari", "grek": "Greek", "hebr": "Hebrew"}

LANGUAGES: dict[str, Language] = {lang.code.lower(): lang for lang in _TABLE}
_BY_NAME: dict[str, Language] = {}
for _lang in _TABLE:
    for _key in (_lang.name, _lang.native):
        _BY_NAME.setdefault(_key.lower(), _lang)
_BY_NAME.update({alias: LANGUAGES[code.lower()] for alias, code in _ALIASES.items()})


def lookup(value: str) -> Language:
    """The language for a code (`de`, `pt-BR`, `pt_br`), an English name (`German`) or a native
    name (`Deutsch`); an unknown one is a `BadInputError` that lists close matches."""
    key = " ".join(str(value).split()).lower().replace("_", "-")
    if not key:
        raise BadInputError("empty language; give a name or code such as French or fr")
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key in _BY_NAME:
        return _BY_NAME[key]
    named = re.fullmatch(r"(.+?) \((.+)\)", key)  # Portuguese (Brazil), Spanish (419): as names are shown
    if named and (named[1] in LANGUAGES or named[1] in _BY_NAME):
        base_code = (LANGUAGES.get(named[1]) or _BY_NAME[named[1]]).code
        region = _REGIONS.get(named[2], named[2])
        try:
            return lookup(f"{base_code}-{region}")
        except BadInputError:
            pass
    base, _, region = key.partition("-")
    lang = LANGUAGES.get(base) or _BY_NAME.get(base) if len(base) in (2, 3) else None
    if region and lang and region.isalpha() and len(region) == 4:  # a script: sr-Latn
        script = _SCRIPTS.get(region, region.title())
        return Language(f"{lang.code}-{region.title()}", f"{lang.name} in {script} script")
    if region and lang and ((region.isalpha() and len(region) in (2, 3)) or (region.isdigit() and len(region) == 3)):  # es-419
        # a region the table does not list: the language itself, tagged
        code = f"{lang.code}-{region.upper()}"
        shown = "Latin America" if region == "419" else code  # the one number region people use; else the tag as given: Japanese (ja-JP)
        return Language(code, f"{lang.name} ({shown})", lang.native)
    choices = sorted(set(LANGUAGES) | set(_BY_NAME))
    close = list(dict.fromkeys(_display(c) for c in difflib.get_close_matches(key, choices, n=6, cutoff=0.8)))[:3]
    hint = "did you mean " + ", ".join(close) + "? " if close else ""
    raise BadInputError(f"unknown language {value!r}; {hint}give a name or ISO code such as French, fr, zh or pt-BR")


def for_option(option: str, value: str) -> Language:
    """`lookup`, with an unknown language an `OptionError` naming the option (translate's `--to`, summarize's and headline's `--language`)."""
    try:
        return lookup(value)
    except BadInputError as exc:
        raise OptionError(option, f": {exc}") from None


_BCP47 = re.compile(r"([a-z]{2,3})(?:-([a-z]{4}))?(?:-([a-z]{2}|\d{3}))?", re.I)  # language, script, region: zh-Hans, nb, sr-Latn-RS, es-419


def tag(given: str, language: Language) -> str:
    """The code to record for a language: as given where it is a BCP-47 tag (`zh-Hans`, `nb` stay so,
    in its usual case), else the language's own code (German, zh_CN: de, zh-CN)."""
    found = _BCP47.fullmatch(str(given).strip())
    if not found:
        return language.code
    return "-".join(part for part in (found.group(1).lower(), (found.group(2) or "").title(), (found.group(3) or "").upper()) if part)


def _display(key: str) -> str:
    lang = LANGUAGES.get(key) or _BY_NAME[key]
    return f"{lang.name} ({lang.code})"


_LATIN = re.compile(r"[A-Za-z\u00aa\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u1e00-\u1eff]")


def in_latin_script(text: str, sample: int = 4000) -> bool:
    """Whether most letters of `text` (of its first `sample` characters) are Latin, as English's are
    (no letters: True). Prompts ask for the text's own language only where this is False: the
    embedded model, asked so about an English text, writes about languages instead."""
    head = text[:sample]
    letters = sum(ch.isalpha() for ch in head)
    return 2 * len(_LATIN.findall(head)) >= letters


def asked_language(text: str, language: Language | None) -> dict[str, object]:
    """The template values that say which language to write in about `text`: `language` (its English
    name) where one is asked for, else `same_language`, whether to ask for the text's own (only where it
    is not in Latin script, see `in_latin_script`); never both: the language asked for wins."""
    if language is not None:
        return {"same_language": False, "language": language.name}
    return {"same_language": not in_latin_script(text), "language": ""}
