"""Shared fixtures: an isolated user directory, and a tiny random model built from a config."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # as the CLI sets it, for in-process CLI tests that load a model first

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Bees make honey on city rooftops; über café naïve déjà vu 東京 🐝.",
    "Summaries are short. Headlines are shorter. Chat is a conversation.",
] * 20


def build_tiny_model(directory: Path) -> Path:
    """A 2-layer Llama with a small byte-level BPE tokenizer and a chat template, saved to `directory`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """With its weights' digest recorded beside them, as a converted model has it (runs only read it:
    test_digests copies it without the record for a directory of yours)."""
    from aigc.engine.digests import record_converted

    directory = build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    record_converted(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_engine(tiny_model_dir):
    from aigc.engine.loading import load_model

    return load_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(autouse=True)
def user_dirs(tmp_path, monkeypatch):
    """Point config, data and cache at a temp dir, but keep the converted models shared (the cache's
    `models`, from AIGC_CACHE_DIR or the default, linked in): what classify and embed keep there is
    each test's own. Installed entry-point plugins stay out (tests that want them unset AIGC_LOAD_PLUGINS), and so do AIGC_PLUGINS's modules."""
    from aigc import config

    models = config.models_dir()
    models.mkdir(parents=True, exist_ok=True)
    cache = tmp_path.with_name(tmp_path.name + "-cache")  # beside tmp_path, which tests list
    cache.mkdir()
    (cache / "models").symlink_to(models, target_is_directory=True)
    monkeypatch.setenv("AIGC_CACHE_DIR", str(cache))
    monkeypatch.setenv("AIGC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("AIGC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIGC_LOAD_PLUGINS", "")
    monkeypatch.delenv("AIGC_PLUGINS", raising=False)
    monkeypatch.delenv("AIGC_TEMPLATES_PATH", raising=False)
    monkeypatch.delenv("AIGC_DEFAULT_MODEL", raising=False)
    monkeypatch.delenv("AIGC_LOGS", raising=False)
    monkeypatch.delenv("AIGC_THREADS", raising=False)
    monkeypatch.setattr(config, "given_threads", None)  # an `aigc --threads N` run in the test's process sets it
    from aigc import plugins

    plugins.reset()
    yield
    plugins.reset()
