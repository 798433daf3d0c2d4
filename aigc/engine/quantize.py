"""int8 weights for CPU decoding: dynamic quantization of every Linear layer, per output channel.

Decoding a small model on a CPU is bound by reading the weights, so int8 weights (a quarter of
float32) decode faster: 91 vs 29 tok/s for the 135M default on this project's 2-core dev machine.
Per-channel scales keep the output sensible where per-tensor ones (and skipping the tied lm_head)
did not or were slower.
"""

from __future__ import annotations


def quantize_int8(model):
    """A copy of `model` whose Linear layers hold int8 weights and quantize activations on the fly."""
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    spec = {name: per_channel_dynamic_qconfig for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model, spec, dtype=torch.qint8)
