"""An i18n JSON file (an object, or a list, of strings, nested or not) as its strings and back.

Only string values are texts: keys, numbers, booleans and nulls stay as they are, in their order.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SCALARS = (str, int, float, bool, type(None))


def _leaves(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [leaf for value in data.values() for leaf in _leaves(value)]
    if isinstance(data, list):
        return [leaf for value in data for leaf in _leaves(value)]
    return [data]


def read_strings(text: str) -> Any | None:
    """The data of `text` when it is a JSON object or list whose values (nested too) are strings,
    numbers, booleans or nulls, one string at least; None for anything else (not JSON, one value, a
    list of lists of numbers)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, (dict, list)):
        return None
    leaves = _leaves(data)
    return data if all(isinstance(leaf, _SCALARS) for leaf in leaves) and any(isinstance(leaf, str) for leaf in leaves) else None


def strings(data: Any) -> list[str]:
    """The string values of `data`, in document order."""
    return [leaf for leaf in _leaves(data) if isinstance(leaf, str)]


def with_strings(data: Any, texts: list[str]) -> Any:
    """`data` with its string values replaced by `texts`, in the order `strings` gives them."""
    given = iter(texts)

    def replaced(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: replaced(item) for key, item in value.items()}
        if isinstance(value, list):
            return [replaced(item) for item in value]
        return next(given) if isinstance(value, str) else value

    return replaced(data)


def dumps_like(data: Any, source: str) -> str:
    """`data` as JSON laid out as `source` is: indented as its first indented line is (on one line
    when it is), non-ASCII as it is unless the source escaped it, its final line break kept."""
    indent = re.search(r"\n([ \t]+)\S", source)
    layout = {"indent": indent.group(1) if indent else 0} if "\n" in source.strip() else {}
    text = json.dumps(data, ensure_ascii=bool(re.search(r"\\u[0-9a-fA-F]{4}", source)), **layout)
    return text + "\n" if source.endswith("\n") else text
