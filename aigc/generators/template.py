"""Any template as a task: render it with the given variables and generate one answer (`aigc run`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from .. import template_files, templates
from ..answer_stream import AnswerStream
from ..errors import BadInputError, OptionError, did_you_mean
from ..engine.base import check_fits, usage_of
from ..json_schemas import answer_texts
from .base import Generator, check_stop, check_varied, coerce_value, type_name


def pattern_option_settings(opts: Any) -> dict[str, Any]:
    """Options with `no_variable_replacement` as they take effect, for `aigc batch`'s fingerprint:
    that option only where it is on, so outputs made before it was one keep resuming."""
    settings = {f.name: getattr(opts, f.name) for f in fields(opts) if f.init}
    return settings if opts.no_variable_replacement else {k: v for k, v in settings.items() if k != "no_variable_replacement"}


@dataclass
class TemplateOptions:
    template: str = "chat"
    system: str | None = None
    variables: dict[str, Any] | None = field(default_factory=dict)  # values for the variables the inputs leave out (in aigc batch: for every row)
    no_variable_replacement: bool = False  # a fabric pattern's placeholders but {{input}} sent as written (fabric's --no-variable-replacement)

    def __post_init__(self) -> None:
        if not isinstance(self.variables, (dict, type(None))):
            raise OptionError("variables", f"must be a dict of template variables, got {type_name(self.variables)}")
        self.variables = dict(self.variables or {})
        if self.no_variable_replacement:  # a template that is no pattern fails now, not on every input
            templates.literal_values(templates.get_template(self.template), self.variables)

    settings = pattern_option_settings


def coerce(template: template_files.Template, name: str, value: Any) -> Any:
    """A `--var` string as the type of the variable's declared default (int, float, bool, or a list:
    comma-separated, as `--var tags=a,b`)."""
    declared = next((v for v in template.variables if v["name"] == name), None)
    default = declared.get("default") if declared else None
    if not isinstance(value, str) or default is None or isinstance(default, str):
        return value
    return coerce_value(f"template {template.name!r} variable {name}", value, list[str] if isinstance(default, list) else type(default))


def checked_values(template: template_files.Template, values: dict[str, Any]) -> dict[str, Any]:
    """`values` for `template`'s variables, each as the type of its declared default; a name the
    template does not declare is an error (when it declares any)."""
    unknown = sorted(set(values) - template.declared) if template.variables else []
    if unknown:
        raise BadInputError(f"template {template.name!r} has no variable {', '.join(unknown)}{did_you_mean(unknown, template.declared)}; its variables: {', '.join(sorted(template.declared))}")
    return {k: coerce(template, k, v) for k, v in values.items()}


def render_inputs(inputs: dict[str, Any] | str, opts: TemplateOptions) -> templates.Rendered:
    """The template of `opts` rendered with `inputs` (a text fills its input variable) over its
    `variables`: what the template generator sends, no model needed (`aigc run --dry-run`)."""
    template = templates.get_template(opts.template)
    if isinstance(inputs, str):  # the template's input variable, as chat fills it with the message
        inputs = {template.input_variable(opts.variables): inputs}
    elif isinstance(inputs, Columns):
        inputs = inputs.variables(template, {v["name"] for v in template.variables}, opts.variables)
    values = {**opts.variables, **inputs}
    template.check_filled(values)
    literal = templates.literal_values(template, values) if opts.no_variable_replacement else {}
    return templates.render(template, checked_values(template, {**values, **literal}), system=opts.system)


class Columns(dict):
    """A batch row's columns, not yet sorted into template variables (`TemplateGenerator.batch_input`)."""

    def __init__(self, fields: dict[str, Any], field: str):
        super().__init__(fields)
        self.field = field

    def variables(self, template: template_files.Template, declared: set[str], given: dict[str, Any]) -> dict[str, Any]:
        """The template's variables: the columns it declares (every column if it declares none) over
        the values `given` for every row, and the text column in its input variable if none fills it."""
        if not declared:  # every column is a variable, and the text column also fills {{ input }}
            chosen = {**given, **self}
            if self.field in self and "input" in template.names_used:
                chosen.setdefault("input", self[self.field])
            return chosen
        chosen = {**given, **{k: v for k, v in self.items() if k in declared}}
        if self.field in self and self.field not in declared:
            chosen.setdefault(template.input_variable(chosen), self[self.field])
        return chosen


class TemplateGenerator(Generator):
    """Renders a template (front matter, variables, system prompt) and answers it once.

    Inputs are the template's variables as a dict, or a text, which fills its input variable (as
    chat's message and `aigc run`'s piped text do). Sampling: these defaults < the template's
    front-matter `defaults` < the caller's settings.
    """

    name = "template"
    description = "Render any template and generate one answer with it"
    Options = TemplateOptions
    sampling_defaults = {"temperature": 0.7, "top_p": 0.9, "max_tokens": 512, "repetition_penalty": 1.1}

    def batch_input(self, fields: dict[str, Any], field: str) -> dict[str, Any]:
        """The columns the template declares are its variables (all of them if it declares none), so
        an id or notes column is left out; the column `field` fills the template's input variable
        (`input`, or its one required variable) when no column of that name does."""
        return Columns(fields, field=field)

    def check_sampling(self, opts: TemplateOptions, sampling: dict[str, Any] | None) -> None:
        params = self.sampling(sampling, templates.get_template(opts.template).defaults)
        check_varied(params.n, params, "answers")

    def check_inputs(self, inputs: dict[str, Any] | str) -> None:
        if not isinstance(inputs, (dict, str)):
            raise BadInputError(f"the template generator takes a dict of the template's variables, as {{\"input\": \"text\"}}, or the text for its input variable; got {type_name(inputs)}")

    def check_batch_input(self, inputs: dict[str, Any], opts: TemplateOptions) -> None:
        """The row's columns must fill the template: rendered once, no model needed."""
        self.preprocess(inputs, opts)

    def preprocess(self, inputs: dict[str, Any] | str, opts: TemplateOptions):
        return render_inputs(inputs, opts)

    def stream(self, inputs: dict[str, Any] | str, sampling: dict[str, Any] | None = None, *, stop: Any = None, **options: Any) -> AnswerStream:
        """The answer as text pieces while it is generated (one answer, not held to a schema), then
        its whole result, as chat's; bad inputs or settings fail at the call; where the model is not
        loaded yet, it loads (and the prompt is checked against its context) at the first piece. `stop`, as chat's."""
        check_stop(stop)
        self.check_settings(sampling)
        opts = self.validate(options)
        self.warn_greedy(opts, sampling)
        self.check_inputs(inputs)
        rendered = self.preprocess(inputs, opts)
        params = self.sampling(sampling, rendered.defaults)
        if params.n > 1 or params.json_schema is not None:
            raise BadInputError("a streamed answer is one answer, not held to a schema; call the generator itself for those")

        def start() -> tuple[Any, Any, Any]:
            check_fits(self.engine, self.engine.count_tokens(rendered.messages), params.max_tokens)
            return self.engine, rendered.messages, params

        def finish(completion: Any) -> dict[str, Any]:
            return self.postprocess((rendered.messages, [completion], params), opts)

        if self._engine is None:
            return AnswerStream.of_engine_later(start, finish).stopping_on(stop)
        return AnswerStream.of_engine(*start(), finish).stopping_on(stop)

    def forward(self, rendered, opts: TemplateOptions, sampling: dict[str, Any]):
        params = self.sampling(sampling, rendered.defaults)
        check_fits(self.engine, self.engine.count_tokens(rendered.messages), params.max_tokens)
        return rendered.messages, self.engine.generate([rendered.messages], params)[0], params

    def postprocess(self, raw, opts: TemplateOptions) -> dict[str, Any]:
        """`text` (and each of `choices`); with a JSON schema, the JSON as one line, and `data` its value."""
        messages, completions, params = raw
        texts, extra = answer_texts(completions, params, self.engine)
        return {"template": opts.template, "text": texts[0], "choices": texts, "messages": messages, "usage": usage_of(completions), **extra}
