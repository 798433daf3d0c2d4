"""int4 weights: what the grouped layers keep of a weight, their two ways of multiplying, and a
whole tiny model made int4."""

import pytest
import torch

from aigc.engine import quantize
from aigc.engine.quantize import GROUP, Int4Linear, Int8Linear
from aigc.engine.sampling import SamplingParams


def _linear(weight: torch.Tensor, bias: bool = False) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias)
    layer.weight.data = weight
    return layer


def _q4_1_weight(rows: int = 48, cols: int = 96) -> torch.Tensor:
    """A weight as a Q4_1 GGUF holds it: codes 0..15 (each group using both ends) times a float16
    scale, plus a float16 minimum, per group of 32."""
    codes = torch.randint(0, 16, (rows, cols // GROUP, GROUP))
    codes[..., 0], codes[..., 1] = 0, 15
    scale = (torch.rand(rows, cols // GROUP, 1) * 0.01 + 0.001).half().float()
    low = (-torch.rand(rows, cols // GROUP, 1) * 0.05).half().float()
    return (codes * scale + low).view(rows, cols)


def test_int4_gives_back_q4_1_weights():
    weight = _q4_1_weight()
    torch.testing.assert_close(Int4Linear(_linear(weight)).dequantized(), weight, rtol=0, atol=1e-7)


def test_int8_gives_back_q8_0_weights():
    codes = torch.randint(-127, 128, (48, 64, GROUP))  # Q8_0: scale = largest magnitude / 127
    codes[..., 0] = 127
    scale = (torch.rand(48, 64, 1) * 0.001).half().float()
    weight = (codes * scale).view(48, 64 * GROUP)
    torch.testing.assert_close(Int8Linear(_linear(weight)).dequantized(), weight, rtol=0, atol=1e-7)


def test_int4_keeps_any_weight_within_half_a_step():
    weight = torch.randn(32, 64)
    groups = weight.view(32, -1, GROUP)
    step = (groups.amax(-1) - groups.amin(-1)) / 15
    error = (Int4Linear(_linear(weight)).dequantized() - weight).view(32, -1, GROUP).abs().amax(-1)
    assert bool((error <= step / 2 + 1e-6).all())


@pytest.mark.parametrize("layer", [Int4Linear, Int8Linear])
@pytest.mark.parametrize("rows", [1, 5, quantize.DEQUANTIZE_ROWS + 3])
def test_both_ways_of_multiplying_match_the_weight_kept(layer, rows):
    quantized = layer(_linear(torch.randn(48, 96), bias=True))
    x = torch.randn(rows, 96)
    with torch.no_grad():
        expected = torch.nn.functional.linear(x, quantized.dequantized(), quantized.bias)
        got = quantized(x.view(1, rows, 96))
    assert got.shape == (1, rows, 48) and got.dtype == torch.float32
    # Few rows go through the bfloat16 kernel: bfloat16 rounding of the inputs, nothing more.
    tolerance = 0 if rows >= quantize.DEQUANTIZE_ROWS else 0.02
    assert float((got[0] - expected).abs().max()) <= tolerance * float(expected.abs().max()) + 1e-5


def test_an_int4_model_keeps_its_logits_and_embeddings(tiny_model_dir, tiny_engine):
    from aigc.engine.loading import load_model

    engine = load_model(str(tiny_model_dir), device="cpu", quantize="int4")
    model = engine.model
    assert engine is not tiny_engine
    assert isinstance(model.model.layers[0].mlp.down_proj, Int4Linear) and isinstance(model.lm_head, Int8Linear)
    torch.testing.assert_close(model.get_input_embeddings().weight, tiny_engine.model.get_input_embeddings().weight)
    ids = torch.tensor([tiny_engine.encode("Paris is the capital of France")])
    with torch.inference_mode():
        reference = tiny_engine.model(ids).logits[0, -1]
        approx = model(ids).logits[0, -1]
    assert torch.nn.functional.cosine_similarity(reference, approx, dim=0) > 0.99
    assert engine.generate(["Bees"], SamplingParams(temperature=0, max_tokens=6))[0][0].completion_tokens > 0


@pytest.mark.parametrize("value", [0.03, -0.2, 0.0])
def test_a_group_of_equal_weights_keeps_its_value_both_ways(value):
    weight = torch.randn(16, 64)
    weight[:, :GROUP] = value
    quantized = Int4Linear(_linear(weight))
    x = torch.zeros(1, 64)
    x[0, :GROUP] = 1.0
    many = x.repeat(quantize.DEQUANTIZE_ROWS, 1)
    with torch.no_grad():
        assert torch.allclose(quantized(x)[0], torch.full((16,), GROUP * value), atol=0.02)
        assert torch.allclose(quantized(many)[0], torch.full((16,), GROUP * value), atol=1e-5)


def test_layers_of_shapes_the_kernel_does_not_take_stay_float32():
    model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.Linear(48, 64), torch.nn.Linear(64, 40))
    model.get_output_embeddings = lambda: None
    quantize.quantize_int4(model)
    assert isinstance(model[0], Int4Linear) and type(model[1]) is torch.nn.Linear and type(model[2]) is torch.nn.Linear


def test_a_torch_without_the_int4_kernel_is_told_which_it_needs(monkeypatch):
    from types import SimpleNamespace

    from aigc.errors import BadInputError

    monkeypatch.setattr(quantize, "torch", SimpleNamespace(ops=SimpleNamespace(aten=SimpleNamespace()), __version__="2.5.1"))
    with pytest.raises(BadInputError, match="needs torch 2.6 or newer .this is 2.5.1."):
        quantize.check_int4_kernel()
