"""Helpers for batched scoring: grouping prompts by length, and pooling hidden states into embeddings."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

EMBED_LAYERS = (1.0, 0.8, 0.6, 0.4)  # depths (fractions of the layer stack) an embedding pools


def length_batches(lengths: list[int], budget: int, alone: int | None = None, rows: int | None = None) -> list[list[int]]:
    """Indices grouped so that each group's rows x longest row stays within `budget` tokens, and
    its rows within `rows` (where given).

    Sorting by length first keeps padding small; a row longer than the budget, or than `alone`,
    gets a group alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        full = rows is not None and len(current) >= rows
        if current and (full or (len(current) + 1) * lengths[index] > budget or (alone is not None and lengths[index] > alone)):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def pool_hidden_states(hidden_states, mask) -> "torch.Tensor":
    """`[rows, 2 x layers x width]`: the mean over real tokens and the last token's state, at each of
    the `EMBED_LAYERS` depths. Rows are left-padded, so the last token is the last column."""
    import torch

    count = len(hidden_states) - 1  # hidden_states[0] is the embedding layer's output
    layers = [hidden_states[max(1, round(count * depth))].float() for depth in EMBED_LAYERS]
    weights = (mask / mask.sum(-1, keepdim=True))[..., None].to(layers[0].dtype)
    means = [(layer * weights).sum(1) for layer in layers]
    lasts = [layer[:, -1] for layer in layers]
    return torch.cat(means + lasts, dim=-1)
