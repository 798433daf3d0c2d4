"""aigc's types, as a type checker reads them: `get_generator`'s overloads give each built-in task's
class, `embed`'s a vector for a text and vectors for texts, `many`/`imany` take any iterable; and
examples/typed_library.py, the README's calls annotated (it passes `mypy --strict`), runs."""

import ast
import collections.abc
import os
import subprocess
import sys
import typing
from pathlib import Path

import aigc
from aigc.generators import base
from aigc.generators.base import Generator, get_generator, registered_generators

ROOT = Path(__file__).resolve().parents[2]


def hints(function) -> dict:
    """`function`'s annotations resolved, the generator classes (imported there for type checkers only) by name."""
    classes = {cls.__name__: cls for _, cls in registered_generators().values()}
    return typing.get_type_hints(function, globalns=vars(sys.modules[function.__module__]), localns=classes)


def test_get_generator_is_typed_with_each_built_in_tasks_class_and_generator_for_any_other_name():
    overloads = typing.get_overloads(get_generator)
    typed = {}
    for overload in overloads[:-1]:
        found = hints(overload)
        (name,) = typing.get_args(found["name"])
        typed[name] = found["return"]
    builtins = {name: cls for name, (plugin, cls) in registered_generators().items() if plugin.startswith("aigc.")}
    assert typed == builtins  # every built-in task, each to the class get_generator makes
    for name, cls in typed.items():
        assert type(get_generator(name, model="echo") if name != "image" else get_generator(name)) is cls
    assert hints(overloads[-1]) == {"name": str, "kwargs": typing.Any, "return": Generator}  # a plugin's task


def test_embed_is_typed_one_vector_for_a_text_and_vectors_for_any_iterable_of_texts():
    one, many = (hints(overload) for overload in typing.get_overloads(aigc.embed))
    assert (one["texts"], one["return"]) == (str, list[float])
    assert (many["texts"], many["return"]) == (typing.Iterable[str], list[list[float]])
    vectors = aigc.embed(("a cat", "a kitten"), "echo")  # a tuple, as a list is taken
    assert vectors == aigc.embed(["a cat", "a kitten"], "echo") == aigc.embed((t for t in ("a cat", "a kitten")), "echo")
    assert vectors[0] == aigc.embed("a cat", "echo") and isinstance(vectors[0][0], float)


def test_many_and_imany_are_typed_dicts_unless_errors_are_skipped_and_take_any_iterable():
    for method in (Generator.many, Generator.imany):
        stop, skip = (hints(overload) for overload in typing.get_overloads(method))
        assert stop["inputs"] == skip["inputs"] == typing.Iterable[typing.Any]
        assert stop["on_error"] == typing.Literal["stop"]
        assert typing.get_args(stop["return"])[0] == dict[str, typing.Any]
        assert typing.get_args(skip["return"])[0] == dict[str, typing.Any] | Exception
    headline = get_generator("headline", model="echo")
    assert [r["headlines"] for r in headline.many(({"topic": t} for t in ("bees", "solar")), n=1)] == [["bees"], ["solar"]]
    assert [r["headlines"] for r in headline.imany(({"topic": "rail"},), n=1)] == [["rail"]]
    classify = get_generator("classify", model="echo")
    assert [r["label"] for r in classify.classify_many(("a goal", "a chip"), labels="goal,chip")] == ["goal", "chip"]
    assert hints(classify.classify_many)["texts"] == typing.Iterable[str]


def test_embed_many_is_typed_without_nones_unless_on_error_is_given():
    from aigc.generators.embed import EmbedGenerator

    plain, told = (hints(overload) for overload in typing.get_overloads(EmbedGenerator.embed_many))
    assert plain["return"] == list[list[float]] and told["return"] == list[list[float] | None]
    assert plain["on_error"] is type(None) and typing.get_origin(told["on_error"]) is collections.abc.Callable


def exported(module: str, name: str) -> bool:
    """Whether `module` exports `name` as `mypy --strict` counts it (no implicit re-export): defined
    there, listed in its `__all__`, or imported as `import x as name` / `from y import x as name`."""
    path = ROOT / Path(*module.split(".")).with_suffix(".py")
    tree = ast.parse((path if path.exists() else path.with_suffix("") / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and name in ast.literal_eval(node.value):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any(alias.asname == name and alias.name.split(".")[-1] == name for alias in node.names):
            return True
    return False


def test_what_the_typed_example_imports_from_aigc_is_exported_to_type_checkers():
    tree = ast.parse((ROOT / "examples" / "typed_library.py").read_text(encoding="utf-8"))
    imports = [(node.module, alias.name) for node in tree.body if isinstance(node, ast.ImportFrom) and node.module.startswith("aigc") for alias in node.names]
    assert ("aigc.batch", "read_rows") in imports  # the README's `from aigc.batch import read_rows, run_batch`
    assert [pair for pair in imports if not exported(*pair)] == []


def test_the_typed_example_runs_on_the_model_echo(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "typed_library.py"), "echo"], capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert done.returncode == 0, done.stderr
    sections = {title: body.strip().splitlines() for title, _, body in (block.partition("\n") for block in done.stdout.split("== ")[1:])}
    assert sections["chat"][0] == "What is the capital of France?"  # echo answers with the prompt
    assert sections["embed"][1] == "2 3" and sections["asyncio"][-2] == "['Hi', 'Bye']"
