"""Built-in models for the CLI, demos, probes and benchmarks, and the ``kind:key=value,...`` spec parser.

* ``mlp:depth=54,width=256,act=relu,in=64,out=10`` — ``depth`` Linear layers (the 54-layer fully connected
  ReLU net of arXiv 2509.05018), activations between them.
* ``gpt2:n_layer=12,n_embd=768,n_head=12,vocab=50257,block=1024`` — a GPT-2-style transformer: token and
  position embeddings, pre-LN blocks ``h.N`` with a fused ``attn.c_attn`` q|k|v projection and ``c_proj``
  outputs, ``ln_f``, and an ``lm_head`` tied to the token embedding.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..probe import describe_model

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid,
               "leaky_relu": nn.LeakyReLU, "selu": nn.SELU, "linear": nn.Identity, "identity": nn.Identity}


def mlp(depth: int = 54, width: int = 256, act: str = "relu", in_features: int | None = None,
        out_features: int | None = None, bias: bool = True) -> nn.Sequential:
    """A fully connected net of ``depth`` Linear layers (``depth - 1`` hidden activations)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; valid: {', '.join(ACTIVATIONS)}")
    for k, v in dict(depth=depth, width=width, in_features=in_features, out_features=out_features).items():
        if v is not None and v < 1:
            raise ValueError(f"{k} must be >= 1, got {v}")
    dims = [width if in_features is None else in_features] + [width] * (depth - 1) + \
        [width if out_features is None else out_features]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
        if i < depth - 1:
            layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLPBlock(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLPBlock(n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    """GPT-2-style decoder (names as HF/nanoGPT: ``transformer.h.N.attn.c_attn`` ...)."""

    def __init__(self, n_layer: int = 12, n_embd: int = 768, n_head: int = 12, vocab: int = 50257, block: int = 1024):
        super().__init__()
        self.block_size = block
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, n_embd),
                "wpe": nn.Embedding(block, n_embd),
                "h": nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer)),
                "ln_f": nn.LayerNorm(n_embd),
            }
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def example_input(self) -> torch.Tensor:
        """A batch of token ids for one traced forward (``depthinit.structure``)."""
        return torch.zeros(1, min(8, self.block_size), dtype=torch.long)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        if T > self.block_size:
            raise ValueError(f"sequence length {T} exceeds block size {self.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for blk in self.transformer.h:
            x = blk(x)
        return self.lm_head(self.transformer.ln_f(x))


def gpt2(n_layer: int = 12, n_embd: int = 768, n_head: int = 12, vocab: int = 50257, block: int = 1024) -> GPT2:
    for k, v in dict(n_layer=n_layer, n_embd=n_embd, n_head=n_head, vocab=vocab, block=block).items():
        if v < 1:
            raise ValueError(f"{k} must be >= 1, got {v}")
    return GPT2(n_layer, n_embd, n_head, vocab, block)


_SPECS = {
    "mlp": (mlp, {"depth": int, "width": int, "act": str, "in": int, "out": int, "bias": bool}),
    "gpt2": (gpt2, {"n_layer": int, "n_embd": int, "n_head": int, "vocab": int, "block": int}),
}
_RENAME = {"in": "in_features", "out": "out_features"}
MAX_SPEC_ELEMENTS = 2**34  # refuse specs over ~17 billion parameters before building anything


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"mlp:depth=54,width=512"`` -> ``("mlp", {"depth": 54, "width": 512})``; ValueError on bad specs."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("empty model spec; expected e.g. mlp:depth=54,width=256")
    kind, _, rest = spec.strip().partition(":")
    if kind not in _SPECS:
        raise ValueError(f"unknown model kind {kind!r}; valid: {', '.join(_SPECS)}")
    types = _SPECS[kind][1]
    kwargs: dict = {}
    for item in filter(None, rest.split(",")):
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValueError(f"bad item {item!r} in model spec: expected key=value")
        if key not in types:
            raise ValueError(f"unknown key {key!r} for {kind}; valid: {', '.join(types)}")
        t = types[key]
        try:
            if t is bool:
                if val.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                v = val.lower() in ("true", "1")
            else:
                v = t(val)
        except ValueError:
            raise ValueError(f"bad value {val!r} for {key} in model spec: expected {t.__name__}") from None
        if t is int and v < 1:
            raise ValueError(f"{key}={v} in model spec: must be >= 1 (omit it for the default)")
        name = _RENAME.get(key, key)
        if name in kwargs:
            raise ValueError(f"{key} is given twice in model spec {spec!r}: keep one")
        kwargs[name] = v
    return kind, kwargs


def estimate_params(kind: str, kw: dict) -> int:
    if kind == "mlp":
        d, w = kw.get("depth", 54), kw.get("width", 256)
        return kw.get("in_features", w) * w + max(d - 2, 0) * w * w + w * kw.get("out_features", w) + d * w
    L, C, V, T = kw.get("n_layer", 12), kw.get("n_embd", 768), kw.get("vocab", 50257), kw.get("block", 1024)
    return V * C + T * C + L * 12 * C * C


def build(spec: str, device: str | torch.device | None = None) -> nn.Module:
    """Build a built-in model from a spec string (on ``device``, e.g. ``"meta"``)."""
    kind, kw = parse_spec(spec)
    n = estimate_params(kind, kw)
    if n > MAX_SPEC_ELEMENTS:
        raise ValueError(f"model spec {spec!r} has about {n:,} parameters, over the limit of {MAX_SPEC_ELEMENTS:,}")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return _SPECS[kind][0](**kw)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


describe = describe_model  # "<class> with <n> parameters (<MiB> MiB in fp32)"
