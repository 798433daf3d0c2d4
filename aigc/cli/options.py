"""Options every generating command shares, added by one decorator instead of repeated per command."""

import contextlib
import copy
import functools
import inspect
import typing
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, fields
from typing import Annotated, Any, Callable, Optional

import typer

from .. import __version__, ui
from ..errors import AigcError, BadInputError, ModelKindError, UnknownModelError, did_you_mean
from . import complete

PANEL = "Model and sampling"
LITERAL_HELP = "Send a fabric pattern's {{name}} placeholders as written, as fabric's flag of this name does, with no --var for them; {{input}} still takes the input."
# Library option names that a command's parameter spells otherwise (`--to` sets target_language).
PARAMETERS = {"target_language": "to", "source_language": "from_", "variables": "var", "json_schema": "schema"}


def given_model(ctx: typer.Context, value: str | list[str] | None) -> str | list[str] | None:
    """-m's value; an empty or blank one (`-m "$MODEL"` with MODEL unset) is an error, never the
    default model: that is -m left out."""
    blank = [name for name in (value if isinstance(value, list) else [value] if value is not None else []) if not name.strip()]
    if blank:
        given = given_as(ctx, "model")  # --model, or the settings file's line
        given, what = (f"-m {json.dumps(blank[0])}", "-m") if given == "--model" else (given, "it")  # quoted as given
        raise BadInputError(f"{'blank' if blank[0] else 'empty'} model name ({given}); leave {what} out for the default model, or give an alias from `aigc models list`, a path or a hub id")
    return value


def env_source(ctx, name: str) -> str | None:
    """The environment variable option `name`'s value came from (`AIGC_PORT`); None when it did not."""
    param = next(p for p in ctx.command.params if p.name == name)
    from_env = getattr(ctx.get_parameter_source(name), "name", None) == "ENVIRONMENT"
    return param.envvar if from_env and isinstance(param.envvar, str) else None


def given_as(ctx, name: str) -> str:
    """How the user gave option `name`, for an error to name: `AIGC_PORT`, `--port`, or `port in
    [serve] of FILE` for a value from the command's table of the settings file (its `default_map`)."""
    if getattr(ctx.get_parameter_source(name), "name", None) == "DEFAULT_MAP":
        from ..config import settings_file

        return f"{name} in [{ctx.info_name}] of {settings_file()}"
    return env_source(ctx, name) or next(p for p in ctx.command.params if p.name == name).opts[0]


@dataclass
class RunOptions:
    """The shared options of one command invocation."""

    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model alias, local directory, .gguf file, hub id, openai:URL#MODEL or remote:NAME.", callback=given_model, rich_help_panel=PANEL, autocompletion=complete.text_models)] = None
    temperature: Annotated[Optional[float], typer.Option(help="0-2; 0 = greedy.", rich_help_panel=PANEL)] = None
    top_p: Annotated[Optional[float], typer.Option("--top-p", help="Nucleus sampling mass, (0, 1]; 1 = off.", rich_help_panel=PANEL)] = None
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Keep the K likeliest tokens; 0 = off.", rich_help_panel=PANEL)] = None
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Most tokens to generate per answer.", rich_help_panel=PANEL)] = None
    repetition_penalty: Annotated[Optional[float], typer.Option("--repetition-penalty", help="(0, 3]; above 1 makes repeated tokens less likely, 1 = off.", rich_help_panel=PANEL)] = None
    min_p: Annotated[Optional[float], typer.Option("--min-p", help="[0, 1): drop tokens less likely than this fraction of the likeliest one's probability; 0 = off.", rich_help_panel=PANEL)] = None
    frequency_penalty: Annotated[Optional[float], typer.Option("--frequency-penalty", help="[-2, 2], as OpenAI's: lowers a token's logit by this much for each time it was generated; 0 = off.", rich_help_panel=PANEL)] = None
    presence_penalty: Annotated[Optional[float], typer.Option("--presence-penalty", help="[-2, 2], as OpenAI's: lowers a token's logit by this much once it was generated; 0 = off.", rich_help_panel=PANEL)] = None
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop at this string (repeatable); it is not printed.", rich_help_panel=PANEL)] = None
    seed: Annotated[Optional[int], typer.Option(help="Random seed: the same seed and settings give the same output.", rich_help_panel=PANEL)] = None
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.", rich_help_panel=PANEL, autocompletion=complete.devices)] = "auto"
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.", rich_help_panel=PANEL, autocompletion=complete.dtypes)] = "auto"
    quantize: Annotated[str, typer.Option(help="none, int4 or int8: smaller weights, faster CPU decoding (CPU, float32; see README).", rich_help_panel=PANEL, autocompletion=complete.quantizations)] = "none"
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Let a hub model run its own Python code (only for models you trust).", rich_help_panel=PANEL)] = False
    log: Annotated[Optional[bool], typer.Option("--log/--no-log", help="Keep this answer in the response log (`aigc logs`), or not; default: kept unless `aigc logs off`.", show_default=False, rich_help_panel=PANEL)] = None
    stats: Annotated[bool, typer.Option("--stats", help="Print load time (and a first download or conversion), token counts, time to first token and tokens/s on stderr.", rich_help_panel=PANEL)] = False

    def __post_init__(self) -> None:
        self._mark: tuple[float, int, int] | None = None  # set by `mark`
        self._log_failed = False
        self._drawn = False  # whether `seed` was drawn by `draw_seed`, not given
        self.json_schema: dict | None = None  # a command's --schema, sent with the sampling settings
        self.n: int | None = None  # a command's -n (of run and chat; batch's -O n for chat and template): how many answers, sent with the sampling settings

    def sampling(self) -> dict[str, Any]:
        """Sampling overrides the user set (unset ones are left to the task and template)."""
        if self.stop and not all(self.stop):
            raise BadInputError('--stop "" would stop nowhere; give the text to stop at')
        values = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "max_tokens": self.max_tokens,
            "repetition_penalty": self.repetition_penalty,
            "min_p": self.min_p,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "seed": self.seed,
            "stop": tuple(self.stop) if self.stop else None,
            "json_schema": self.json_schema,
            "n": self.n,
        }
        return {k: v for k, v in values.items() if v is not None}

    def generator(self, name: str, progress=None, load_progress=None, template: str | None = None, model: str | None = None):
        """The generator `name` on the model of -m, else `model` (a session's saved one), else the one
        `template`'s front matter names (`model:`), else the default model; a template's model it
        cannot use is an error naming the template."""
        from .. import templates
        from ..generators.base import get_generator

        chosen = templates.get_template(template) if self.model is None and model is None and template is not None else None
        try:
            return get_generator(
                name,
                model=self.model or model or (chosen and chosen.model_to_run()),
                device=self.device,
                dtype=self.dtype,
                quantize=self.quantize,
                trust_remote_code=self.trust_remote_code,
                progress=progress,
                load_progress=load_progress,
            )
        except (UnknownModelError, ModelKindError) as exc:
            if chosen is None or chosen.model is None:
                raise
            raise type(exc)(f"model: in {chosen.label} ({chosen.path}): {exc}") from None

    def prepare(self, generator, inputs, options: dict) -> None:
        """Check options and inputs (None: none yet, as in the chat REPL), then load the model with a
        spinner, before any output."""
        self.check(generator, inputs, options)
        self.load(generator)

    def draw_seed(self, generator, options: dict) -> None:
        """Without --seed, draw the seed of an answer a local model samples (temperature above 0:
        given, the template's or the task's) and take it as --seed, so that `--json` (`drawn_seed`) and
        the log record it and `--seed` makes the answer again; a greedy answer, or a model that does
        not run here (its server draws), draws none. Call it once the model is loaded."""
        from ..generators.base import seed_to_draw

        if (drawn := seed_to_draw(generator, options, self.sampling())) is not None:
            self.seed, self._drawn = drawn, True

    def drawn_seed(self) -> dict[str, int]:
        """`{"seed": N}` where `draw_seed` drew the seed, for `--json`; else empty."""
        return {"seed": self.seed} if self._drawn and self.seed is not None else {}

    def check(self, generator, inputs, options: dict) -> None:
        """`prepare`'s checks, which need no model (`aigc run --dry-run` makes them too)."""
        from ..engine.loading import check_names
        from ..engine.sampling import SamplingParams
        from ..textio import check_utf8

        check_utf8(inputs, "input")
        for name, value in options.items():
            check_utf8(value, f"--{name.replace('_', '-')} value")
        check_utf8(self.stop, "--stop value")
        SamplingParams(**self.sampling())  # out-of-range values fail here, before the model loads
        check_names(self.device, self.dtype, self.quantize)
        with ui.prints_to_stderr():  # what generator code prints goes to stderr
            opts = generator.validate(options)
            generator.check_sampling(opts, self.sampling())
            generator.warn_greedy(opts, self.sampling())
            if inputs is not None:
                generator.check_inputs(inputs)

    def load(self, generator) -> None:
        """Load the model with a spinner, and start timing the answer."""
        with ui.prints_to_stderr(), ui.stage_status() as stage:  # what the load prints goes to stderr
            generator.load_progress = stage
            generator.engine  # noqa: B018 - loads the model
        generator.load_progress = lambda stage: None
        if dtype := _ran_in(generator).get("dtype"):
            ui.debug(f"{generator.engine.name} runs on {generator.engine.device} in {dtype}")
        self.mark(generator)

    def mark(self, generator) -> None:
        """Start timing (and counting the tokens of) the answer `keep` logs next."""
        stats = generator.engine.stats
        self._mark = (time.monotonic(), stats.prompt_tokens, stats.completion_tokens)

    def keeps_stopped(self, generator, command: str, prompt: Any, options: dict, session: Any = None) -> Callable[[str], None]:
        """A streamed answer's `on_stop`: a reply stopped with Ctrl-C or SIGTERM is logged as far as
        it went, as the chat REPL logs one."""

        def stopped(partial: str) -> None:
            if partial:
                self.keep(generator, command, prompt, partial, options, session=session)

        return stopped

    def logs_answers(self) -> bool:
        """Whether this run logs its answers: --log/--no-log, else `aigc logs on|off` (a bad
        AIGC_LOGS is an `AigcError`)."""
        from .. import logs

        return logs.enabled() if self.log is None else self.log

    def keep(self, generator, command: str, prompt: Any, response: str, options: dict, result: Any = None, session: Any = None, measured: bool = True, sampling: dict | None = None) -> None:
        """Log an answer the command printed (unless logging is off); a log that cannot be written is
        one warning, never the command's failure, and nothing more is logged in this run. `measured`:
        the tokens and time since `mark` are this answer's alone (not so for one line of a batch).
        `sampling`: the settings the answer was made with, where they are not the options' (the REPL's /set)."""
        from .. import logs, templates
        from ..engine.models import logged_model

        measured = measured and self._mark is not None
        try:
            if self._log_failed or not self.logs_answers():
                return
            stats = generator.engine.stats
            since, prompt_tokens, completion_tokens = self._mark if measured else (0.0, 0, 0)
            given = {k: v for k, v in options.items() if v is not None}
            in_effect = _in_effect(generator, given, self.sampling() if sampling is None else {k: v for k, v in sampling.items() if v is not None})
            model, alias = logged_model(generator.engine.name)  # `-m small`: smollm2, with model_alias=small
            if isinstance(given.get("template"), str):  # which revision of it gave the answer
                with contextlib.suppress(AigcError):  # gone since it ran: the answer is logged still
                    given["template_digest"] = templates.digest(given["template"])
            logs.record(
                logs.Entry(
                    command=command,
                    model=model,
                    prompt=prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False),
                    response=response,
                    options={**given, **in_effect, **_ran_in(generator), **{key: value for key, value in weights_of(generator).items() if value}, **({"model_alias": alias} if alias else {}), "aigc_version": __version__},
                    result=result,
                    session=None if session is None else str(session),
                    prompt_tokens=stats.prompt_tokens - prompt_tokens if measured else None,
                    completion_tokens=stats.completion_tokens - completion_tokens if measured else None,
                    duration_ms=round((time.monotonic() - since) * 1000) if measured else None,
                )
            )
        except AigcError as exc:
            self._log_failed = True
            ui.warn(f"{exc} (answers are not logged in this run)")
        self.mark(generator)

    def warn_cut_off(self, *reasons: str | None, template: str | None = None) -> None:
        """Warn where max_tokens cut an answer off (its finish reason is "length"), as summarize does,
        naming where the limit came from: --max-tokens, the defaults of the `template` used, or the task's;
        a note (which -q hides) where the user gave --max-tokens: answers cut there are what was asked for."""
        if "length" in reasons:
            (ui.warn if self.max_tokens is None else ui.info)(f"{'an' if len(reasons) > 1 else 'the'} answer was cut off at {self.token_limit(template)}; raise --max-tokens for the whole answer")

    def token_limit(self, template: str | None = None) -> str:
        """Where the limit that cut answers off came from: --max-tokens, the defaults of the `template` used, or the task's."""
        from .. import templates

        found = templates.get_template(template) if template is not None and self.max_tokens is None else None
        if self.max_tokens is not None:
            return f"--max-tokens {self.max_tokens}"
        if found is not None and "max_tokens" in found.defaults:
            return f"max_tokens {found.defaults['max_tokens']} (from the defaults: of {found.label})"
        return "the default token limit"

    def report(self, generator, task: list[tuple[str, str]] = ()) -> None:
        """`--stats`, with the `task`'s own rows after the engine's (and the dtype its model runs in)."""
        if self.stats:
            ui.print_stats(generator.engine.stats, [*task, *(("dtype", dtype) for dtype in _ran_in(generator).values())])


def _in_effect(generator, options: dict, sampling: dict) -> dict[str, Any]:
    """`sampling` with the settings the answer took from its task's and template's defaults (chat -n's
    temperature 0.7 included), as a log row's options record them: a later aigc that changes a default
    does not make two rows look alike; `sampling` as it is where they cannot be told (a task that
    generates no text, options the generator does not take)."""
    try:
        params = generator.sampling_in_effect(generator.validate(options), sampling) if getattr(generator, "samples", False) else None
    except AigcError:
        params = None
    if params is None:
        return sampling
    return {**{f.name: getattr(params, f.name) for f in fields(params) if getattr(params, f.name) not in (None, ())}, **sampling}


def weights_of(generator) -> dict[str, str | None]:
    """`{"model_digest": ...}`, the start of the loaded weights' sha256 (`digests.model_digest`), as
    --json gives it beside the model's name: None where no record tells it yet (`aigc models info MODEL`
    computes it), so the keys stay the same; empty for a model that does not run here."""
    digest = getattr(generator.engine, "model_digest", False)
    return {} if digest is False else {"model_digest": digest if isinstance(digest, str) else None}


def _ran_in(generator) -> dict[str, str]:
    """`{"dtype": ...}`, the dtype the generator's loaded model runs in, as a log row's options record it; empty for one that does not run here."""
    dtype = getattr(generator.engine, "dtype", None)
    return {"dtype": dtype} if dtype else {}


_COMMON = [
    inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
    for f in fields(RunOptions)
]


SAMPLING = ("temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "min_p", "frequency_penalty", "presence_penalty", "stop", "seed")


def _scoring(param: inspect.Parameter) -> inspect.Parameter:
    """A shared option as a command that scores rather than generates shows it: under "Model"."""
    kind, info = typing.get_args(param.annotation)
    info = copy.copy(info)
    info.rich_help_panel = "Model"
    if param.name == "stats":
        info.help = "Print load time, the tokens read and the time they took on stderr."
    return param.replace(annotation=Annotated[kind, info])


def generation_options(func: Callable | None = None, *, sampling: bool = True, logged: bool = False) -> Callable:
    """Add the shared options to a command; it receives them as one `run: RunOptions` argument.
    `sampling=False` leaves out the sampling options, for commands that score instead of generate;
    `logged=True` adds `--log/--no-log`, for commands that log their answers (`RunOptions.keep`)."""
    if func is None:
        return functools.partial(generation_options, sampling=sampling, logged=logged)
    signature = inspect.signature(func)
    own = [p for p in signature.parameters.values() if p.name != "run"]
    shared = [p if sampling else _scoring(p) for p in _COMMON if (sampling or p.name not in SAMPLING) and (logged or p.name != "log")]

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        values = {p.name: kwargs.pop(p.name) for p in shared}
        return func(*args, run=RunOptions(**values), **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + shared)
    wrapper.__annotations__ = {**{p.name: p.annotation for p in own}, **{p.name: p.annotation for p in shared}}
    return wrapper


def listing_app(name: str, help: str, show: Callable[[bool], None]) -> typer.Typer:
    """A command group that alone (`aigc NAME`, with `--json` too) lists what `show(as_json)` does,
    the same as its `list` command."""
    app = typer.Typer(help=help, invoke_without_command=True)

    @app.callback()
    def listing(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
        if ctx.invoked_subcommand is None:
            show(as_json)
        elif as_json:
            raise BadInputError(misplaced(ctx, name, ["--json"]))

    return app


def misplaced(ctx: typer.Context, group: str, flags: list[str]) -> str:
    """Why a listing group's options given before its subcommand (`aigc models --json list`) are
    refused: they go after the subcommand, where it takes them, or with the listing."""
    command = ctx.invoked_subcommand
    takes = {opt for param in ctx.command.get_command(ctx, command).params for opt in param.opts}
    missing = [flag for flag in flags if flag not in takes]
    if not missing:
        return f"put {' '.join(flags)} after the command: aigc {group} {command} ... {' '.join(flags)}"
    return f"aigc {group} {command} takes no {' or '.join(missing)}; {'they go' if len(missing) > 1 else 'it goes'} with the listing: aigc {group} {' '.join(missing)}"


Schema = Annotated[
    Optional[str],
    typer.Option("--schema", metavar="SCHEMA", help="Answer in JSON that this JSON schema allows: JSON text, a .json file, or fields like 'name, age int, bio: a short bio'.", show_default=False),
]


InputFormat = Annotated[
    Optional[str],
    typer.Option("--format", metavar="jsonl|csv|tsv|txt", help="The format of the rows of -i - (stdin; default jsonl) or of a file whatever its name, such as a pipe: -i <(cut -f1 x.tsv) --format txt.", autocompletion=complete.input_formats, show_default=False),
]


Answers = Annotated[
    Optional[int],
    typer.Option("--n", "-n", metavar="N", help="How many answers (sampled: at 0.7 where neither --temperature nor the template sets one, never at --temperature 0), printed one after another, parted by --- lines (--json: choices); default: the template's n, else 1.", show_default=False),
]


Extract = Annotated[bool, typer.Option("--extract", "-x", help="Print only the answer's first fenced code block (the whole answer where it has none); the log keeps it all.")]
ExtractLast = Annotated[bool, typer.Option("--extract-last", "--xl", help="Print only the answer's last fenced code block (the whole answer where it has none).")]


def check_extract(extract: bool, extract_last: bool, as_json: bool) -> None:
    """-x and --xl print a code block of the text, so not with --json, which prints the whole result."""
    if extract and extract_last:
        raise BadInputError("give -x (the first code block) or --xl (the last), not both")
    if (extract or extract_last) and as_json:
        raise BadInputError(f"give {'-x' if extract else '--xl'} or --json, not both (--json holds the whole answer: take a code block from its text)")


def read_schema_option(value: Optional[str]) -> Optional[dict]:
    """The `--schema` value as a JSON schema the decoder can follow (checked before any model loads)."""
    if value is None:
        return None
    from ..engine.structured import schema_parser
    from ..json_schemas import read_schema

    schema = read_schema(value)
    schema_parser(schema)
    return schema


# --wait and --wait-timeout: what a command that holds a file against a second aigc (chat's conversation, batch's -o) takes.
Wait = Annotated[bool, typer.Option("--wait", help="Where another aigc is using the same conversation (chat) or -o file (batch), wait for it to finish instead of exiting 75 (busy).")]
WaitTimeout = Annotated[
    Optional[float],
    typer.Option("--wait-timeout", metavar="SECONDS", min=0, help="Wait at most SECONDS (implies --wait), then exit 75, busy, as without --wait; default: --wait waits as long as it takes.", show_default=False),
]


def waiting_limit(wait: bool, wait_timeout: Optional[float]) -> tuple[bool, Optional[float]]:
    """(whether to wait, for at most how many seconds) from --wait and --wait-timeout, which implies --wait."""
    return wait or wait_timeout is not None, wait_timeout


Yes = Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking first (aigc asks only when its input is a terminal).")]


def stdin_is_terminal() -> bool:
    """Whether standard input is a terminal: someone there can be asked."""
    return sys.stdin is not None and sys.stdin.isatty()


def _answer() -> str:
    """A line typed at the terminal ('' at its end: Ctrl-D)."""
    return sys.stdin.readline()


def confirm_deletion(question: "str | Callable[[], str]", yes: bool = False) -> None:
    """Ask `question [y/N]` (a function giving it, called only when it asks) on stderr before a deletion too large to undo by mistake (`logs rm --all`,
    `--until`, `--keep`; `models rm`), when standard input is a terminal and -y/--yes is not given. Off a
    terminal (a script, a pipe, cron) it never asks. Anything but y or yes, Ctrl-D or Ctrl-C is a no:
    nothing is deleted and the command exits 1. Deleting things one names one by one (`logs rm ID`,
    `sessions rm NAME`, `templates rm NAME`) asks nothing, as `git branch -d` does not."""
    if yes or not stdin_is_terminal():
        return
    sys.stderr.write(f"{question() if callable(question) else question} [y/N] ")
    sys.stderr.flush()
    try:
        answer = _answer()
    except KeyboardInterrupt:
        answer = ""
    if not answer.endswith("\n"):  # Ctrl-D or Ctrl-C: the next line starts on a line of its own
        sys.stderr.write("\n")
    if answer.strip().lower() not in ("y", "yes"):
        ui.stderr().print("nothing deleted", markup=False)
        raise typer.Exit(1)


def stdin_ready() -> bool:
    """Whether standard input is a pipe from another command (`aigc run x | aigc run y`: read when
    that one finishes, however long it runs first) or holds something now (text or its end), so
    reading it cannot wait on an idle stream no one closes (a socket a parent process holds)."""
    if sys.stdin is None or sys.stdin.isatty():
        return False
    try:
        import select
        import stat

        return stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode) or bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError):  # no file descriptor: an in-memory stream, read at once
        return True


def _piped() -> bool:
    """Whether standard input is open and not a terminal."""
    return sys.stdin is not None and not sys.stdin.isatty()


def stdin_text() -> Optional[str]:
    """Piped standard input, if any (binary or non-UTF-8 input is an error that says so)."""
    from ..textio import STDIN, decode_text

    return decode_text(sys.stdin.buffer.read(), STDIN) if _piped() else None


def source_or_stdin(source: Optional[str], what: str) -> str:
    """`source`, or "-" (stdin) when none is given and stdin is piped; with none given and stdin a
    terminal (or closed), a `BadInputError` asking for `what`."""
    if source is not None:
        return source
    if not _piped():
        raise BadInputError(f"give {what}, or pipe it in")
    return "-"


def not_a_folder(source: Optional[str], task: str) -> None:
    """A `BadInputError` for a folder given a command that reads one document, naming the
    `aigc batch` command that runs the task on each document in it."""
    if source and source != "-" and os.path.isdir(os.path.expanduser(source)):
        from ..textio import DOCUMENT_FILES

        raise BadInputError(f"{source} is a folder; `aigc batch {task} {shlex.quote(source)} -o OUT.jsonl` runs {task} on each document in it ({DOCUMENT_FILES}), one JSON line each")


def template_file(name: Optional[str]) -> Optional[str]:
    """The file a template option names (`./mine.j2`), for `output_target`'s `reads`; None for a template name."""
    from ..templates import is_path

    return name if name and is_path(name) else None


def warn_of_a_word_read_as_a_file(source: str, command: str) -> None:
    """A TEXT|FILE argument that is one bare word (no folder, no extension) naming a file here is
    read as that file: a warning says so, for one who meant the word (`aigc translate hello`)."""
    if source != "-" and not os.path.splitext(source)[1] and os.path.basename(source) == source and os.path.isfile(source):
        import shlex

        ui.warn(f"{source} is read as the file of that name here, not as the text {source!r}; to {command} the text itself, pipe it in: echo {shlex.quote(source)} | aigc {command} ...")


def held_stream(stream, on_stop: Callable[[str], None], show: Callable[[dict], None]) -> dict:
    """The whole result of a streamed answer (an `AnswerStream`) that --json prints, read as a stream
    so that Ctrl-C or SIGTERM midway still gives the answer so far: `show` prints it as a result
    with finish_reason "interrupted" (and no usage: the stream's ends with it), `on_stop` logs it."""

    def stopped(partial: str) -> None:
        show({"text": partial, "finish_reason": "interrupted", "usage": None})
        on_stop(partial)

    ui.stream_result(stream, on_stop=stopped, write=lambda whole: None)
    return stream.result


def emit(text: str, output: Optional[str], encoding: str = "utf-8") -> None:
    """A result on stdout, or written to the `-o` file (atomically, in `encoding`)."""
    from ..writing import write_atomic

    if output:
        ui.info(f"wrote {write_atomic(output, text, encoding=encoding)}")
    else:
        ui.result(text)


def check_vars_used(template, values: dict[str, Any]) -> None:
    """A `--var` the template's text never reads would be dropped (one that declares no variables
    takes any name): an error naming those it reads, as for piped text it has no place for. An
    empty one (a `--var tone="$UNSET"`) in place of a default is taken, with a warning."""
    for declared in template.variables:
        name, default = declared["name"], declared.get("default")
        if isinstance(values.get(name), str) and not values[name].strip() and default not in (None, ""):
            ui.warn(f"--var {name} is empty, so {template.label} gets it empty, not its default {default!r}; leave --var {name} out for the default")
    used = template.names_used | ({"input"} if not template.body.strip() else set())  # a system prompt alone: the input is the message
    unused = sorted(name for name in values if name not in used)
    if not unused:
        return
    if unused == ["input"]:
        template.input_variable()  # its error, as for piped text
    from ..template_environment import environment

    shown = sorted(used - set(environment().globals))  # not jinja's range or a plugin's globals
    reads = f"its text uses {', '.join(shown)}" if shown else "its text uses no variables"
    raise BadInputError(
        f"{template.label} never uses {' or '.join(f'{{{{ {name} }}}}' for name in unused)}, so --var {', '.join(unused)} would be dropped"
        f"{did_you_mean(unused, shown)}; {reads} ({template.path})"
    )


def fabric_var(given: str) -> str | None:
    """fabric's `-v` value, `name:value` (`#name:value` too), as `--var name=value`; else None."""
    key, sep, value = given.partition(":")
    key = key.strip().lstrip("#")
    return f"--var {shlex.quote(f'{key}={value}')}" if sep and key and "=" not in key else None


def _fabric_var(pair: str) -> str:
    """` (did you mean --var name=value?)` for fabric's `name:value`, else ''."""
    spelt = fabric_var(pair)
    return f" (did you mean {spelt}?)" if spelt else ""


def parse_vars(pairs: list[str]) -> dict[str, str]:
    """`--var key=value` options as a dict."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInputError(f"--var takes key=value, got {pair!r}{_fabric_var(pair)}")
        if key in values:
            raise BadInputError(f"--var {key} is given twice; keep one")
        values[key] = value
    return values
