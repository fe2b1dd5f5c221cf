"""The classifier training the demo and the reproductions share: init, optimizer, loop, evaluation.

* :func:`init_model` — initialize with :func:`depthinit.plan` and return a digest of the initial weights;
* :func:`make_optimizer` — SGD with momentum or Adam, from a :class:`TrainConfig`;
* :func:`train_classifier` — mini-batch cross-entropy training on a :class:`~.data.Split`, evaluated on the
  full training and test sets before training and after every epoch (:class:`Curves`);
* :func:`evaluate`, :func:`grad_norms` — loss / accuracy of a set, gradient norms of one batch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..report import json_safe

OPTIMIZERS = ("sgd", "adam")

__all__ = ["OPTIMIZERS", "Curves", "TrainConfig", "evaluate", "grad_norms", "init_model", "make_optimizer",
           "train_classifier", "weights_digest"]


def init_model(model: nn.Module, scheme: str, seed: int, **options: Any) -> str:
    """Initialize with depthinit's plan (counter-based RNG); returns a digest of the initial weights."""
    from .. import plan

    plan(model, scheme, seed=seed, **options).apply()
    return weights_digest(model)


def weights_digest(model: nn.Module) -> str:
    """16 hex digits of the SHA-256 of every parameter's name and bytes, in model order."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 4096) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` over the whole set, in eval mode."""
    was = model.training
    model.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(y), batch):
        out = model(x[i : i + batch]).double()
        loss += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += int((out.argmax(1) == y[i : i + batch]).sum())
    model.train(was)
    return loss / max(len(y), 1), correct / max(len(y), 1)


def grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient of every weight matrix (``dim >= 2``), in model order, at the current
    weights, on one batch. Gradients are cleared afterwards."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    out = [float(p.grad.norm()) if p.grad is not None else 0.0 for p in model.parameters() if p.dim() >= 2]
    model.zero_grad(set_to_none=True)
    return out


@dataclass
class TrainConfig:
    """Mini-batch training of a classifier: SGD with momentum (or Adam), fixed epochs, eval every epoch."""

    epochs: int = 30
    lr: float = 0.01
    batch: int = 128
    momentum: float = 0.9
    optimizer: str = "sgd"
    clip: float | None = None  # gradient-norm clipping (None: off)


@dataclass
class Curves:
    """Per-epoch metrics; index 0 is before any training."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)

    def add(self, epoch: int, tr: tuple[float, float], te: tuple[float, float]) -> None:
        self.epoch.append(epoch)
        self.train_loss.append(tr[0])
        self.train_acc.append(tr[1])
        self.test_loss.append(te[0])
        self.test_acc.append(te[1])

    def to_dict(self) -> dict[str, list]:
        """The curves as lists, non-finite values as None (strict JSON)."""
        return json_safe({k: list(getattr(self, k)) for k in
                          ("epoch", "train_loss", "train_acc", "test_loss", "test_acc")})


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over all of ``model``'s parameters: ``sgd`` (momentum ``cfg.momentum``) or ``adam``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, foreach=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")


def train_classifier(model: nn.Module, split: Any, cfg: TrainConfig, shuffle_seed: int, *,
                     on_step: Callable[[], None] | None = None,
                     on_epoch: Callable[[int, Curves], None] | None = None) -> Curves:
    """Train ``model`` on ``split`` (a :class:`depthinit.applications.data.Split`); the batch order is drawn
    from a generator seeded with ``shuffle_seed``.

    ``on_step()`` runs after every optimizer step (a monitor's ``step``), ``on_epoch(epoch, curves)`` after
    every epoch's evaluation. A run that produces a non-finite loss stops there: its remaining epochs are
    recorded as NaN.
    """
    opt = make_optimizer(model, cfg)
    gen = torch.Generator().manual_seed(shuffle_seed)
    curves = Curves()
    curves.add(0, evaluate(model, split.x_train, split.y_train), evaluate(model, split.x_test, split.y_test))
    n = len(split.y_train)
    for ep in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        finite = True
        for i in range(0, n, cfg.batch):
            idx = perm[i : i + cfg.batch]
            loss = F.cross_entropy(model(split.x_train[idx]), split.y_train[idx])
            if not torch.isfinite(loss):
                finite = False
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            if on_step is not None:
                on_step()
        if not finite:
            for e in range(ep, cfg.epochs + 1):
                curves.add(e, (math.nan, math.nan), (math.nan, math.nan))
            break
        curves.add(ep, evaluate(model, split.x_train, split.y_train), evaluate(model, split.x_test, split.y_test))
        if on_epoch is not None:
            on_epoch(ep, curves)
    return curves
