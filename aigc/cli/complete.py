"""Shell completion of option values and arguments (`aigc chat -m <TAB>`): model aliases and remotes,
template, session and language names, fixed choices. Names are looked up when the shell asks, never
loading torch; where nothing matches (a path), bash and zsh offer file names."""

import warnings
from typing import Callable, Iterable

from ..engine.loading import DEVICES, DTYPES, QUANTIZATIONS

Completer = Callable[[str], list[str]]


def _starting(incomplete: str, names: Iterable[str]) -> list[str]:
    return [name for name in names if name.startswith(incomplete)]


def choices(*values: str) -> Completer:
    """The values of an option that takes one of a fixed few (`--device auto|cpu|cuda|mps`)."""

    def complete(incomplete: str) -> list[str]:
        return _starting(incomplete, values)

    return complete


def _looked_up(names: Callable[[], Iterable[str]]) -> Completer:
    """The names `names()` gives, sorted; its warnings and errors (a broken template or settings
    file, a failing plugin) stay off the terminal the user is typing on: then nothing is offered."""

    def complete(incomplete: str) -> list[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return _starting(incomplete, sorted(names()))
            except Exception:  # noqa: BLE001 - the command itself reports it when run
                return []

    return complete


def _aliases(*kinds: str) -> Completer:
    """The aliases of models of `kinds`: aigc's and plugins', yours (`[aliases]`), and for text the
    named remotes of the settings file (`remote:NAME`, as `aigc models list` shows them)."""

    def names() -> list[str]:
        from ..config import model_aliases
        from ..engine.models import alias_kind, registered_models
        from ..engine.remote import remote_names

        remotes = [f"remote:{name}" for name in remote_names()] if "text" in kinds else []
        return [alias for alias, (_, spec) in registered_models().items() if spec.kind in kinds] + [name for name in model_aliases() if alias_kind(name) in kinds] + remotes

    return _looked_up(names)


def _removable() -> list[str]:
    """What `aigc models rm` deletes: aigc's and plugins' models with files on this machine (never your
    own aliases, which rm refuses: `aigc models alias --rm NAME` removes one)."""
    from ..engine.models import registered_models, resolve
    from ..errors import AigcError

    found = []
    for alias in registered_models():
        try:
            ref = resolve(alias, None)
        except AigcError:  # a plugin's model whose file is gone: nothing of aigc's to delete
            continue
        if ref.kind not in ("remote", "echo") and ref.installed:
            found.append(alias)
    return found


def _your_aliases() -> Iterable[str]:
    from ..config import model_aliases

    return model_aliases()


def _sessions() -> Iterable[str]:
    """The names of the sessions `aigc sessions` lists (their files' names, none read)."""
    from ..conversations import sessions_dir

    return [path.stem for path in sessions_dir().glob("*.json")]


def _languages() -> Iterable[str]:
    """The language codes the table knows (fr, pt-BR) and their English names of one word (French),
    as translate's --to and summarize's -L take them; a name with a space would be two words to a shell."""
    from ..languages import LANGUAGES

    return [lang.code for lang in LANGUAGES.values()] + sorted({lang.name for lang in LANGUAGES.values() if " " not in lang.name})


def _templates() -> Iterable[str]:
    from ..templates import discover

    return discover()


def _generators() -> Iterable[str]:
    from ..generators.base import registered_generators

    return registered_generators()


devices, dtypes, quantizations = choices(*DEVICES), choices(*DTYPES), choices(*QUANTIZATIONS)
text_models = _aliases("text")
image_models = _aliases("image")
models = _aliases("text", "image")
removable_models = _looked_up(_removable)
your_aliases = _looked_up(_your_aliases)
templates = _looked_up(_templates)
generators = _looked_up(_generators)
sessions = _looked_up(_sessions)
languages = _looked_up(_languages)
source_languages = _looked_up(lambda: ["auto", *_languages()])


def _held_in(module: str, name: str) -> Completer:
    """The values a library constant holds (`FORMATS` of `..generators.summarize`), imported only
    when the shell asks."""

    def complete(incomplete: str) -> list[str]:
        import importlib

        return _starting(incomplete, getattr(importlib.import_module(module, __package__), name))

    return complete


summary_lengths = _held_in("..generators.summarize", "LENGTH_WORDS")
summary_formats = _held_in("..generators.summarize", "FORMATS")
headline_styles = _held_in("..generators.headline", "STYLES")
classify_methods = _held_in("..generators.classify_examples", "METHODS")
calibrations = _held_in("..generators.classify", "CALIBRATE")
on_error = _held_in("..batch", "ON_ERROR")
input_formats = _held_in("..batch_inputs", "INPUT_FORMATS")
