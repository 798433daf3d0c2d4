"""`aigc chat`: one-shot answers, or an interactive REPL on a terminal."""

import contextlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import config, conversations, locks, templates, ui
from ..engine.sampling import DRAWING
from ..errors import AigcError, BadInputError, ContextLengthError, ConversationDeletedError, ModelKindError, ModelUnavailableError, Terminated, UnknownModelError, WriteError, did_you_mean, options_named
from ..generators.base import seed_to_draw
from ..generators.chat import TUNABLE, ChatSession, with_files
from ..json_schemas import several, shown
from ..markdown_blocks import extract_code
from ..textio import STDIN, read_document, readable_name
from ..writing import check_writable
from . import complete, examples
from .command_defaults import DefaultsCommand, from_table
from .options import LITERAL_HELP, Answers, Extract, ExtractLast, RunOptions, Schema, Wait, WaitTimeout, check_extract, check_vars_used, generation_options, held_stream, parse_vars, read_schema_option, stdin_text, waiting_limit, weights_of

REPL_HELP = """Commands:
  /help, /?        this help
  /show            the model, system prompt, template, settings, conversation
  /file PATH       add a text file to your next message (/file alone lists them)
  /retry           answer your last message again, in place of the last reply
  /undo            forget the last turn (your message and its reply)
  /set KEY VALUE   change a sampling setting (/set alone shows them;
                   /set KEY default; /set system TEXT as /system; ollama's
                   /set parameter KEY VALUE, num_predict, repeat_penalty too)
  /reset, /clear   forget the conversation and the files added with /file
                   (keeps the system prompt)
  /system TEXT     set the system prompt (/system alone shows it;
                   /system default: back to the default)
  /save FILE       save the conversation (.json, or Markdown for any other
                   name); asks before it replaces a file
  /load FILE       go on from a conversation saved as .json, or from a
                   session by its name (/load trip); new turns are saved
                   where this chat's are (-S), not to that session; asks
                   before it replaces this session's turns
  /exit, /bye      leave (/quit, exit or quit alone on a line, and Ctrl-D too)
A line starting with \"\"\" goes on over several lines until one ends with \"\"\"
(sent as typed, even if it starts with / or is just exit; as llm's !multi
up to !end); start a message with // to send one line that starts with /.
Ctrl-C stops a reply that is being written."""
QUOTES = '"""'
HISTORY_LINES = 1000  # input lines kept across chats
EXIT_WORDS = ("exit", "quit")  # alone on a line, as in llm and python; """exit""" sends the word
OLLAMA_SETTINGS = {"num_predict": "max_tokens", "repeat_penalty": "repetition_penalty"}  # as ollama's /set parameter names them
OLLAMA_SWITCHES = {  # ollama's other /set words, and what aigc has for each
    "verbose": "--stats on the command line prints token counts and tokens/s",
    "quiet": "the chat prints no timings unless --stats is given",
    "format": "--schema '{}' (or a JSON schema) on the command line holds the answers to JSON",
    "noformat": "answers are plain text unless --schema is given on the command line",
    "history": "the input history is always kept",
    "nohistory": "the input history is always kept",
    "wordwrap": "answers are printed as the model writes them",
    "nowordwrap": "answers are printed as the model writes them",
}
LLM_COMMANDS = {  # llm chat's other ! commands, which would otherwise go to the model as a message
    "!edit": 'writes a message in your editor, which this chat does not; write one over several lines between """ and """ (or !multi and !end)',
    "!fragment": "adds a fragment to your message; /file PATH adds a file to your next one",
}
SLASH_COMMANDS = ("/help", "/show", "/file", "/retry", "/undo", "/set", "/reset", "/clear", "/system", "/save", "/load", "/exit", "/bye", "/quit")


@generation_options(logged=True)
def chat(
    prompt: Annotated[Optional[str], typer.Argument(metavar="PROMPT", help="Ask this and exit (- reads it from stdin); piped input is added after it. Without either, a chat session starts.")] = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")] = None,
    template: Annotated[Optional[str], typer.Option("--template", "-t", help="Prompt template to wrap each message in (default chat; a session keeps the one it was saved with).", show_default=False, autocompletion=complete.templates)] = None,
    var: Annotated[Optional[list[str]], typer.Option("--var", help="A variable of the template other than the one each message fills, key=value (repeatable; a session keeps them with its template).")] = None,
    no_variable_replacement: Annotated[bool, typer.Option("--no-variable-replacement", help=LITERAL_HELP)] = False,
    session: Annotated[Optional[str], typer.Option("--session", "-S", help="Go on from a named session (or a .json file) and save the conversation to it after each reply; `aigc sessions` lists them.", autocompletion=complete.sessions)] = None,
    resume: Annotated[bool, typer.Option("--continue", "-c", help="Go on from the most recent conversation: a one-shot or REPL chat (kept while answers are logged) or a named session.")] = False,
    cid: Annotated[Optional[str], typer.Option("--cid", metavar="ID", help="Go on from the conversation with this id, as `aigc logs` shows it (after 'session').")] = None,
    wait: Wait = False,
    wait_timeout: WaitTimeout = None,
    files: Annotated[Optional[list[str]], typer.Option("--file", "-f", metavar="FILE", help="A text file the prompt is about, put before it with its name (repeatable); in a chat session, added to the first message. Piped stdin is still read and added: in a `while read` loop give `< /dev/null`.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {model, text, finish_reason, usage, conversation} as JSON (one-shot only; session: PATH instead of conversation with --session; with --schema, data too; choices where the template asks for several answers).")] = False,
    schema: Schema = None,
    n: Answers = None,
    extract: Extract = False,
    extract_last: ExtractLast = False,
    *,
    run: RunOptions,
) -> None:
    """Chat with the model."""
    check_extract(extract, extract_last, as_json)
    code = "--xl" if extract_last else "-x" if extract else None  # the flag of the code block printed
    json_schema = read_schema_option(schema)
    run.json_schema = json_schema
    run.n = n
    variables = parse_vars(var) if var else None
    if (files or []).count("-") > 1:
        raise BadInputError("-f - is given twice; standard input is read once, so give it once")
    if prompt == "-":  # stdin, as a FILE of - is for the other commands: not the prompt "-"
        if sys.stdin is None or sys.stdin.isatty():
            raise BadInputError("reading the prompt from stdin, but nothing was piped in; pipe it in or give it as an argument")
        prompt = None
    attached = [(STDIN if name == "-" else name, read_document(name, as_is=True)) for name in files or []]  # bad files fail before the model loads
    piped = None if "-" in (files or []) else stdin_text()
    if prompt is None and piped is None and not attached and sys.stdin is not None and sys.stdin.isatty():  # interactive: the table's one-shot settings do not apply
        as_json, n = as_json and not from_table("as_json"), None if from_table("n") else n
        run.n, run.json_schema = n, None if from_table("schema") else run.json_schema
        code = None if code and from_table("extract_last" if extract_last else "extract") else code
    if resume + (session is not None) + (cid is not None) > 1:
        raise BadInputError("give only one of --session NAME, --continue and --cid ID")
    several = (n or 1) > 1  # answers to one prompt: no reply a conversation goes on from
    if several and (resume or session is not None or cid is not None):
        raise BadInputError(f"-n {n} gives several answers to one prompt, and a conversation goes on from one reply a turn: leave out -n, or --session, --continue and --cid")
    path, keep, existing = None, True, True  # existing: the conversation was there when picked
    if resume or cid is not None:
        path = (conversations.latest() if resume else conversations.conversation_path(cid)).absolute()
        keep = _logged(run) or not conversations.unnamed(path)  # an unnamed one is kept as its answers are
        unkept = "" if keep else "; answers are not logged, so this turn is not kept in it either"
        ui.info(f"(continuing {conversations.described(path)}{', the latest' * resume}{unkept})")
    elif session is not None:
        path = _session_file(session)
        existing = path.is_file()
    elif _logged(run) and not several:  # an unnamed conversation, kept as its answers are, for -c and --cid
        path, existing = _new_conversation(), False
    if path is None:
        return _chat(prompt, piped, attached, system, template, variables, as_json, run, path, keep, code, no_variable_replacement)
    wait, limit = waiting_limit(wait, wait_timeout)
    waiting = (lambda: ui.info(f"(waiting for another aigc chat to finish with {conversations.described(path)})")) if wait else None
    with conversations.in_use(path, existing, waiting, limit):  # held while the chat runs; one deleted since it was picked is not made again
        _remember(path)
        _chat(prompt, piped, attached, system, template, variables, as_json, run, path, keep, code, no_variable_replacement)


def _new_conversation() -> Optional[Path]:
    """A new unnamed conversation's file, or None where the data directory cannot take it (one
    warning): the chat answers all the same, as it does where the log cannot be written."""
    try:
        path = conversations.new_conversation()
        check_writable(path, "the conversation")
        return path
    except BadInputError as exc:
        ui.warn(f"this chat is not kept for -c or --cid: {exc}")
        return None


def _logged(run: RunOptions) -> bool:
    """Whether this run logs its answers (--log/--no-log, else `aigc logs on|off`)."""
    try:
        return run.logs_answers()
    except AigcError:  # a bad AIGC_LOGS: said when the answer is logged
        return False


def _remember(path) -> None:
    """Note a session file opened by its path for `aigc chat -c`; a note that cannot be written is a warning."""
    try:
        conversations.remember(path)
    except AigcError as exc:
        ui.warn(f"cannot note {path} for `aigc chat -c`: {exc}")


def _chat(prompt, piped, attached, system, template, variables, as_json, run: RunOptions, path, keep: bool = True, code: Optional[str] = None, literal: bool = False) -> None:
    if prompt is None and piped is None:
        if sys.stdin is not None and sys.stdin.isatty() and not (attached and (as_json or run.json_schema is not None or code)):
            if as_json or run.json_schema is not None or code or (run.n or 1) > 1:
                flag = "--json" if as_json else "--schema" if run.json_schema is not None else code or f"-n {run.n}"
                raise BadInputError(f"{flag} is for one-shot answers; give a prompt as an argument or pipe one in")
            return _repl(run, system, template, variables, path, attached, keep, literal)
        if not attached:  # stdin closed (None) or empty
            raise BadInputError("no prompt given; pass one as an argument or pipe it in")
    text = with_files("\n\n".join(part.strip() for part in (prompt, piped) if part and part.strip()), attached)
    with _summarize_pointed_to(attached, piped):
        _answer_once(text, system, template, variables, as_json, run, path, keep, code, literal)


@contextlib.contextmanager
def _summarize_pointed_to(attached, piped):
    """A prompt too long for the model's context, with a file or piped text in it that takes half
    the context or more, points to `aigc summarize`, which reads a long document in parts (not when
    a small file meets a large max_tokens)."""
    try:
        yield
    except ContextLengthError as exc:
        if not (attached or piped) or exc.prompt_tokens is None or exc.prompt_tokens * 2 < exc.context_length:
            raise
        names = [name for name, _ in attached] or [STDIN]  # piped text alone
        name = "FILE" if len(names) > 1 else "-" if names[0] == STDIN else shlex.quote(names[0])
        pointed = ContextLengthError(f"{exc.args[0]}; to summarize a long document, `aigc summarize {name}` reads it in parts")
        pointed.at, pointed.index = exc.at, exc.index
        raise pointed from None


def _answer_once(text, system, template, variables, as_json, run: RunOptions, path, keep: bool, code: Optional[str], literal: bool) -> None:
    generator = _generator(run, template, path)
    if path is not None:
        return _session_turn(_session(generator, system, template, run, path, variables, keep, literal), run, text, as_json, code)
    options = {"template": template or "chat", "system": system, **({"no_variable_replacement": True} if literal else {})}
    if variables:
        options["variables"] = generator.validate({**options, "variables": variables}).variables  # as the template takes them (times=2 a number)
        check_vars_used(templates.get_template(options["template"]), variables)
    run.prepare(generator, text, options)
    run.draw_seed(generator, options)
    sampling = run.sampling()
    result = None
    streamed = _streamed(generator, options, run, code is not None)
    if streamed and not as_json:
        with ui.prints_to_stderr():  # what generator code prints goes to stderr
            answer, reason = ui.stream_result(generator.stream(text, sampling, **options), on_stop=run.keeps_stopped(generator, "chat", text, options), write=_whole())
        answer = answer.strip()
        run.warn_cut_off(reason, template=options["template"])
    else:
        with ui.prints_to_stderr():
            if streamed:  # --json: read as a stream, so that a stop still prints the answer so far
                result = held_stream(generator.stream(text, sampling, **options), run.keeps_stopped(generator, "chat", text, options), lambda partial: _json_result(generator, partial, **run.drawn_seed()))
            else:
                result = generator(text, sampling=sampling, **options)
        answer = shown(result)
        if as_json:
            _json_result(generator, result, **run.drawn_seed())
        else:
            ui.result(_shown_code(answer, code))
        run.warn_cut_off(*result.get("finish_reasons", [result["finish_reason"]]), template=options["template"])
    run.keep(generator, "chat", text, answer, options, result.get("data") if result else None)
    if (run.n or 1) > 1 and _logged(run):  # said once answered: a refusal (sampling that cannot vary) comes alone
        ui.info(f"(-n {run.n}: the answers are logged, but start no conversation; aigc chat -c goes on from the one before)")
    run.report(generator)


def _generator(run: RunOptions, template: Optional[str], path):
    """The chat generator: on -m's model, else on the one the conversation at `path` was saved with
    (as llm's -c goes on), else as `run` picks it. A saved server elsewhere (an openai:URL neither on
    this machine nor OpenAI's: the file may be someone else's) or a model not here (unknown, or not
    downloaded: a session file never starts a download) is a warning, and the chat goes on with that pick."""
    from ..template_files import foreign_host

    saved = conversations.read(path).model if run.model is None and path is not None and path.is_file() else None
    if saved is None:
        return run.generator("chat", template=template)
    if (host := foreign_host(saved)) is not None:
        ui.warn(f"this session was with {saved}, a server on {host}; a session file does not send your messages elsewhere on its own, so it goes on without it (-m {shlex.quote(saved)} goes on with it)")
        return run.generator("chat", template=template)
    try:
        if not _not_downloaded(saved):
            return run.generator("chat", template=template, model=saved)
        ui.warn(f"this session was with {saved}, which is not downloaded here; a session file does not start a download on its own, so it goes on without it (-m {shlex.quote(saved)} downloads it and goes on with it)")
    except (UnknownModelError, ModelKindError, ModelUnavailableError) as exc:
        ui.warn(f"this session was with {saved}, which cannot be used here ({exc}); it goes on without it (-m NAME picks a model)")
    return run.generator("chat", template=template)


def _not_downloaded(name: str) -> bool:
    """Whether the model `name` would be downloaded (or fetched from PyPI) to be used; the default
    model, which any chat downloads, is not counted."""
    from ..engine import models

    return name != config.default_source("text")[0] and not models.resolve(name).installed


def _session(generator, system, template, run: RunOptions, path, variables, keep: bool, literal: bool = False) -> ChatSession:
    """The chat's `ChatSession`; a --var its template (given, or the session's) never uses is an error."""
    session = ChatSession(generator, system=system, template=template, sampling=run.sampling(), path=path, variables=variables, keep=keep, no_variable_replacement=literal)
    if variables:
        check_vars_used(templates.get_template(session.template), variables)
    return session


def _streamed(generator, options: dict, run: RunOptions, held: bool) -> bool:
    """Whether the answer is read as a stream: one plain answer, shown as it comes on a terminal and
    elsewhere written whole (as far as it went where Ctrl-C or SIGTERM stops it), or held for
    --json; not one `held` for -x, not JSON held to a schema, from --schema or the template's
    defaults, which is printed again with an indent; not several."""
    if held or run.json_schema is not None:
        return False
    defaults = templates.get_template(generator.validate(options).template).defaults
    return "json_schema" not in defaults and int(run.n or defaults.get("n") or 1) == 1


def _whole():
    """How a streamed answer is written: None (as it comes) on a terminal, else whole, at its end."""
    return None if ui.stdout().isatty() else ui.result


def _session_file(name: str):
    """The session's file, checked before the model loads (a named session's directory is made)."""
    path = conversations.session_path(name)
    if path.parent == conversations.sessions_dir():
        config.data_subdir("sessions")
    check_writable(path, "--session")
    return path.absolute()


def _shown_code(answer: str, code: Optional[str]) -> str:
    """The answer as printed: its first or last code block where `code` is -x or --xl, else whole."""
    return answer if code is None else extract_code(answer, last=code == "--xl")


def _session_turn(session: ChatSession, run: RunOptions, text: str, as_json: bool, code: Optional[str] = None) -> None:
    """One answer that goes on from the session's conversation, which is then saved."""
    generator = session.generator
    run.prepare(generator, text, session.options())
    _check_model(session, run)
    run.draw_seed(generator, session.options())
    session.sampling |= run.drawn_seed()  # this turn's only: a session's sampling is not saved
    result = None
    label = conversations.session_label(session.path)
    streamed = _streamed(generator, session.options(), run, code is not None)
    if streamed and not as_json:
        with ui.prints_to_stderr():
            answer, reason = ui.stream_result(session.send(text), on_stop=run.keeps_stopped(generator, "chat", text, session.options(), label), write=_whole())
        answer = answer.strip()
        run.warn_cut_off(reason, template=session.template)
    else:
        named = {"session": readable_name(session.path)} if not conversations.unnamed(session.path) else {"conversation": label}
        with ui.prints_to_stderr():
            if streamed:  # --json: read as a stream, so that a stop still prints the answer so far
                result = held_stream(session.send(text), run.keeps_stopped(generator, "chat", text, session.options(), label), lambda partial: _json_result(generator, partial, **named, **run.drawn_seed()))
            else:
                result = session.answer(text)
        answer = shown(result)
        if as_json:
            _json_result(generator, result, **named, **run.drawn_seed())
        else:
            ui.result(_shown_code(answer, code))
        run.warn_cut_off(result["finish_reason"], template=session.template)
    run.keep(generator, "chat", text, answer, session.options(), result.get("data") if result else None, session=label)
    run.report(generator)


def _json_result(generator, result: dict, **extra) -> None:
    data = {"data": result["data"]} if "data" in result else {}
    shown = {"model": generator.engine.name, **weights_of(generator), "text": result["text"], "finish_reason": result["finish_reason"], "usage": result["usage"]}
    ui.result(json.dumps({**shown, **several(result), **extra, **data}, ensure_ascii=False))


def _check_model(session: ChatSession, run: RunOptions) -> None:
    """Say so when -m has a session go on with another model than the one it was saved with (left
    out, `_generator` said why it could not)."""
    from ..engine.models import recorded_name

    name = session.generator.engine.name
    if run.model is not None and session.messages and session.model and recorded_name(session.model) != recorded_name(name):
        ui.warn(f"this session was with {session.model}; it goes on with {name} (without -m it goes on with {session.model})")


def _repl(run: RunOptions, system: Optional[str], template: Optional[str], variables: Optional[dict], path=None, attached=(), keep: bool = True, literal: bool = False) -> None:
    history = _History(_logged(run))
    generator = _generator(run, template, path)
    session = _session(generator, system, template, run, path, variables, keep, literal)
    run.prepare(generator, None, session.options())
    ui.info(f"Chatting with {generator.engine.name}. /help for commands, exit or Ctrl-D to leave.")
    if path is not None and (session.messages or not conversations.unnamed(path)):
        ui.info(f"({conversations.described(path)}: {_turns(session)}; {'each reply is saved to it' if keep else 'replies are not saved to it'})")
        _check_model(session, run)
    pending = list(attached)  # files for the next message
    if pending:
        ui.info(f"({_names(pending)} added to your next message)")
    try:
        while True:
            history.check()
            try:
                with options_named(_set_command, commands=True):  # "temperature must be ...", as /set takes it; `aigc templates list` as the CLI spells it
                    if _turn(session, run, pending) == "exit":
                        break
            except EOFError:
                _end_line()
                break
            except KeyboardInterrupt:  # at the prompt, or in a slash command
                _end_line()
                ui.info("(exit or Ctrl-D to leave)")
    finally:
        history.save()


def _set_command(name: str, value: str | None) -> str | None:
    """How the REPL names a setting given a value: the /set that gives it (`/set temperature 0.7`);
    others as the library spells them (`temperature must be ...`)."""
    return f"/set {name} {value}" if value is not None and name in TUNABLE else None


class _History:
    """Line editing for input(), with the lines typed in earlier chats (up arrow) from
    `chat_history` in aigc's data directory. `save`, on leaving, adds this chat's lines to the file
    as it is then (so a chat open at the same time keeps its lines too; the last HISTORY_LINES,
    readable by the owner only, atomically), only where `kept`, as answers are logged. `check`,
    before each message: once `aigc logs rm --all` has deleted the history, the lines typed before
    are dropped (from the up arrow too), so that none is written back. Saving and deleting take
    turns on the file's lock, so a deletion never falls between the check and the write."""

    def __init__(self, kept: bool):
        try:
            import readline
        except ImportError:  # pragma: no cover - not on every platform
            readline = None
        self.readline, self.kept, self.path = readline, kept, conversations.input_history()
        self.generation = conversations.history_generation()  # before the file is read: a deletion after it is seen
        if readline is None:  # pragma: no cover
            return
        readline.set_history_length(HISTORY_LINES)
        try:
            readline.read_history_file(self.path)
        except OSError:  # none yet, or unreadable: this chat starts without it
            pass
        self.start = readline.get_current_history_length()  # the lines after are this chat's

    def check(self) -> None:
        generation = conversations.history_generation()
        if self.readline is not None and generation != self.generation:
            self.readline.clear_history()
            self.generation, self.start = generation, 0

    def save(self) -> None:
        if self.readline is not None and self.kept:
            with contextlib.suppress(OSError, AigcError):  # `_save` warns where it cannot be made
                config.made_data_dir()  # before the lock, which is beside the history file
        with locks.held(self.path, wait=True):
            self._save()

    def _save(self) -> None:
        self.check()
        readline, path = self.readline, self.path
        if readline is None or not self.kept:
            return
        typed = [readline.get_history_item(i) for i in range(self.start + 1, readline.get_current_history_length() + 1)]
        if not typed:  # nothing to add (a history deleted meanwhile stays deleted)
            return
        readline.clear_history()
        try:
            readline.read_history_file(path)  # as other chats left it meanwhile
        except OSError:
            pass
        for line in typed:
            readline.add_history(line)
        try:
            config.made_data_dir()
            fd, tmp = tempfile.mkstemp(prefix=".chat_history.", suffix=".tmp", dir=path.parent)  # made owner-only
            os.close(fd)
            try:
                readline.write_history_file(tmp)
                os.replace(tmp, path)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except (OSError, AigcError) as exc:
            ui.warn(f"cannot keep the chat history in {path}: {getattr(exc, 'strerror', None) or exc}")


def _forget_answer(answer: str) -> None:
    """Keep the answer to a question (/save's y or n) out of the input history."""
    try:
        import readline
    except ImportError:  # pragma: no cover - not on every platform
        return
    last = readline.get_current_history_length()
    if last and readline.get_history_item(last) == answer:  # an empty answer was never added
        readline.remove_history_item(last - 1)


def _prompt_stream():
    """Where the REPL's prompts and line ends go: stdout on a terminal, else stderr (`> out.txt`
    keeps the replies only)."""
    return sys.stdout if sys.stdout.isatty() else sys.stderr


def _end_line() -> None:
    _prompt_stream().write("\n")
    _prompt_stream().flush()


def _input(prompt: str) -> str:
    """A line from the user, after `prompt` (on stderr when stdout is not the terminal)."""
    if sys.stdout.isatty():
        return input(prompt)
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return input()


def _read_message() -> tuple[str, bool]:
    """One line, or with \"\"\" at its start the lines up to one that ends with \"\"\" (as in ollama),
    or after a line `!multi` those up to one that is `!end` (as in llm; `!multi X` ends at `!end X`);
    and whether it was such a block (a message even where it starts with /). Ctrl-D inside a block drops it."""
    line = _input(">>> ")
    word, _, tag = line.strip().partition(" ")
    if word == "!multi":
        return _read_until(f"!end {tag.strip()}".strip(), word)
    if not line.lstrip().startswith(QUOTES):
        return line.strip(), False
    lines = [line.lstrip()[len(QUOTES):]]
    while not (len(lines) > 1 or lines[0].strip()) or not lines[-1].rstrip().endswith(QUOTES):
        try:
            lines.append(_input("... "))
        except EOFError:
            return _dropped(QUOTES, QUOTES)
    lines[-1] = lines[-1].rstrip()[: -len(QUOTES)]
    return "\n".join(lines).strip(), True


def _read_until(end: str, start: str) -> tuple[str, bool]:
    """The lines typed up to one that is `end`, as one message."""
    lines = []
    while True:
        try:
            line = _input("... ")
        except EOFError:
            return _dropped(start, end)
        if line.strip() == end:
            return "\n".join(lines).strip(), True
        lines.append(line)


def _dropped(start: str, end: str) -> tuple[str, bool]:
    _end_line()
    _reply(f"(unfinished {start} message dropped; end one with {end} to send it)")
    return "", True


def _turn(session: ChatSession, run: RunOptions, pending: list) -> Optional[str]:
    """Read a message (or a slash command) and act on it; "exit" ends the session. `pending`: the
    files for the next message, emptied once it is sent."""
    line, block = _read_message()
    if not line:
        return None
    if not block and line.lower() in EXIT_WORDS:
        return "exit"
    if not block and line.split()[0] in LLM_COMMANDS:
        word = line.split()[0]
        ui.error(f"{word} is llm's: it {LLM_COMMANDS[word]} ({QUOTES}{word}{QUOTES} sends it as a message)")
        return None
    if line.startswith("/") and not block:
        if not line.startswith("//"):
            return _slash(line, session, run, pending)
        line = line[1:]  # //etc/hosts: a message that starts with /
    before = len(session.messages)
    files, pending[:] = list(pending), []
    text = with_files(line, files)
    kept = lambda: len(session.messages) == before + 2  # noqa: E731 - asked after the reply
    with _seeded(session):
        try:
            reply = session.send(text)  # the template is rendered around the message now
        except AigcError as exc:  # a message the template cannot take (its files wait): the session goes on
            ui.error(str(exc))
        else:
            _answer(session, run, reply, text, kept)
    if files and not kept():  # the files wait for the next turn
        pending[:] = files
        ui.info(f"({_names(files)} still added to your next message; /reset drops {'it' if len(files) == 1 else 'them'})")
    return None


@contextlib.contextmanager
def _seeded(session: ChatSession):
    """A REPL turn's seed: where its reply samples without one (`/set seed N` gives one), one drawn
    for this reply alone (`seed_to_draw`), so that its log row records it and `--seed` (or `/set seed`)
    makes the reply again; the session's settings are as they were after the turn."""
    drawn = seed_to_draw(session.generator, session.options(), session.sampling)
    if drawn is None:
        yield
        return
    given = session.sampling
    session.sampling = {**given, "seed": drawn}
    try:
        yield
    finally:
        session.sampling = given


def _answer(session: ChatSession, run: RunOptions, reply, text: str, kept) -> None:
    """Stream a reply; log it if `kept()` says the turn was kept (a stopped reply too)."""
    run.mark(session.generator)
    try:
        with ui.prints_to_stderr():  # the prompt (input()) is not inside: readline needs the real stdout
            reason = ui.stream_result(reply)[1]
        if reason == "length":
            _reply(_fresh_line() + "(reply cut off at the token limit; /set max_tokens N raises it)")
    except KeyboardInterrupt:  # stream_result closed the reply: the partial one is recorded
        ui.info(_fresh_line() + "(reply stopped)")
    except Terminated:  # SIGTERM ends the chat: the partial reply, recorded, is logged first, as one stopped with Ctrl-C is
        _log_turn(session, run, text, kept)
        raise
    except ContextLengthError as exc:  # the turn is rolled back; the session goes on
        ui.error(exc.shown(lambda name, value: f"{name} (/set {name} N)" if name == "max_tokens" and value is None else None))
    except ConversationDeletedError:  # the chat stops: nothing more is kept
        raise
    except AigcError as exc:
        ui.error(str(exc))
    _log_turn(session, run, text, kept)
    if run.stats:
        ui.print_stats(session.generator.engine.stats)


def _log_turn(session: ChatSession, run: RunOptions, text: str, kept) -> None:
    """Log the turn's reply (as far as it went) if `kept()` says the turn was kept."""
    if kept():
        session_name = conversations.session_label(session.path) if session.path else None
        run.keep(session.generator, "chat", text, session.messages[-1]["content"], session.options(), session=session_name, sampling=session.sampling)


def _slash(line: str, session: ChatSession, run: RunOptions, pending: list) -> Optional[str]:
    command, _, arg = line.partition(" ")
    command = {"/?": "/help", "/clear": "/reset"}.get(command, command)
    if command in ("/exit", "/quit", "/bye"):
        return "exit"
    try:
        if command == "/retry":
            from ..engine.sampling import GREEDY_BELOW

            old = session.messages[-1] if session.messages else None
            with _seeded(session):
                reply = session.retry()
                if session.settings()["temperature"] < GREEDY_BELOW:
                    _reply("(at temperature 0 the reply is greedy: /retry gives the same one; /set temperature 0.7 first for another)")
                _answer(session, run, reply, session.messages[-2]["content"], kept=lambda: session.messages[-1] is not old)
        else:
            _command(command, arg.strip(), session, pending)
    except ConversationDeletedError:
        raise
    except (BadInputError, WriteError) as exc:  # a file that cannot be read or written: the session goes on
        ui.error(str(exc))
    return None


def _unquoted(arg: str) -> str:
    """A path as a shell would read it (quotes and backslashes, as a dragged-in file comes), else as
    typed; on Windows, where a backslash separates a path's parts, only the quotes around it go."""
    if os.name == "nt":
        return arg[1:-1] if len(arg) > 1 and arg[0] == arg[-1] and arg[0] in "\"'" else arg
    try:
        words = shlex.split(arg)
    except ValueError:
        return arg
    return words[0] if len(words) == 1 else arg


def _names(files: list) -> str:
    return ", ".join(name for name, _ in files)


def _fresh_line() -> str:
    """A line break to start a note after a reply with, where the reply went through a pipe to the
    terminal the note is written to (`aigc chat | tee log`): the reply's own line end may reach the
    screen only after the note, which would stick to the reply's last line."""
    return "\n" if sys.stderr.isatty() and not ui.stdout().isatty() else ""


def _reply(message: str) -> None:
    """A REPL command's answer on stderr, shown with -q too: it was asked for."""
    ui.stderr().print(message, markup=False, style="dim")


def _command(command: str, arg: str, session: ChatSession, pending: list) -> None:
    also = f"; {session.path} too" if session.path and session.keep and not conversations.unnamed(session.path) else ""
    if command == "/help":
        ui.stderr().print(REPL_HELP, markup=False)
    elif command == "/show":
        _reply(_show_text(session))
    elif command == "/file":
        if arg:
            path = _unquoted(arg)
            pending.append((path, read_document(path, as_is=True)))
        _reply(f"(your next message comes after {_names(pending)})" if pending else "(no files added; /file PATH adds one)")
    elif command == "/undo":
        session.undo()
        _reply(f"(last turn forgotten{also}: {_turns(session)})")
    elif command == "/set" and arg.partition(" ")[0] == "system":
        _command("/system", arg.partition(" ")[2].strip(), session, pending)
    elif command == "/set":
        name, _, value = arg.partition(" ")
        if name == "parameter":  # ollama's /set parameter KEY VALUE
            name, _, value = value.strip().partition(" ")
        name = OLLAMA_SETTINGS.get(name, name)
        if name in OLLAMA_SWITCHES:
            raise BadInputError(f"/set {name} is ollama's; here {OLLAMA_SWITCHES[name]}")
        if name in TUNABLE and not value.strip():  # an unknown name is said as such
            raise BadInputError(f"/set {name} needs a value, or `default` for the one the session started with")
        if name:
            session.set_sampling(name, value.strip())
        settings = session.settings()
        greedy = f"; at temperature 0 the reply is greedy: {', '.join(DRAWING[:-1])} and seed change nothing until it is raised" if name in DRAWING and value.strip() not in ("none", "default") and settings["temperature"] == 0 else ""
        _reply("(" + ", ".join(f"{k} {'none' if v is None else v}" for k, v in settings.items()) + greedy + ")")
    elif command == "/reset":
        session.reset()
        dropped, pending[:] = _names(pending), []
        _reply(f"(conversation cleared{also}{f'; {dropped} dropped' if dropped else ''})")
    elif command == "/system" and not arg:
        _reply(f"(system prompt: {session.system})" if session.system else "(no system prompt given: the template's own, if it has one; /system TEXT sets one)")
    elif command == "/system":
        default = arg == "default"
        session.set_system("" if default else arg)
        _reply(f"(system prompt {'back to the default' if default else 'set'}{also})")
    elif command == "/save":
        if not arg:
            raise BadInputError("/save needs a file name, e.g. /save chat.md or /save chat.json")
        if not session.messages and not session.system:
            raise BadInputError("there is nothing to save yet: say something first")
        target = _unquoted(arg)
        if _replaces(target):
            _reply(f"(saved to {session.save(target, '/save')})")
        else:
            _reply(f"(not saved: {target} is kept as it was)")
    elif command == "/load":
        if not arg:
            raise BadInputError("/load needs a file saved as JSON, e.g. /load chat.json, or a session's name")
        source = _loadable(_unquoted(arg), session)
        if session.path is not None and session.keep and session.messages:  # its file holds turns that loading replaces
            kept = f"{'conversation' if conversations.unnamed(session.path) else 'session'} {conversations.session_label(session.path)}"
            if not _confirmed(f"{kept} holds {_turns(session)}; replace it with {_unquoted(arg)}? [y/N] "):
                _reply(f"(not loaded: {kept} is kept as it was)")
                return
        session.load(source)
        _reply(f"(loaded {_unquoted(arg)}: {_turns(session)}" + (f"; it replaces what {session.path} held)" if session.path else ")"))
    else:
        raise BadInputError(f"unknown command {command}{did_you_mean([command], SLASH_COMMANDS)}; /help lists them, and // sends a line that starts with /")


def _loadable(target: str, session: ChatSession) -> Path:
    """What `/load` reads: the file `target`, else the session of that name (as `--session` takes one).
    A model's name (ollama's `/load MODEL`) is an error saying how to go on with that model."""
    from ..config import model_aliases
    from ..engine.models import registered_models

    path = Path(target).expanduser()
    if path.exists():
        return path
    if conversations.NAME.fullmatch(target) and conversations.session_path(target).exists():
        return conversations.session_path(target)
    if target in registered_models() or target in model_aliases():
        kept = session.path is not None and session.keep and bool(session.messages)
        go_on = f" --cid {shlex.quote(conversations.session_label(session.path))}" if kept else ""
        raise BadInputError(f"{target} is a model; a chat keeps the model it started with (ollama's /load MODEL switches): /exit, then `aigc chat -m {shlex.quote(target)}{go_on}`{' goes on from this conversation with it' if kept else ''}")
    what = "no file or session" if conversations.NAME.fullmatch(target) else "no file"
    raise BadInputError(f"{what} {target}: /load takes a file /save wrote (/load chat.json) or a session's name (`aigc sessions` lists them)")


def _replaces(target: str) -> bool:
    """Whether `/save` may write `target`: a new file, or an existing one the user says to replace."""
    real = check_writable(target, "/save")
    return not real.is_file() or _confirmed(f"{target} exists; replace it? [y/N] ")


def _confirmed(question: str) -> bool:
    """Whether the user answers yes to `question` (Ctrl-D or Ctrl-C is a no)."""
    try:
        answer = _input(question)
        _forget_answer(answer)
    except (EOFError, KeyboardInterrupt):  # Ctrl-D or Ctrl-C here is a no, not leaving the chat
        _end_line()
        return False
    return answer.strip().lower() in ("y", "yes")


def _show_text(session: ChatSession) -> str:
    """What `/show` says: the session's model, system prompt, template, settings and file."""
    settings = ", ".join(f"{k} {'none' if v is None else v}" for k, v in session.settings().items())
    return "\n".join([
        f"model: {session.generator.engine.name}",
        "system prompt: " + (session.system or "(none given: the template's own, if it has one)"),
        f"template: {session.template}" + (f" {session.variables}" if session.variables else ""),
        f"settings: {settings}",
        f"conversation: {_kept_as(session.path, session.keep)}, {_turns(session)}",
    ])


def _kept_as(path, keep: bool) -> str:
    if path is None:
        return "not kept (answers are not logged; --session NAME keeps one)"
    label = conversations.session_label(path)
    if not keep:
        return f"{label}, gone on from without saving to it (answers are not logged)"
    return f"{label} (`aigc chat --cid {label}` goes on from it)" if conversations.unnamed(path) else f"session {path}"


def _turns(session: ChatSession) -> str:
    count = sum(m["role"] == "user" for m in session.messages)
    return "new conversation" if not count else f"{count} earlier turn{'s' * (count != 1)}"


EXAMPLES = examples(
    'aigc chat "Name three uses of honey."',
    'cat notes.md | aigc chat "List the action items in:"',
    'aigc chat -c "And the next step?"        # go on from the latest chat',
)


def register(app: typer.Typer) -> None:
    app.command(cls=DefaultsCommand, epilog=EXAMPLES)(chat)
