"""Numbers on embeddings: a linear probe (multinomial logistic regression fitted with L-BFGS),
similarity search, and saving fitted state.

It can start from fixed per-class scores (`offset`, e.g. the model's label log-likelihoods) and
learn only a correction, which is what makes a probe useful with few examples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Matrix = list[list[float]]


@dataclass
class LinearProbe:
    """`predict(X, offset) = offset + standardize(X) @ weight + bias`, as per-class logits."""

    mean: "torch.Tensor"
    std: "torch.Tensor"
    weight: "torch.Tensor"
    bias: "torch.Tensor"

    @classmethod
    def fit(cls, features: Matrix, targets: list[int], classes: int, l2: float, offset: Matrix | None = None) -> "LinearProbe":
        import torch

        x = torch.tensor(features, dtype=torch.float32)
        y = torch.tensor(targets)
        mean, std = x.mean(0), x.std(0, unbiased=False) + 1e-4
        z = (x - mean) / std
        base = torch.zeros(len(y), classes) if offset is None else torch.tensor(offset, dtype=torch.float32)
        weight = torch.zeros(z.shape[1], classes, requires_grad=True)
        bias = torch.zeros(classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=100, line_search_fn="strong_wolfe")

        def loss():
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(base + z @ weight + bias, y) + l2 * (weight**2).sum()
            value.backward()
            return value

        with torch.enable_grad():
            optimizer.step(loss)
        return cls(mean, std, weight.detach(), bias.detach())

    def predict(self, features: Matrix, offset: Matrix | None = None) -> Matrix:
        import torch

        z = (torch.tensor(features, dtype=torch.float32) - self.mean) / self.std
        logits = z @ self.weight + self.bias
        if offset is not None:
            logits = logits + torch.tensor(offset, dtype=torch.float32)
        return logits.tolist()

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std, "weight": self.weight, "bias": self.bias}


def matrix(rows: Matrix) -> "torch.Tensor":
    """Embeddings as one float32 tensor, `[rows, width]`."""
    import torch

    return torch.tensor(rows, dtype=torch.float32)


def similarities(embeddings: "torch.Tensor", query: list[float]) -> list[float]:
    """Cosine similarity of `query` to each row, after standardizing every dimension on the rows."""
    import torch

    mean = embeddings.mean(0)
    scale = embeddings.std(0) + 1e-4
    rows = torch.nn.functional.normalize((embeddings - mean) / scale, dim=-1)
    target = torch.nn.functional.normalize((torch.tensor(query) - mean) / scale, dim=0)
    return (rows @ target).tolist()


def save_state(state: dict, path: Path) -> None:
    """Write `state` (tensors, numbers, text) to `path` atomically, readable by its owner only (it
    holds the texts it was fitted on)."""
    import tempfile

    import torch

    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")  # mode 0600
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def load_state(path: Path) -> dict:
    """What `save_state` wrote; raises on a damaged file."""
    import torch

    return torch.load(path, weights_only=True)
