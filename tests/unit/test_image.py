"""`aigc image` end to end on a tiny random Stable Diffusion pipeline built from configs, saved to a
temp dir and loaded through the same code path as a real model (`-m DIR`)."""

import json
import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigc.cli.app import app
from aigc.engine.token_bytes import byte_decoder
from lazy_imports import first_stage, imports_after, two_loads

runner = CliRunner()
PROMPT = "a red fox in the snow"


def build_tiny_pipeline(directory: Path) -> Path:
    """UNet2DConditionModel + AutoencoderKL (scale factor 8, like SD) + CLIPTextModel + a CLIP BPE
    tokenizer made from a small vocab/merges written to disk + DDIM, saved with save_pretrained."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab_dir = directory / "vocab"
    vocab_dir.mkdir(parents=True)
    chars = list(byte_decoder())  # GPT-2/CLIP's printable stand-ins for the 256 byte values
    merges = [("t", "h"), ("th", "e</w>"), ("r", "e"), ("re", "d</w>"), ("f", "o"), ("fo", "x</w>")]
    vocab = ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars), *(a + b for a, b in merges)]
    (vocab_dir / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=77)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False, steps_offset=1
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    target = directory / "pipeline"
    pipeline.save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    pytest.importorskip("diffusers")
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-pipeline"))


def invoke(*args, input=None, env=None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


def make(pipeline, out, *extra):
    result = invoke("image", PROMPT, "-m", pipeline, "--size", "64x64", "--steps", "2", "-o", out, *extra)
    assert result.exit_code == 0, result.output
    return result


def pixels(path) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_writes_a_png_of_the_requested_size_with_its_settings(tiny_pipeline_dir, tmp_path):
    from PIL import Image

    from aigc.generators.image import read_settings

    out = tmp_path / "fox.png"
    result = invoke(
        "image", PROMPT, "-m", tiny_pipeline_dir, "--size", "96x64", "--steps", "2", "--seed", "7",
        "--guidance", "5", "--negative", "blurry", "-o", out,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    assert files(tmp_path) == ["fox.png"]  # no temp file left behind
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (96, 64)
        assert "Seed: 7" in image.text["parameters"]
    settings = read_settings(out)
    assert settings == {
        "prompt": PROMPT,
        "negative": "blurry",
        "model": str(tiny_pipeline_dir.resolve()),
        "seed": 7,
        "steps": 2,
        "guidance": 5.0,
        "width": 96,
        "height": 64,
        "dtype": settings["dtype"],
        "device": "cpu",
    }
    assert settings["dtype"] in ("float32", "bfloat16")


def test_same_seed_same_pixels_and_different_seeds_differ(tiny_pipeline_dir, tmp_path):
    make(tiny_pipeline_dir, tmp_path / "a.png", "--seed", "1")
    make(tiny_pipeline_dir, tmp_path / "b.png", "--seed", "1")
    make(tiny_pipeline_dir, tmp_path / "c.png", "--seed", "2")
    make(tiny_pipeline_dir, tmp_path / "d.png", "--seed", str(1 + 2**32))  # not seed 1's low 32 bits again
    assert pixels(tmp_path / "a.png") == pixels(tmp_path / "b.png")
    assert pixels(tmp_path / "a.png") != pixels(tmp_path / "c.png")
    assert pixels(tmp_path / "a.png") != pixels(tmp_path / "d.png")


def test_from_png_reproduces_identical_pixels(tiny_pipeline_dir, tmp_path):
    from aigc.generators.image import read_settings

    first = tmp_path / "first.png"
    make(tiny_pipeline_dir, first, "--negative", "fog")  # no --seed: a random one, recorded
    again = tmp_path / "again.png"
    result = invoke("image", "--from-png", first, "-o", again)
    assert result.exit_code == 0, result.output
    assert pixels(first) == pixels(again)
    assert read_settings(first) == read_settings(again)
    # options given with --from-png override the recorded ones
    bigger = tmp_path / "bigger.png"
    assert invoke("image", "--from-png", first, "--size", "64x128", "-o", bigger).exit_code == 0
    assert read_settings(bigger)["height"] == 128 and read_settings(bigger)["seed"] == read_settings(first)["seed"]
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(tiny_pipeline_dir, moved)
    make(moved, tmp_path / "from-moved.png", "--seed", "1")
    shutil.rmtree(moved)  # the model it was made with is gone
    result = invoke("image", "--from-png", tmp_path / "from-moved.png", "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "a diffusers directory or .safetensors/.ckpt checkpoint that exists" in result.stderr
    assert f"from-moved.png was made with {moved}, which is not there now" in result.stderr and "-m MODEL runs its settings on another" in result.stderr


def test_n_images_are_numbered_and_each_is_reproducible_alone(tiny_pipeline_dir, tmp_path):
    from aigc.generators.image import read_settings

    result = make(tiny_pipeline_dir, tmp_path / "set.png", "-n", "2", "--seed", "10")
    assert files(tmp_path) == ["set-1.png", "set-2.png"]
    assert result.stdout.split() == [str(tmp_path / "set-1.png"), str(tmp_path / "set-2.png")]
    assert [read_settings(tmp_path / f"set-{i}.png")["seed"] for i in (1, 2)] == [10, 11]
    make(tiny_pipeline_dir, tmp_path / "alone.png", "--seed", "11")
    assert pixels(tmp_path / "alone.png") == pixels(tmp_path / "set-2.png")
    assert pixels(tmp_path / "set-1.png") != pixels(tmp_path / "set-2.png")


def test_json_prints_paths_and_settings(tiny_pipeline_dir, tmp_path):
    result = make(tiny_pipeline_dir, tmp_path / "j.png", "-n", "2", "--seed", "3", "--json")
    data = json.loads(result.stdout)
    assert data["images"] == [{"path": str(tmp_path / "j-1.png"), "seed": 3}, {"path": str(tmp_path / "j-2.png"), "seed": 4}]
    assert data["settings"]["prompt"] == PROMPT and data["settings"]["steps"] == 2
    assert (data["settings"]["width"], data["settings"]["height"]) == (64, 64)
    assert data["seconds_per_step"] > 0


@pytest.mark.parametrize("steps", ["1", "3"])
def test_seconds_per_step_leaves_out_the_prompt_encoding(tiny_pipeline_dir, tmp_path, monkeypatch, steps):
    from types import SimpleNamespace

    from diffusers import StableDiffusionPipeline

    from aigc.generators import image

    clock = [0.0]  # a clock of its own: each reading a second later, the prompt's encoding 100 s

    def tick() -> float:
        clock[0] += 1
        return clock[0]

    def encode(*args, encode=StableDiffusionPipeline.encode_prompt, **kwargs):
        clock[0] += 100
        return encode(*args, **kwargs)

    monkeypatch.setattr(image, "time", SimpleNamespace(perf_counter=tick))
    monkeypatch.setattr(StableDiffusionPipeline, "encode_prompt", encode)
    data = json.loads(make(tiny_pipeline_dir, tmp_path / "t.png", "--json", "--steps", steps).stdout)
    assert data["seconds_per_step"] == 1  # a reading as each step starts and ends: the steps alone


def test_force_overwrites_an_existing_file(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "x.png"
    out.write_bytes(b"old")
    make(tiny_pipeline_dir, out, "--force", "--seed", "1")
    assert pixels(out)


def test_default_size_is_the_models_native_size(tiny_pipeline_dir, tmp_path):
    from PIL import Image

    out = tmp_path / "native.png"
    assert invoke("image", PROMPT, "-m", tiny_pipeline_dir, "--steps", "1", "-o", out).exit_code == 0
    with Image.open(out) as image:
        assert image.size == (64, 64)  # UNet sample size 8 x VAE scale factor 8


def bad(*args, input=None):
    result = invoke(*args, input=input)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.mark.parametrize(
    "args, words",
    [
        (["--size", "65x64"], "multiples of 8"),
        (["--size", "99999x9"], "multiples of 8, e.g. 2048x64"),  # a size it takes
        (["--size", "big"], "WIDTHxHEIGHT"),
        (["--size", ""], "--size must be WIDTHxHEIGHT like 512x512, got ''"),  # `--size "$SIZE"` with SIZE unset: not the default size
        (["--from-png", ""], "--from-image was given an empty file name"),  # not a run without it (--from-png: its old name)
        (["--from-image", ""], "--from-image was given an empty file name"),
        (["-m", ""], 'empty model name (-m ""); leave -m out for the default model'),  # `-m "$MODEL"` with MODEL unset: not the default model
        (["-m", " "], 'blank model name (-m " "); leave -m out for the default model'),
        (["--size", "4096x4096"], "too large"),
        (["--size", "16x16"], "too small"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--steps", "-3"], "--steps must be at least 1"),
        (["--guidance", "-1"], "--guidance must be 0 or more"),
        (["--guidance", "nan"], "--guidance must be 0 or more and finite (0 turns guidance off), got nan"),
        (["--guidance", "inf"], "--guidance must be 0 or more and finite (0 turns guidance off), got inf"),
        (["--guidance", "1e400"], "--guidance must be 0 or more and finite (0 turns guidance off), got inf"),
        (["-n", "0"], "-n must be between 1 and 16"),
        (["-m", "no-such-model"], "unknown image model 'no-such-model'; image aliases: sd-turbo ("),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or mps"),
        (["--steps", "1000"], "scheduler takes at most 999 steps"),  # 1000 train steps, offset 1
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2_and_no_file(tiny_pipeline_dir, tmp_path, args, words):
    model = [] if "-m" in args else ["-m", tiny_pipeline_dir]
    code, lines = bad("image", PROMPT, *model, "--steps", "1", *args, "-o", tmp_path / "out.png")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], lines
    assert files(tmp_path) == []


def test_output_file_errors(tiny_pipeline_dir, tmp_path):
    existing = tmp_path / "taken.png"
    existing.write_bytes(b"keep me")
    cases = [
        (existing, "already exists; pass --force"),
        (tmp_path / "missing-dir" / "out.png", "does not exist"),
        (tmp_path / "out.gif", "-o " + str(tmp_path / "out.gif") + ": images are written as PNG, JPEG or WebP by the file name's suffix; give a name ending in .png, .jpg, .jpeg or .webp"),
        (tmp_path / "out", "give a name ending in .png, .jpg, .jpeg or .webp"),
    ]
    for out, words in cases:
        code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "-o", out)
        assert code == 2 and len(lines) == 1 and words in lines[0], lines
    (tmp_path / "taken-2.png").write_bytes(b"second")
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "-n", "2", "-o", existing)
    assert code == 2 and "taken-2.png already exists" in lines[0]
    assert files(tmp_path) == ["taken-2.png", "taken.png"]  # taken-1.png was not written either
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir)
    assert code == 2 and "give -o FILE.png (or .jpg, .webp)" in lines[0]
    assert existing.read_bytes() == b"keep me"


def test_unwritable_directory(tiny_pipeline_dir, tmp_path, monkeypatch):
    from aigc import writing

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    real_mkstemp = writing.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # root ignores modes
        if Path(dir) == locked:
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(writing.tempfile, "mkstemp", mkstemp)
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "-o", locked / "out.png")
    assert code == 2 and "Permission denied" in lines[0] and files(locked) == []


def test_png_settings_nested_too_deeply_are_no_aigc_settings(tmp_path):
    from PIL import Image, PngImagePlugin

    from aigc.errors import BadInputError
    from aigc.generators.image import METADATA_KEY, read_settings

    info = PngImagePlugin.PngInfo()
    info.add_text(METADATA_KEY, "[" * 100000 + "]" * 100000)
    Image.new("RGB", (8, 8)).save(tmp_path / "deep.png", pnginfo=info)
    with pytest.raises(BadInputError, match="has no aigc settings in it"):
        read_settings(tmp_path / "deep.png")


def test_empty_prompt_and_bad_from_png(tiny_pipeline_dir, tmp_path):
    code, lines = bad("image", "  ", "-m", tiny_pipeline_dir, "-o", tmp_path / "o.png")
    assert code == 2 and "prompt is empty" in lines[0]
    plain = tmp_path / "plain.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(plain)
    code, lines = bad("image", "--from-png", plain, "-o", tmp_path / "o.png")
    assert code == 2 and "no aigc settings" in lines[0]
    code, lines = bad("image", "--from-png", tmp_path / "none.png", "-o", tmp_path / "o.png")
    assert code == 2 and "no such file" in lines[0]
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, lines = bad("image", "--from-png", text, "-o", tmp_path / "o.png")
    assert code == 2 and "not an image" in lines[0]


def test_text_and_image_models_are_not_mixed_up(tiny_pipeline_dir, tiny_model_dir, tmp_path):
    code, lines = bad("image", PROMPT, "-m", tiny_model_dir, "-o", tmp_path / "o.png")
    assert code == 2 and "is a text model" in lines[0]
    code, lines = bad("chat", "hi", "-m", tiny_pipeline_dir)
    assert code == 2 and "is an image model" in lines[0]


def test_without_the_extra_it_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    code, lines = bad("image", PROMPT, "-o", tmp_path / "o.png")
    assert code == 2 and lines == [
        'Error: image generation needs the image extra (diffusers and Pillow): in the aigc checkout run AIGC_EXTRAS="[image]" bash scripts/setup.sh '
        '(or .venv/bin/python -m pip install -c constraints.txt -e ".[image]")'
    ]  # as the README installs it: `pip install "aigc[image]"` would fetch an unrelated PyPI project named aigc


def test_enhance_rewrites_the_prompt_with_the_text_model(tiny_pipeline_dir, tiny_model_dir, tmp_path, monkeypatch):
    from aigc.generators.image import read_settings

    monkeypatch.setenv("AIGC_DEFAULT_MODEL", str(tiny_model_dir))
    out = tmp_path / "e.png"
    result = make(tiny_pipeline_dir, out, "--enhance", "--seed", "4")
    shown = [line for line in result.stderr.splitlines() if line.startswith("enhanced prompt: ")]
    assert len(shown) == 1
    settings = read_settings(out)
    assert settings["original_prompt"] == PROMPT
    assert settings["prompt"] == shown[0][len("enhanced prompt: ") :]
    again, other = tmp_path / "again.png", tmp_path / "other.png"
    assert invoke("image", "--from-png", out, "-o", again).exit_code == 0
    assert read_settings(again) == settings
    assert invoke("image", "a lighthouse", "--from-png", out, "-o", other).exit_code == 0  # a new prompt, not enhanced
    assert "original_prompt" not in read_settings(other) and read_settings(other)["prompt"] == "a lighthouse"


def test_too_many_steps_fail_before_enhance_runs_the_text_model(tiny_pipeline_dir, tmp_path, monkeypatch):
    from aigc.generators.image import ImageGenerator

    def never(*args, **kwargs):
        raise AssertionError("the text model ran")

    monkeypatch.setattr(ImageGenerator, "enhance", never)
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "--enhance", "--steps", "1000", "-o", tmp_path / "out.png")
    assert code == 2 and lines == [f"Error: {tiny_pipeline_dir}'s scheduler takes at most 999 steps; lower --steps"]
    assert files(tmp_path) == []


def test_the_library_api_and_progress(tiny_pipeline_dir):
    import aigc
    from aigc.generators.image import clean_prompt

    calls = []
    generator = aigc.get_generator("image", model=str(tiny_pipeline_dir), progress=lambda d, t, w: calls.append((d, t, w)))
    result = generator("a lighthouse", n=2, seed=5, steps=3, width=64, height=64)
    assert [image.size for image in result["images"]] == [(64, 64), (64, 64)]
    assert result["seeds"] == [5, 6] and result["settings"]["guidance"] == 7.5  # the fallback default
    assert calls[-1] == (6, 6, "denoising") and [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert clean_prompt('Prompt: "a fox, snow, golden hour"\nmore') == "a fox, snow, golden hour"
    assert clean_prompt("A fox in snow. Soft light, pine trees, a long tail", max_words=8) == "A fox in snow. Soft light"
    assert clean_prompt("A cosy cabin in pines, warm light. In this quiet sanctuary", unfinished=True) == "A cosy cabin in pines, warm light."
    assert clean_prompt("a fox, snow, golden hour, 4k") == "a fox, snow, golden hour, 4k"  # phrases are a whole prompt


def test_models_list_and_info_show_image_models(tiny_pipeline_dir):
    listed = {row["alias"]: row for row in json.loads(invoke("models", "list", "--json").stdout)}
    assert listed["sd-turbo"]["kind"] == "image" and listed["smollm2"]["kind"] == "text"
    assert listed["sd-turbo"]["default"] and listed["smollm2"]["default"]  # the default image model, the default text model
    assert (listed["sd-turbo"]["default_for"], listed["smollm2"]["default_for"], listed["qwen2.5-0.5b"]["default_for"]) == ("image", "text", None)
    shown = invoke("models", "list").stdout
    assert re.search(r"^sd-turbo \(default image\) ", shown, re.M) and re.search(r"^smollm2 \(default\) ", shown, re.M)
    assert json.loads(invoke("models", "info", "sd-turbo", "--json").stdout)["default"]
    info = json.loads(invoke("models", "info", tiny_pipeline_dir, "--json").stdout)
    assert info["kind"] == "image" and info["format"] == "diffusers" and info["architecture"] == "StableDiffusionPipeline"
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(info["components"])


def test_registered_image_alias_brings_its_defaults(tiny_pipeline_dir, tmp_path):
    from aigc import hookimpl, plugins
    from aigc.engine.models import ModelSpec
    from aigc.generators.image import read_settings

    class ImageModels:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec("tiny-sd", str(tiny_pipeline_dir), "tiny", kind="image", defaults={"steps": 1, "guidance": 0.0}))

    plugins.get_plugin_manager().register(ImageModels(), name="image-models")
    out = tmp_path / "alias.png"
    assert invoke("image", PROMPT, "-m", "tiny-sd", "-o", out).exit_code == 0
    settings = read_settings(out)
    assert (settings["model"], settings["steps"], settings["guidance"]) == ("tiny-sd", 1, 0.0)
    listed = {row["alias"]: row for row in json.loads(invoke("models", "list", "--json").stdout)}
    assert listed["tiny-sd"]["kind"] == "image" and listed["tiny-sd"]["installed"]


def test_single_file_checkpoint_resolves_and_offline_config_fetch_says_what_to_do(tmp_path):
    pytest.importorskip("diffusers")
    import torch
    from safetensors.torch import save_file

    from aigc.engine.models import resolve

    checkpoint = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, checkpoint)
    ref = resolve(str(checkpoint))
    assert ref.kind == "checkpoint" and ref.image and ref.installed
    code, lines = bad("image", PROMPT, "-m", checkpoint, "-o", tmp_path / "o.png")
    assert code == 1 and "needs its StableDiffusionPipeline configuration" in lines[-1]
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("argv", [["--help"], ["image", "--help"], ["models", "list"]])
def test_help_never_imports_torch_diffusers_or_pillow(argv):
    assert imports_after(argv, ('torch', 'diffusers', 'PIL')) == "False False False"


def test_json_shows_a_path_in_no_utf8_as_replacement_characters(tiny_pipeline_dir, tmp_path):
    result = make(tiny_pipeline_dir, tmp_path / "caf\udce9.png", "--seed", "3", "--json")  # as Python reads the bytes caf\xe9 from argv
    assert json.loads(result.stdout_bytes.decode("utf-8"))["images"] == [{"path": str(tmp_path / "caf\ufffd.png"), "seed": 3}]
    assert (tmp_path / "caf\udce9.png").exists()


def test_a_pipeline_reports_its_first_stage_before_torch_is_imported_and_once(tiny_pipeline_dir, tmp_path):
    import shutil

    from aigc.engine.diffusion import load_image_model
    from aigc.errors import ModelUnavailableError

    fresh = str(shutil.copytree(tiny_pipeline_dir, tmp_path / "pipeline"))  # not loaded by any other test
    assert first_stage("aigc.engine.diffusion.load_image_model", fresh) == f"loading {fresh}: torch imported False"
    assert two_loads(load_image_model, fresh) == ([f"loading {fresh}"], True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}  # a hub model: its lookup comes first
    assert first_stage("aigc.engine.diffusion.load_image_model", "aigc-test/not-cached", env) == "looking for aigc-test/not-cached in the hub cache: torch imported False"
    stages = []
    with pytest.raises(ModelUnavailableError):
        load_image_model("aigc-test/not-cached", device="cpu", progress=lambda stage, *rest: stages.append(stage))
    assert stages == ["looking for aigc-test/not-cached in the hub cache"]  # reported once


def test_the_image_steps_benchmark_imports_the_tiny_pipeline_builder_outside_pytest():
    import subprocess

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}  # a plain `python -m benchmarks.image_steps`: no conftest on sys.path
    done = subprocess.run([sys.executable, "-c", "import benchmarks.image_steps as b; print(b.build_tiny_pipeline.__name__)"], cwd=root, env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "build_tiny_pipeline\n"), done.stderr


def test_batch_and_many_refuse_the_image_task_before_any_work(tiny_pipeline_dir, tmp_path):
    import aigc
    from aigc.batch import read_rows, run_batch
    from aigc.errors import BadInputError

    rows = tmp_path / "prompts.txt"
    rows.write_text("a fox\na cat\n")
    out = tmp_path / "images.jsonl"
    code, lines = bad("batch", "image", "-m", tiny_pipeline_dir, "-i", rows, "-o", out, "-O", "steps=1")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: image is no batch task") and 'aigc image "$p"' in lines[0], lines
    assert files(tmp_path) == ["prompts.txt"]  # no output file
    generator = aigc.get_generator("image", model=str(tiny_pipeline_dir))
    with pytest.raises(BadInputError, match="call the image generator once per prompt"):
        generator.many(["a fox"], steps=1)
    with pytest.raises(BadInputError, match="image is no batch task"):
        run_batch(generator, read_rows(rows, "id", "text"), out, {})
    assert not out.exists() and generator._engine is None  # refused before the model loaded


@pytest.mark.parametrize("guidance, default, whose", [("0", 7.5, "it is 0;"), ("1", 7.5, "it is 1;"), (None, 0.0, "it is 0 (the model's default);")])
def test_negative_without_guidance_above_1_is_a_warning_and_not_recorded_as_applied(tiny_pipeline_dir, tmp_path, monkeypatch, guidance, default, whose):
    from PIL import Image

    from aigc.generators.image import FALLBACK_DEFAULTS, read_settings

    monkeypatch.setitem(FALLBACK_DEFAULTS, "guidance", default)  # 0: a model whose default is 0, as sd-turbo's
    given = [] if guidance is None else ["--guidance", guidance]
    result = make(tiny_pipeline_dir, tmp_path / "neg.png", "--negative", "blurry", "--seed", "3", *given)
    assert f"Warning: --negative changes nothing here: the negative prompt is used only with guidance above 1, and {whose} give --guidance above 1 to use it" in result.stderr.replace("\n", " ")
    make(tiny_pipeline_dir, tmp_path / "plain.png", "--seed", "3", *given)
    assert pixels(tmp_path / "neg.png") == pixels(tmp_path / "plain.png")
    assert read_settings(tmp_path / "neg.png")["negative"] == ""
    with Image.open(tmp_path / "neg.png") as image:
        assert "Negative prompt" not in image.text["parameters"]
    applied = make(tiny_pipeline_dir, tmp_path / "applied.png", "--negative", "blurry", "--seed", "3", "--guidance", "1.5")
    assert "Warning" not in applied.stderr and read_settings(tmp_path / "applied.png")["negative"] == "blurry"


@pytest.fixture(scope="session")
def pndm_pipeline_dir(tiny_pipeline_dir, tmp_path_factory) -> Path:
    """The tiny pipeline with SD 1.x's PNDM scheduler, which runs one step more than asked for."""
    import shutil

    from diffusers import PNDMScheduler

    target = tmp_path_factory.mktemp("pndm") / "pipeline"
    shutil.copytree(tiny_pipeline_dir, target)
    config = json.loads((target / "scheduler" / "scheduler_config.json").read_text())
    shutil.rmtree(target / "scheduler")
    PNDMScheduler.from_config(config, skip_prk_steps=True).save_pretrained(target / "scheduler")
    index = json.loads((target / "model_index.json").read_text())
    (target / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "PNDMScheduler"]}))
    return target


def test_progress_counts_the_steps_the_scheduler_runs(pndm_pipeline_dir, tmp_path):
    import aigc

    calls = []
    generator = aigc.get_generator("image", model=str(pndm_pipeline_dir), progress=lambda d, t, w: calls.append((d, t)))
    result = generator("a lighthouse", n=2, seed=5, steps=2, width=64, height=64)
    assert type(generator.engine.pipeline.scheduler).__name__ == "PNDMScheduler"
    assert calls[-1] == (6, 6) and all(done <= total for done, total in calls) and result["timesteps"] == 3
    assert result["settings"]["steps"] == 2  # as given: what makes the image again
    summary = make(pndm_pipeline_dir, tmp_path / "p.png", "--steps", "2").stderr
    assert "1 image, 2 steps (the scheduler runs 3), " in summary, summary


def test_a_pipeline_component_directory_is_named_with_its_pipeline(tiny_pipeline_dir, tmp_path):
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir / "unet", "-o", tmp_path / "o.png")
    assert code == 2 and lines == [
        f"Error: {tiny_pipeline_dir / 'unet'} is one part of a diffusers pipeline (UNet2DConditionModel), not a whole pipeline; "
        f"pass {tiny_pipeline_dir}, the one with model_index.json"
    ]
    assert files(tmp_path) == []


def test_output_is_required_in_help_and_a_directory_is_named_as_one(tiny_pipeline_dir, tmp_path):
    shown = " ".join(invoke("image", "--help").stdout.split())
    assert "Image to write (required): .png, .jpg/.jpeg or .webp, by its suffix" in shown and "--from-image" in shown and "--quality" in shown
    for given in (tmp_path, f"{tmp_path}/"):
        code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "-o", given)
        assert code == 2 and lines == [f"Error: -o {given} is a directory; give the file to write in it, e.g. -o {tmp_path / 'image.png'}"]
    assert files(tmp_path) == []


@pytest.mark.parametrize("name, kind", [("fox.jpg", "JPEG"), ("fox.JPEG", "JPEG"), ("fox.webp", "WEBP"), ("fox.png", "PNG")])
def test_the_suffix_of_o_picks_the_format_and_the_settings_are_read_back(tiny_pipeline_dir, tmp_path, name, kind):
    from PIL import Image

    from aigc.generators.image import read_settings

    out = tmp_path / name
    make(tiny_pipeline_dir, out, "--seed", "7", "--negative", "blurry", "--guidance", "5", "-n", "2")
    stem, suffix = name.split(".")
    written = [tmp_path / f"{stem}-{i}.{suffix}" for i in (1, 2)]
    assert files(tmp_path) == sorted(p.name for p in written)  # no temp file left behind
    for path, seed in zip(written, (7, 8)):
        with Image.open(path) as image:
            assert image.format == kind and image.size == (64, 64)
        settings = read_settings(path)
        assert (settings["prompt"], settings["negative"], settings["seed"], settings["guidance"]) == (PROMPT, "blurry", seed, 5.0)
    png = tmp_path / "same.png"
    make(tiny_pipeline_dir, png, "--seed", "8", "--negative", "blurry", "--guidance", "5")
    assert read_settings(written[1]) == read_settings(png)  # the same settings, whatever the format
    again = tmp_path / "again.png"
    assert invoke("image", "--from-image", written[1], "-o", again).exit_code == 0  # made again from a JPEG or WebP
    assert pixels(again) == pixels(png)


def test_jpeg_and_webp_keep_a_non_ascii_prompt_and_quality_sets_the_compression(tiny_pipeline_dir, tmp_path):
    from aigc.generators.image import read_settings

    prompt = "un renard roux dans la neige, café ☕"
    for name in ("a.jpg", "a.webp"):
        low, high = tmp_path / f"low-{name}", tmp_path / f"high-{name}"
        for out, quality in ((low, "5"), (high, "100")):
            result = invoke("image", prompt, "-m", tiny_pipeline_dir, "--size", "64x64", "--steps", "2", "--seed", "3", "--quality", quality, "-o", out)
            assert result.exit_code == 0, result.output
        assert read_settings(low)["prompt"] == read_settings(high)["prompt"] == prompt
        assert low.stat().st_size < high.stat().st_size


@pytest.mark.parametrize(
    "out, quality, words",
    [
        ("o.png", "90", "--quality is for JPEG and WebP files; PNG is lossless"),
        ("o.jpg", "0", "--quality must be from 1 to 100, got 0"),
        ("o.webp", "101", "--quality must be from 1 to 100, got 101"),
    ],
)
def test_bad_quality_is_a_one_line_error_before_the_model_loads(tiny_pipeline_dir, tmp_path, monkeypatch, out, quality, words):
    from aigc.engine import diffusion

    def never(*args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(diffusion, "load_image_model", never)
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "--quality", quality, "-o", tmp_path / out)
    assert code == 2 and len(lines) == 1 and words in lines[0], lines
    assert files(tmp_path) == []


def test_a_table_quality_leaves_png_files_alone(tiny_pipeline_dir, tmp_path):
    from aigc import config

    config.settings_file().parent.mkdir(parents=True, exist_ok=True)
    config.settings_file().write_text("[image]\nquality = 90\n")
    result = invoke("image", PROMPT, "-m", tiny_pipeline_dir, "--size", "64x64", "--steps", "1", "-o", tmp_path / "a.png")
    assert result.exit_code == 0 and (tmp_path / "a.png").is_file(), result.output
    assert bad("image", PROMPT, "-m", tiny_pipeline_dir, "--quality", "90", "-o", tmp_path / "b.png")[0] == 2  # given as a flag, still an error


def test_a_prompt_too_long_for_a_jpegs_exif_fails_before_the_images_are_made(tiny_pipeline_dir, tmp_path, monkeypatch):
    from aigc.generators.image import ImageGenerator

    def never(*args, **kwargs):
        raise AssertionError("the images were made")

    monkeypatch.setattr(ImageGenerator, "forward", never)
    code, lines = bad("image", "fox " * 20000, "-m", tiny_pipeline_dir, "--size", "64x64", "--steps", "1", "-o", tmp_path / "long.jpg")
    assert code == 2 and len(lines) == 1 and "do not fit a JPEG's 64 KB of EXIF; write a .png or .webp" in lines[0], lines
    assert files(tmp_path) == []


def test_an_unknown_suffix_fails_before_the_model_loads(tiny_pipeline_dir, tmp_path, monkeypatch):
    from aigc.engine import diffusion

    def never(*args, **kwargs):
        raise AssertionError("the model loaded")

    monkeypatch.setattr(diffusion, "load_image_model", never)
    code, lines = bad("image", PROMPT, "-m", tiny_pipeline_dir, "-o", tmp_path / "fox.tiff")
    assert code == 2 and lines == [f"Error: -o {tmp_path / 'fox.tiff'}: images are written as PNG, JPEG or WebP by the file name's suffix; give a name ending in .png, .jpg, .jpeg or .webp"]
    assert files(tmp_path) == []


def test_saving_no_images_writes_nothing_and_still_checks_the_format(tmp_path):
    from aigc.errors import OptionError
    from aigc.generators.image import save_images, save_pngs

    assert save_pngs([], [], []) == [] and save_images([], [], [], format="webp") == []
    with pytest.raises(OptionError, match="format must be PNG, JPEG or WEBP, got 'gif'"):
        save_images([], [], [], format="gif")
    assert list(tmp_path.iterdir()) == []


def test_the_library_writes_each_format_atomically_and_reads_its_settings(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    from PIL import Image

    from aigc.errors import BadInputError, OptionError
    from aigc.generators.image import read_settings, save_images, save_pngs

    settings = {"prompt": "a fox", "negative": "", "model": "m", "seed": 1, "steps": 2, "guidance": 0.0, "width": 8, "height": 8, "dtype": "float32", "device": "cpu"}
    pictures = [Image.new("RGB", (8, 8), "red"), Image.new("RGBA", (8, 8), "blue")]  # RGBA: JPEG takes RGB only
    written = save_images(pictures, [tmp_path / "a.jpg", tmp_path / "b.webp"], [settings, {**settings, "seed": 2}])
    assert [read_settings(path)["seed"] for path in written] == [1, 2]
    assert read_settings(tmp_path / "a.jpg") == settings
    mixed = save_images(pictures, [tmp_path / "m.png", tmp_path / "m.jpg"], [settings, settings], quality=90)  # quality: the JPEG's
    assert [read_settings(path) for path in mixed] == [settings, settings]
    with pytest.raises(OptionError, match="quality is for JPEG and WebP files; PNG is lossless"):
        save_images(pictures[:1], [tmp_path / "q.png"], [settings], quality=90)
    with pytest.raises(OptionError, match="quality must be from 1 to 100, got 0"):
        save_images(pictures[:1], [tmp_path / "q.webp"], [settings], quality=0)
    with pytest.raises(OptionError, match="format must be PNG, JPEG or WEBP, got 'gif'"):
        save_images(pictures[:1], [tmp_path / "q.png"], [settings], format="gif")
    with pytest.raises(BadInputError, match=r"a\.gif: images are written as PNG, JPEG or WebP"):
        save_images(pictures[:1], [tmp_path / "a.gif"], [settings])
    assert save_pngs(pictures[:1], [tmp_path / "old.jpg"], [settings])  # as before: a PNG, whatever the name
    with Image.open(tmp_path / "old.jpg") as image:
        assert image.format == "PNG"
    real_save = Image.Image.save
    calls = []

    def second_fails(self, *args, **kwargs):  # the second of two files fails: neither is written
        calls.append(kwargs.get("format"))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", second_fails)
    before = files(tmp_path)
    with pytest.raises(OSError):
        save_images(pictures, [tmp_path / "c.webp", tmp_path / "d.jpg"], [settings, settings])
    assert calls == ["WEBP", "JPEG"] and files(tmp_path) == before
    monkeypatch.setattr(Image.Image, "save", real_save)
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(BadInputError, match="has no aigc settings in it"):
        read_settings(plain)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.gif")
    with pytest.raises(BadInputError, match="is a GIF, not a PNG, JPEG or WebP; give a PNG, JPEG or WebP made by aigc image"):
        read_settings(tmp_path / "x.gif")
    with pytest.raises(BadInputError, match="do not fit a JPEG's 64 KB of EXIF; write a .png or .webp"):
        save_images(pictures[:1], [tmp_path / "long.jpg"], [{**settings, "prompt": "fox " * 20000}])
    assert not (tmp_path / "long.jpg").exists()
