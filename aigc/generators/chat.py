"""Chat: one-shot answers and multi-turn conversations that fit the model's context window."""

from __future__ import annotations

import contextlib
import typing
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import conversations, templates
from ..errors import AigcError, BadInputError, OptionError, UnknownModelError, did_you_mean, option
from ..answer_stream import AnswerStream
from ..engine.base import check_fits, relay, usage_of
from ..engine.sampling import SamplingParams
from ..json_schemas import answer_texts
from ..template_files import foreign_host
from ..textio import readable_name
from ..writing import check_writable
from .base import Generator, check_stop, check_varied, coerce_value, get_generator, type_name
from .template import checked_values, pattern_option_settings

TUNABLE = {
    "temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "seed": int,
    "repetition_penalty": float, "min_p": float, "frequency_penalty": float, "presence_penalty": float,
}


def with_files(text: str, files: list[tuple[str, str]]) -> str:
    """`text` after the files it is about, each introduced by its name (as `(name, content)`); a
    name's bytes that are no UTF-8 (lone surrogates, as Python reads them from argv) show as U+FFFD."""
    parts = [f"File {readable_name(name)}:\n\n{content.strip(chr(10))}" for name, content in files]  # indentation kept
    return "\n\n".join(parts + ([text.strip()] if text.strip() else []))


def _plain(message: Any) -> dict | None:
    """A chat message as {role, content: text}, taking OpenAI's forms too (role "developer" for
    system, content as a list of text parts); None if it is no message."""
    if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
        return None
    content = message.get("content")
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        return None
    return {"role": "system" if message["role"] == "developer" else message["role"], "content": content}


def longest_fit(messages: list[dict], budget: int, count: typing.Callable[[list[dict]], int], pinned: int | None = None) -> tuple[list[dict], int]:
    """The messages kept, and their tokens (`count`), when the oldest turns are dropped until they take
    `budget` tokens or fewer, as ollama's chatPrompt drops them: the longest tail that fits and starts at a
    user message or, after the last one, at a round of tool calls (or is the whole conversation); else the
    last message alone (a tool result with the call it answers, a system message with the message before).
    The system messages of the part dropped stay, first (one in the tail stays in its place), as does
    `pinned`, the index of a message kept as the system prompt is (a pattern sent once, see
    `ChatGenerator.pattern_at`, kept with the reply right after it so that roles still alternate).
    Found in a few token counts, however long the conversation is."""
    last = len(messages) - 1
    while last > 0 and messages[last]["role"] in ("tool", "system"):
        last -= 1
    held = set() if pinned is None else {pinned, pinned + 1} if messages[pinned + 1 : pinned + 2] and messages[pinned + 1]["role"] == "assistant" else {pinned}
    users = [i for i, m in enumerate(messages[:last]) if m["role"] == "user"]
    rounds = [i for i in range(users[-1] if users else 0, last) if messages[i]["role"] == "assistant" and messages[i].get("tool_calls")]
    starts = sorted({0, max(last, 0), *users, *rounds})
    counts: dict[int, int] = {}

    def kept(k: int) -> list[dict]:
        start = starts[k]
        return [m for i, m in enumerate(messages[:start]) if m["role"] == "system" or i in held] + messages[start:]

    def fits(k: int) -> bool:
        if k not in counts:
            counts[k] = count(kept(k))
        return counts[k] <= budget

    good, bad, step = 0, -1, 1
    if not fits(0):  # grow the kept tail from the last message in doubling steps until it no longer fits
        good, bad = len(starts) - 1, 0  # the last message alone, whether it fits or not
        while good - step > bad and fits(good - step):
            good, step = good - step, step * 2
        bad = max(bad, good - step)
    while good - bad > 1:  # then bisect between the last misfit and the first fit
        middle = (good + bad) // 2
        good, bad = (middle, bad) if fits(middle) else (good, middle)
    fits(good)
    return kept(good), counts[good]


@dataclass
class ChatOptions:
    template: str = "chat"
    system: str | None = None
    variables: dict[str, Any] | None = field(default_factory=dict)  # the template's other variables; each message fills its input
    no_variable_replacement: bool = False  # a fabric pattern's placeholders but {{input}} sent as written (fabric's --no-variable-replacement)

    def __post_init__(self) -> None:
        template = templates.get_template(self.template)
        if not isinstance(self.variables, (dict, type(None))):
            raise OptionError("variables", f"must be a dict of template variables, got {type_name(self.variables)}")
        given = dict(self.variables or {})
        literal = templates.literal_values(template, given) if self.no_variable_replacement else {}
        self.variables = checked_values(template, {**given, **literal})  # kept as variables: a session goes on with them
        name = template.input_variable(self.variables)  # a template with no place for the text fails now
        if name in self.variables:
            raise OptionError("variables", f"cannot give {name}: each message fills it")

    settings = pattern_option_settings


class ChatGenerator(Generator):
    """Answers a prompt, or continues a conversation given as a list of messages."""

    name = "chat"
    description = "Chat with the model"
    Options = ChatOptions
    # Greedy with a mild repetition penalty gave the most reliable answers from the 135M default
    # (20/20 "Paris" vs 18/20 at temperature 0.2); --temperature turns sampling on.
    sampling_defaults = {"temperature": 0.0, "top_p": 0.9, "max_tokens": 512, "repetition_penalty": 1.1}
    several_temperature = 0.7  # several answers (n above 1) with no temperature given are sampled, at `aigc run`'s default

    def sampling(self, overrides: dict[str, Any] | None, template_defaults: dict[str, Any] | None = None) -> SamplingParams:
        """As `Generator.sampling`, but several answers asked for with no temperature given (by the
        caller or the template) are sampled at `several_temperature`, not picked greedily as one is."""
        params = super().sampling(overrides, template_defaults)
        given = {**(template_defaults or {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
        return params.replace(temperature=self.several_temperature) if params.n > 1 and "temperature" not in given else params

    def user_message(self, text: str, opts: ChatOptions, first: bool = True) -> tuple[list[dict], dict]:
        """The template rendered around one user turn: (messages, template sampling defaults). A
        pattern that places the input in its system.md is a conversation's `first` message: a later
        turn is the text alone (the pattern, often thousands of tokens, is not sent again)."""
        template = templates.get_template(opts.template)
        values = {**opts.variables, template.input_variable(opts.variables): text}
        if template.once and not first:
            return templates.render_system(template, values, opts.system) + [{"role": "user", "content": text}], dict(template.defaults)
        rendered = templates.render(template, values, system=opts.system)
        return rendered.messages, rendered.defaults

    def batch_input(self, fields: dict[str, Any], field: str) -> str | list[dict]:
        """A row's text is a prompt, and a list of messages a conversation (as OpenAI's batch input
        files hold them: `--field body.messages --id-field custom_id`)."""
        if isinstance(fields.get(field), list):
            return fields[field]
        return super().batch_input(fields, field)

    def check_sampling(self, opts: ChatOptions, sampling: dict[str, Any] | None) -> None:
        params = self.sampling(sampling, templates.get_template(opts.template).defaults)
        check_varied(params.n, params, "answers")

    def check_inputs(self, inputs: str | list[dict]) -> None:
        if isinstance(inputs, str):
            if not inputs.strip():
                raise BadInputError("the prompt is empty; type a question or pipe some text")
            return
        if not isinstance(inputs, list) or not inputs:
            raise BadInputError(f"chat takes a prompt (str) or messages ([{{'role': 'user', 'content': ...}}, ...]), got {type_name(inputs)}")
        for number, message in enumerate(inputs):
            if _plain(message) is None:
                shown = repr(message) if len(repr(message)) <= 80 else repr(message)[:77] + "..."
                raise BadInputError(f"chat message {number} must be {{'role': 'system', 'user' or 'assistant', 'content': TEXT}}, got {shown}")

    def preprocess(self, inputs: str | list[dict], opts: ChatOptions) -> tuple[list[dict], dict]:
        if isinstance(inputs, str):
            return self.user_message(inputs, opts)
        inputs = [_plain(m) for m in inputs]
        template = templates.get_template(opts.template)
        values = {**opts.variables, template.input_variable(opts.variables): ""}  # a system prompt reading the message gets none: each turn holds its own
        system = templates.render_system(template, values, opts.system)
        given = [m["content"] for m in inputs if m["role"] == "system"]
        if given and not system:  # several (a "developer" one too, or one midway) kept as one, first, as a saved conversation's are
            system = [{"role": "system", "content": "\n\n".join(given)}]
        return system + [m for m in inputs if m["role"] != "system"], dict(template.defaults)

    def pattern_at(self, messages: list[dict], opts: ChatOptions) -> int | None:
        """Where `messages` hold the pattern of a template sent once (`Template.once`): the index of
        the last user message that is its render around some text; None where none is (or the
        template is none such): the conversation's next turn sends the pattern then."""
        template = templates.get_template(opts.template)
        if not template.once:
            return None
        mark = "\x00input\x00"
        parts = str(self.user_message(mark, opts)[0][-1]["content"]).split(mark)
        found = [i for i, m in enumerate(messages) if m["role"] == "user" and _filled(m["content"], parts)]
        return found[-1] if found else None

    def fit(self, messages: list[dict], max_tokens: int, pinned: int | None = None) -> list[dict]:
        """`longest_fit` of `messages` in what the model's context leaves `max_tokens`; a conversation
        whose last message alone is too long is an error."""
        kept, tokens = longest_fit(messages, self.engine.context_length - max_tokens, self.engine.count_tokens, pinned)
        check_fits(self.engine, tokens, max_tokens, f"shorten it or lower {option('max_tokens')}")
        return kept

    def reply_params(self, sampling: dict[str, Any] | None, defaults: dict[str, Any]):
        """The sampling settings of a reply; the task's default `max_tokens` is at most a quarter of
        the model's context, so that a small model's context is not all taken by the reply."""
        params = self.sampling(sampling, defaults)
        if "max_tokens" in {**defaults, **{k: v for k, v in (sampling or {}).items() if v is not None}}:
            return params
        return params.replace(max_tokens=max(1, min(params.max_tokens, self.engine.context_length // 4)))

    def forward(self, prepared, opts: ChatOptions, sampling: dict[str, Any]):
        messages, defaults = prepared
        params = self.reply_params(sampling, defaults)
        fitted = self.fit(messages, params.max_tokens, self.pattern_at(messages, opts))
        return messages, len(messages) - len(fitted), self.engine.generate([fitted], params)[0], params

    def postprocess(self, raw, opts: ChatOptions) -> dict[str, Any]:
        """`text` (and each of `choices`); with a JSON schema, the JSON as one line, and `data` its value;
        `messages`, the whole conversation given and the answer (go on from it), `dropped_messages`, how
        many of its oldest messages (not a pattern sent once) were left out of the prompt to fit the model's context."""
        messages, dropped, completions, params = raw
        texts, extra = answer_texts(completions, params, self.engine)
        return {
            "text": texts[0], "choices": texts, "messages": messages + [{"role": "assistant", "content": texts[0]}], "dropped_messages": dropped,
            "usage": usage_of(completions), **extra,
        }

    def stream(self, inputs: str | list[dict], sampling: dict[str, Any] | None = None, *, stop: Any = None, **options: Any) -> AnswerStream:
        """The answer as text pieces while it is generated, then its whole result (`AnswerStream`,
        `result` what calling the generator returns); bad inputs or settings fail at the call. Where
        the model is not loaded yet, it returns at once: the model loads, and the prompt is checked
        against its context, when the first piece is asked for. `stop`: a `threading.Event` that
        stops it from any thread (`AnswerStream.stopping_on`)."""
        check_stop(stop)
        self.check_settings(sampling)
        opts = self.validate(options)
        self.warn_greedy(opts, sampling)
        self.check_inputs(inputs)
        messages, defaults = self.preprocess(inputs, opts)
        n = self.sampling(sampling, defaults).n
        if n > 1:
            raise OptionError("n", f"must be 1 to stream (one answer comes as it is written), got {n}; call the generator itself for several")
        kept: list = []

        def start() -> tuple[Any, list[dict], Any]:
            params = self.reply_params(sampling, defaults)
            kept[:] = [self.fit(messages, params.max_tokens, self.pattern_at(messages, opts)), params]
            return self.engine, kept[0], params

        def finish(completion: Any) -> dict[str, Any]:
            fitted, params = kept
            return self.postprocess((messages, len(messages) - len(fitted), [completion], params), opts)

        if self._engine is None:
            return AnswerStream.of_engine_later(start, finish).stopping_on(stop)
        return AnswerStream.of_engine(*start(), finish).stopping_on(stop)


def _filled(text: str, parts: list[str]) -> bool:
    """Whether `text` is a template's render split around its input (`parts`), filled with some text."""
    if len(text) < sum(map(len, parts)) or not text.startswith(parts[0]) or not text.endswith(parts[-1]):
        return False
    at = len(parts[0])
    for part in parts[1:-1]:  # the input placed more than once: the text between, in order
        at = text.find(part, at)
        if at < 0:
            return False
        at += len(part)
    return at <= len(text) - len(parts[-1])


def _file(path: Any, name: str) -> Path:
    """`path` (text or a Path) as a Path; anything else is an `OptionError` about option `name`."""
    if not isinstance(path, (str, Path)):
        raise OptionError(name, f"must be a file's name (str or Path), got {type_name(path)}")
    return Path(path).expanduser()


def _system(text: Any) -> str | None:
    """A session's system prompt as given: text (or None for the template's own)."""
    return coerce_value("system", text, str | None, OptionError)


class ChatSession:
    """A conversation kept across turns: `send` streams a reply and records both sides. With `path`
    (a saved conversation, see `aigc.conversations`) it starts from that file when there is one and
    writes the conversation back to it after every reply; `system` replaces a saved system prompt and
    `template` a saved template (the file keeps one other than `chat`, a template file's by its
    absolute path), `variables` (the template's other variables) the saved ones, which go with the
    saved template only; `no_variable_replacement` sends a fabric pattern's placeholders but
    `{{input}}` as written (kept with the template, as its variables). `keep=False` starts from `path` and writes nothing back. A file deleted
    by another process once the session had it is not made again: the next write is a
    `ConversationDeletedError`. Without a `generator`, the session makes the chat generator for
    `model`: when None, the model the session file was saved with, else the default model.

    A session that writes to `path` holds it, as `aigc chat --session` does, from when it is made
    until `close()`, the end of its `with` block, or its garbage collection: another `aigc chat` or
    `ChatSession` on the file meanwhile fails at once with a `ConversationOpenError`, rather than one
    overwriting the other's turns."""

    def __init__(self, generator: ChatGenerator | None = None, system: str | None = None, template: str | None = None, sampling: dict | None = None, path: str | Path | None = None, variables: dict | None = None, keep: bool = True, *, model: str | None = None, no_variable_replacement: bool = False):
        if generator is not None and model is not None:
            raise BadInputError("give a ChatSession its generator or a model, not both: the generator has its model")
        if generator is not None and not isinstance(generator, ChatGenerator):
            raise BadInputError(f"a ChatSession runs the chat generator (aigc.get_generator('chat')), or model=NAME makes it; got {type_name(generator)}")
        for name, flag in (("keep", keep), ("no_variable_replacement", no_variable_replacement)):
            if not isinstance(flag, bool):  # "no" would be taken as yes
                raise OptionError(name, f"must be True or False, got {flag!r}")
        self.sampling = dict(sampling or {})
        self._given = dict(self.sampling)  # what "default" goes back to
        self.path = _file(path, "path") if path is not None else None
        self.keep = keep
        if self.path is not None and self.path.suffix.lower() != ".json":
            raise BadInputError(f"session file {path} must end in .json (the conversation is kept as JSON; save() writes Markdown copies)")
        if self.path is not None:
            if self.path.exists() and not self.path.is_file() and not self.path.is_dir():
                raise BadInputError(f"session file {path} is not a regular file (a pipe or device); give a .json file")
            if keep:
                check_writable(self.path, "the session file")  # before any reply that could not be kept
        hold = conversations.held_for_session(self.path) if self.path is not None and keep else contextlib.ExitStack()
        self._release = weakref.finalize(self, hold.close)  # close(), a with block's end, or garbage collection lets go of the file
        try:
            self._on_disk = self.path is not None and self.path.exists()  # once it is, a write does not make it again
            saved = conversations.read(self.path) if self._on_disk else conversations.Conversation()
            self.system = _system(system) if system is not None else saved.system
            self.messages: list[dict] = saved.messages
            self.model, self.extra = saved.model, saved.extra
            self.generator = generator if generator is not None else self._generator(model, saved.model)
            self.generator.check_settings(sampling)  # a misspelt setting fails now, not at the first reply
            if (n := self.generator.sampling(self.sampling).n) != 1:
                raise OptionError("n", f"is for one-shot calls (aigc.generate('chat', ..., sampling={{'n': {n}}}) gives {n} answers); a ChatSession writes one reply a turn: leave it out")
            self._writing: dict | None = None  # the reply being streamed, while it is
            self.template, self.variables = self._template(template, variables, saved, no_variable_replacement)
            self._asked = self._asked_under(saved)  # (conversation length, (template, variables)) after each turn taken
        except BaseException:  # the file is not held by a session that was not made
            self._release()
            raise

    @staticmethod
    def _generator(model: str | None, saved: str | None) -> ChatGenerator:
        """The chat generator for `model`, else the model the session was saved with (as `llm -c`),
        unless that is a server elsewhere (a file someone shared must not send your messages and API
        key to theirs), else the default."""
        if model is not None or saved is None:
            return get_generator("chat", model=model)
        host = foreign_host(saved)
        if host is not None:
            raise BadInputError(
                f"this session was saved with model {saved}, a server on {host}; a session file may not send your messages and API key "
                f"elsewhere on its own: to go on with that server, give ChatSession(model={saved!r}) yourself, or model=NAME for another"
            )
        try:
            return get_generator("chat", model=saved)
        except UnknownModelError as exc:
            raise UnknownModelError(f"this session was saved with model {saved}, which is not here ({exc}); give ChatSession(model=NAME) to go on with another") from None

    @staticmethod
    def _asked_under(saved: conversations.Conversation) -> list[tuple[int, tuple[str, dict]]]:
        """The template and variables that the turns of `saved` were asked under, as far as its file
        says: those of the last turn, taken for them all."""
        kept = saved.extra.get("variables")
        return [(0, (saved.extra.get("template", "chat"), kept if isinstance(kept, dict) else {}))] if saved.messages else []

    def _last_asked(self) -> tuple[str, dict] | None:
        """The template and variables the conversation's last turn was asked under (None: no turn):
        of the turns taken, the last one still in it (after /undo, an earlier one)."""
        return next((under for length, under in reversed(self._asked) if length <= len(self.messages)), None) if self.messages else None

    @staticmethod
    def _template(given: str | None, variables: dict | None, saved: conversations.Conversation, literal: bool = False) -> tuple[str, dict]:
        """The template (a file's by its absolute path) and its variables the session goes on with."""
        template = given or saved.extra.get("template", "chat")
        if not isinstance(template, str) or not template:  # a hand-edited file
            raise BadInputError(f"this session's template must be a name or a .j2 file, got {template!r}; give one ({option('template', 'chat')}) to go on with it")
        resolved = str(Path(template).expanduser().resolve()) if templates.is_path(template) else template
        kept = saved.extra.get("variables")
        if variables is None and isinstance(kept, dict) and resolved == saved.extra.get("template", "chat"):
            variables, given_now = kept, False
        else:
            given_now = bool(given) or variables is not None or literal
        try:
            opts = ChatOptions(template=template, variables=variables, no_variable_replacement=literal)  # an unknown template (or not a name at all) fails before any turn
        except BadInputError as exc:
            if given_now:
                raise
            raise BadInputError(f"this session was saved with template {template!r}, which cannot be used: {exc}; give another template ({option('template', 'chat')}) to go on with it") from exc
        return resolved, opts.variables

    def __repr__(self) -> str:
        where = f", {str(self.path)!r}" if self.path is not None else ""
        return f"<ChatSession model {self.generator.model_name or self.model or 'default'!r}, {len(self.messages)} messages{where}{'' if self._release.alive else ', closed'}>"

    def close(self) -> None:
        """Let go of the session file, so that another `aigc chat` or `ChatSession` may take it; a
        closed session takes no more turns or changes (a `BadInputError`)."""
        self._release()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *raised: object) -> None:
        self.close()

    def reset(self) -> None:
        """Forget every turn (the system prompt, template and settings stay), in the session file too."""
        self.messages, self._asked = [], []
        self._keep()

    def load(self, path: str | Path) -> None:
        """Go on from the conversation saved in `path` (JSON), its system prompt and template included;
        an empty file holds none (it would have emptied this one, and its file)."""
        saved = conversations.read(_file(path, "path"))
        if not saved.messages and not saved.system and not Path(path).expanduser().read_text(encoding="utf-8-sig").strip():
            raise BadInputError(f"{path} is empty: there is no conversation in it to load")
        template, variables = self._template(None, None, saved)
        self.system, self.messages, self.model, self.extra = saved.system, saved.messages, saved.model or self.model, saved.extra
        self.template, self.variables, self._asked = template, variables, self._asked_under(saved)
        self._keep()

    def set_system(self, text: str) -> None:
        """Use `text` as the system prompt from the next reply on (empty: none), in the session file too."""
        self.system = _system(text) or None
        self._keep()

    def undo(self) -> None:
        """Forget the last turn: the user's last message and the reply to it."""
        starts = [i for i, m in enumerate(self.messages) if m["role"] == "user"]
        if not starts:
            raise BadInputError("there is no turn to undo")
        self.messages = self.messages[: starts[-1]]
        self._keep()

    def settings(self) -> dict[str, Any]:
        """The sampling settings the next reply uses: the task's and template's defaults, then the session's."""
        params = self.generator.reply_params(self.sampling, templates.get_template(self.template).defaults)
        return {name: getattr(params, name) for name in TUNABLE}

    def set_sampling(self, name: str, value: Any) -> None:
        """Change one sampling setting for the replies after (a number, or its text); None or
        "default" go back to the value the session started with (or the task's), "none" unsets the seed."""
        if name not in TUNABLE:
            meant = did_you_mean([name], TUNABLE) if isinstance(name, str) else ""
            raise BadInputError(f"there is no setting {name!r}{meant}; settings: {', '.join(TUNABLE)}")
        changed = {k: v for k, v in self.sampling.items() if k != name}
        if value in (None, "default"):
            if name in self._given:
                changed[name] = self._given[name]
        elif not (name == "seed" and value == "none"):
            changed[name] = coerce_value(name, value, TUNABLE[name], OptionError)
        self.generator.sampling(changed)  # out-of-range values fail here
        self.sampling = changed

    def retry(self) -> AnswerStream:
        """Stream a new reply to the last message in place of the old one (sampled anew: with greedy
        decoding it is the same reply). Stopped before its first word, or failed, the old reply stays.
        A reply with no user message before it (a greeting a saved conversation opens with) is none to retry."""
        self._check_idle()
        if not self.messages or self.messages[-1]["role"] != "assistant" or all(m["role"] != "user" for m in self.messages):
            raise BadInputError("there is no reply to retry yet")
        return self._reply(self.messages[:-1], list(self.messages), previous=self.messages[-1])

    def send(self, text: str) -> AnswerStream:
        """Stream the reply to `text` (a bad `text` fails at once) as the generator's `stream` does:
        then the `AnswerStream` holds its whole result (`usage`, `result`). The turn is taken when the
        iteration starts and recorded when the reply ends; if the caller stops early (Ctrl-C) and
        closes the stream, the partial reply is kept."""
        return self._reply(self._asking(text), list(self.messages))

    def answer(self, text: str) -> dict[str, Any]:
        """The chat generator's whole result for `text` (with a JSON schema in the sampling settings,
        `data` holds the checked answer), recorded like `send`'s reply; a failed turn is not."""
        conversation = self._asking(text)
        result = self.generator(conversation, sampling=self.sampling, **self.options())
        self._record(conversation + [{"role": "assistant", "content": result["text"]}])
        return result

    def _check_open(self) -> None:
        if not self._release.alive:
            raise BadInputError("this ChatSession is closed (close(), or its with block ended) and no longer holds its file; make a new ChatSession to go on")

    def _check_idle(self) -> None:
        self._check_open()
        if self._writing is not None:
            raise BadInputError("a reply is still being written: read the earlier send() or retry() to its end, or close() it, before the next turn")

    def _record(self, messages: list[dict]) -> None:
        """Take `messages`, ending in a reply, as the conversation, asked under the session's template now."""
        self.messages = messages
        self._asked.append((len(messages), (self.template, dict(self.variables))))
        self._keep()

    def _asking(self, text: str) -> list[dict]:
        """The conversation with the user's `text` added, rendered by the template (a pattern that
        places the input, only where the conversation holds none of it yet or its last turn was
        asked under another template or other variables: the pattern is sent again, as llm sends a
        system prompt again when it changes, so that A's instructions apply after A, B, A; see
        `ChatGenerator.user_message`, `pattern_at`)."""
        if not isinstance(text, str):
            raise BadInputError(f"send takes the user's text (str), got {type_name(text)}")
        self._check_idle()
        self.generator.check_inputs(text)
        opts = ChatOptions(self.template, self.system, self.variables)
        switched = self._last_asked() not in (None, (self.template, self.variables))
        turn, _ = self.generator.user_message(text, opts, switched or self.generator.pattern_at(self.messages, opts) is None)
        return self.messages + [m for m in turn if m["role"] == "user"]

    def ask(self, text: str) -> str:
        """The whole reply to `text` as it is recorded (without surrounding blank space), like `send`'s."""
        for _ in self.send(text):
            pass
        return self.messages[-1]["content"]

    def _reply(self, conversation: list[dict], asked_on: list[dict], previous: dict | None = None) -> AnswerStream:
        """The reply to `conversation`, asked when the session held `asked_on`, recorded when it ends."""
        pieces: list[str] = []
        writing = {"role": "assistant", "content": ""}  # the reply's place while it is written
        relayed: list[AnswerStream] = []  # the generator's stream, once the turn has made it

        def record(result: dict[str, Any]) -> dict[str, Any]:
            if self.messages and self.messages[-1] is writing:  # not replaced meanwhile (/reset)
                self._record(conversation + [{"role": "assistant", "content": result["text"]}])  # as `answer` records it: a JSON answer as one line
            return result

        return AnswerStream(self._turn(conversation, asked_on, previous, writing, pieces, relayed), record, relaying=lambda: relayed[0] if relayed else None)

    def _turn(
        self, conversation: list[dict], asked_on: list[dict], previous: dict | None, writing: dict, pieces: list[str], relayed: list[AnswerStream],
    ) -> typing.Generator[str, None, dict[str, Any]]:
        """The reply's pieces, added to `pieces`, then the generator's result (its stream added to `relayed`); the turn is taken
        when the first piece is asked for. Stopped part-way (Ctrl-C, `close()`), the partial reply
        is kept; stopped before any reply, or failed, the turn is dropped."""
        self._check_idle()
        if self.messages != asked_on:
            raise BadInputError("the conversation went on since this reply was asked for; ask again")
        self.messages, self._writing = conversation + [writing], writing
        finished = False
        try:
            # one reply a turn: a template's `n` (several answers) is for one-shot calls, as `answer` keeps the first
            stream = self.generator.stream(conversation, {"n": 1, **self.sampling}, **self.options())
            relayed.append(stream)
            yield from relay(stream, pieces)
            finished = True
        except AigcError:
            pieces.clear()  # a turn that could not be answered is dropped, even part-way
            raise
        finally:
            self._writing = None
            if not finished and self.messages and self.messages[-1] is writing:  # an ended one is recorded by the stream's finish
                if reply := "".join(pieces).strip():
                    self._record(conversation + [{"role": "assistant", "content": reply}])
                else:
                    self.messages = conversation + [previous] if previous else conversation[:-1]
        return stream.result

    def options(self) -> dict[str, Any]:
        """The chat generator's options for the session's replies (as logged)."""
        return {"template": self.template, "system": self.system, **({"variables": self.variables} if self.variables else {})}

    def conversation(self) -> conversations.Conversation:
        """The session as an `aigc.conversations.Conversation`: system prompt, messages (`{"role",
        "content"}` dicts), model and template, as the session file holds them."""
        extra = {k: v for k, v in self.extra.items() if k not in ("template", "variables")}
        if self.template != "chat":
            extra["template"] = self.template
        if self.variables:
            extra["variables"] = self.variables
        from ..engine.models import recorded_name

        model = self.generator.model_name or self.model
        return conversations.Conversation(self.system, self.messages, model and recorded_name(model), extra)

    def transcript(self) -> list[dict]:
        """The messages so far, the system prompt first, as chat APIs take them (`[{"role": ..., "content": ...}]`)."""
        return self.conversation().transcript()

    def save(self, path: str, flag: str = "-o") -> Path:
        """Write the conversation as JSON (`.json`) or Markdown (anything else); `flag` names where
        the path came from in errors."""
        return self.conversation().save(_file(path, "path"), flag)

    def _keep(self) -> None:
        """Write the conversation back to its file; an unnamed one (`aigc chat`'s, kept by id) is not
        made before its first turn, so a chat that only ran slash commands leaves none behind."""
        self._check_open()
        if self.path is not None and self.keep:
            if not self._on_disk and not self.messages and conversations.unnamed(self.path):
                return
            if self._on_disk and not self.path.exists():
                raise conversations.deleted(self.path)
            self.save(str(self.path), "--session")
            self._on_disk = True
