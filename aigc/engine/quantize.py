"""Smaller weights for CPU decoding, which is bound by reading them: int8 or int4 Linear layers.

- int8: dynamic quantization of every Linear layer, per output channel; activations are rounded to
  8 bits on the fly too. Per-channel scales keep the output sensible where per-tensor ones (and
  skipping the tied lm_head) did not or were slower.
- int4: weight-only, in groups of 32 weights with a scale and a minimum each (GGUF's Q4_1 layout),
  multiplied by torch's int4 CPU kernel in bfloat16; the output layer int8 in groups of 32 (Q8_0).
  A model converted from such a GGUF (the embedded default) gets its GGUF weights back exactly
  where they are rebuilt in float32 (prefill), and to within 5% of a step in the kernel's bfloat16.
"""

from __future__ import annotations

import warnings

import torch

GROUP = 32  # weights per int4 scale and minimum
OUTPUT_MULTIPLE = 16  # the int4 kernel takes layers whose outputs come in multiples of 16
DEQUANTIZE_ROWS = 128  # from this many rows (prompt tokens times prompts) on, float32 weights rebuilt for the call beat the int4 kernel


def quantize_int8(model):
    """A copy of `model` whose Linear layers hold int8 weights and quantize activations on the fly."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def _int4_kernel_operands(codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> tuple:
    """torch's int4 CPU kernel's packed weight and bfloat16 scales for codes 0..15 in groups of 32
    (the kernel computes (code - 8) * scale + zero)."""
    rows, cols = codes.shape[0], codes.shape[1] * GROUP
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.reshape(rows, cols).to(torch.int32), 1)
    return packed, torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)


def _groups(linear: torch.nn.Linear) -> torch.Tensor:
    return linear.weight.detach().float().reshape(linear.out_features, -1, GROUP)


def _divisor(scale: torch.Tensor) -> torch.Tensor:
    """`scale` where a group's weights are all equal (scale 0) divides by 1: their codes are 0."""
    return torch.where(scale == 0, torch.ones_like(scale), scale)[..., None]


class GroupedLinear(torch.nn.Module):
    """A Linear layer whose weight is integer codes times a scale (plus a minimum) per group of 32
    inputs. Forward passes of few rows (decoding) go through torch's int4 kernel, which takes the
    inputs, scales and minimums in bfloat16; passes of many rows (prompt tokens times prompts: a
    prefill) through the float32 weight, rebuilt exactly for the call.

    The codes are kept a second time, one row per position in a group, so that rebuilding the weight
    broadcasts the scales along rows (3x faster than along columns); the kernel's packing is its own."""

    def __init__(self, linear: torch.nn.Linear, by_position: torch.Tensor, scale: torch.Tensor, low: torch.Tensor | None, kernel: list[tuple]):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias
        self.kernel = kernel
        self.register_buffer("by_position", by_position.contiguous(), persistent=False)
        self.register_buffer("scale", scale.reshape(1, -1), persistent=False)
        self.register_buffer("low", None if low is None else low.reshape(1, -1), persistent=False)

    def codes(self) -> torch.Tensor:
        return self.by_position

    def dequantized(self) -> torch.Tensor:
        """The float32 weight the codes stand for."""
        weight = torch.empty(GROUP, self.scale.shape[1])
        torch.mul(self.codes(), self.scale, out=weight)
        if self.low is not None:
            weight.add_(self.low)
        return weight.t().reshape(self.out_features, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] >= DEQUANTIZE_ROWS:
            y = torch.nn.functional.linear(flat, self.dequantized().to(x.dtype))
        else:
            half = flat.to(torch.bfloat16)
            (packed, scales), *more = self.kernel
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(half, packed, GROUP, scales).to(x.dtype)
            for packed, scales in more:
                y += torch.ops.aten._weight_int4pack_mm_for_cpu(half, packed, GROUP, scales).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


class Int4Linear(GroupedLinear):
    """Codes 0..15 with a scale and a minimum per group (GGUF's Q4_1): weight = code * scale + min."""

    def __init__(self, linear: torch.nn.Linear):
        groups = _groups(linear)
        low, high = groups.amin(-1), groups.amax(-1)
        scale = (high - low) / 15
        codes = torch.round((groups - low[..., None]) / _divisor(scale)).clamp_(0, 15).to(torch.uint8)
        by_position = codes.view(-1, GROUP).t()
        nibbles = by_position[: GROUP // 2] | (by_position[GROUP // 2 :] << 4)
        super().__init__(linear, nibbles, scale, low, [_int4_kernel_operands(codes, scale, low + 8 * scale)])

    def codes(self) -> torch.Tensor:
        return torch.cat([self.by_position & 15, self.by_position >> 4])


class Int8Linear(GroupedLinear):
    """Codes -127..127 with a scale per group (GGUF's Q8_0): weight = code * scale. The kernel takes
    4-bit codes, so it runs twice: on the high and the low four bits."""

    def __init__(self, linear: torch.nn.Linear):
        groups = _groups(linear)
        scale = groups.abs().amax(-1) / 127
        codes = torch.round(groups / _divisor(scale)).clamp_(-127, 127).to(torch.int32)
        high = torch.div(codes, 16, rounding_mode="floor")  # -8..7; codes = 16 * high + low
        kernel = [
            _int4_kernel_operands(high + 8, 16 * scale, torch.zeros_like(scale)),
            _int4_kernel_operands(codes - 16 * high, scale, 8 * scale),
        ]
        super().__init__(linear, codes.to(torch.int8).view(-1, GROUP).t(), scale, None, kernel)


def check_int4_kernel() -> None:
    """A `BadInputError` when this torch has no int4 CPU kernel (it came in torch 2.6)."""
    if not hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu"):
        from ..errors import BadInputError, option

        raise BadInputError(f"{option('quantize', 'int4')} needs torch 2.6 or newer (this is {torch.__version__}); use {option('quantize', 'int8')} or none")


def quantize_int4(model):
    """`model` with its Linear layers holding int4 weights, and its output layer int8 ones (its
    logits pick every token); layers of shapes the kernel does not take stay as they are.
    `load_model` checks first that torch has the kernel (`check_int4_kernel`)."""
    output = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and child.in_features % GROUP == 0 and child.out_features % OUTPUT_MULTIPLE == 0:
                setattr(parent, name, (Int8Linear if child is output else Int4Linear)(child))
    return model
