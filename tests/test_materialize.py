"""Materialization of meta-device models: allocated once, filled once, buffers re-created, refusals."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import depthinit as di
from depthinit.applications.models import build


def test_materialize_gpt2_equals_plan_apply():
    spec = "gpt2:n_layer=2,n_embd=32,n_head=4,vocab=64,block=16"
    meta = build(spec, device="meta")
    plan = di.materialize(meta, device="cpu", scheme="gpt2", seed=4)
    assert all(p.device.type == "cpu" for p in meta.parameters())
    assert meta.lm_head.weight is meta.transformer.wte.weight  # tie survives to_empty
    real = build(spec)
    di.plan(real, "gpt2", seed=4).apply()
    for (n, a), (_, b) in zip(meta.state_dict().items(), real.state_dict().items()):
        assert torch.equal(a, b), n
    assert len(plan) == len(list(real.parameters()))
    idx = torch.randint(0, 64, (2, 8))
    assert torch.isfinite(meta(idx)).all()


def test_buffers_recreated_by_module_methods():
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    di.materialize(model, device="cpu", scheme="he", seed=0)
    bn = model[1]
    assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(bn.running_var, torch.ones(6))
    assert bn.num_batches_tracked.item() == 0


class Rotary(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("inv_freq", torch.empty(dim // 2), persistent=False)


def test_buffers_without_method_need_callback():
    with torch.device("meta"):
        model = Rotary(8)
    with pytest.raises(ValueError, match="inv_freq.*buffers=callback"):
        di.materialize(model, device="cpu", scheme="he")

    with torch.device("meta"):
        model = Rotary(8)
    seen = []

    def fill(name, mod):
        seen.append(name)
        mod.inv_freq.copy_(1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8)))

    di.materialize(model, device="cpu", scheme="he", buffers=fill)
    assert seen == [""] and model.inv_freq[0].item() == 1.0


def test_refuses_real_models_and_huge_plans():
    with pytest.raises(ValueError, match="meta device"):
        di.materialize(nn.Linear(2, 2), device="cpu")
    meta = build("mlp:depth=2,width=8", device="meta")
    plan = di.plan(meta, "he")
    plan.rows[0].shape = (2**31, 2**20)  # 8 PiB of fp32
    with pytest.raises(MemoryError, match="needs .* GiB .* only .* GiB"):
        di.materialize(meta, device="cpu", init_plan=plan)
    assert all(p.is_meta for p in meta.parameters())  # nothing allocated


def test_peak_host_memory_within_1_1x_parameter_bytes():
    # ~34M fp32 parameters (134 MiB): the measurement runs in a fresh process (bench/materialize_memory.py).
    sys.path.insert(0, "bench")
    try:
        from materialize_memory import measure
    finally:
        sys.path.pop(0)
    r = measure("gpt2:n_layer=4,n_embd=512,n_head=8,vocab=50257,block=256", "gpt2")
    assert r["param_bytes"] > 100 * 2**20
    assert r["ratio"] <= 1.1, json.dumps(r)


def test_cli_plans_a_1_5b_model_without_allocating_it():
    # GPT-2 XL size (1.56B parameters, 6.2 GB in fp32): the CLI builds it on meta, so the process stays small.
    code = ("import resource, sys; from depthinit.cli import main; "
            "rc = main(['plan', '--scheme', 'gpt2', '--model', 'gpt2:n_layer=48,n_embd=1600,n_head=25']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "transformer.h.47.mlp.c_proj.weight" in out.stdout
    peak_kib = int(out.stderr.strip().splitlines()[-1])
    assert peak_kib < 1024 * 1024  # < 1 GiB, far below the 6.2 GB a real allocation would take


class _Temperature(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.temperature = nn.Parameter(torch.ones(1))  # no norm, no fan: the plan keeps it


class _CausalMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("mask", torch.tril(torch.ones(4, 4)))


def test_undefined_rows_and_unwritten_buffers_refused_before_allocating():
    with torch.device("meta"):
        model = _Temperature()
    with pytest.raises(ValueError, match=r"temperature \(parameter\).*init_plan="):
        di.materialize(model, device="cpu", scheme="he")
    assert all(p.is_meta for p in model.parameters())
    plan = di.plan(model, "he")
    plan["temperature"].distribution, plan["temperature"].mean = "constant", 1.0  # the user defines it
    di.materialize(model, device="cpu", init_plan=plan)
    assert model.temperature.item() == 1.0

    with torch.device("meta"):
        res = nn.Sequential(nn.Linear(4, 4))
        res.register_parameter("alpha", nn.Parameter(torch.zeros(())))  # a residual scalar: only rezero sets it
    with pytest.raises(ValueError, match=r"alpha \(parameter\)"):
        di.materialize(res, device="cpu", scheme="he")
    di.materialize(res, device="cpu", scheme="rezero")
    assert res.alpha.item() == 0.0

    with torch.device("meta"):
        model = _CausalMask()  # Linear.reset_parameters exists but never writes the mask
    with pytest.raises(ValueError, match=r"^mask \(buffer\)"):
        di.materialize(model, device="cpu", scheme="he")
    assert all(p.is_meta for p in model.parameters())

    with torch.device("meta"):
        sn = nn.utils.spectral_norm(nn.Linear(4, 4))  # u, v buffers: nothing re-creates them
    with pytest.raises(ValueError, match=r"weight_u \(buffer\).*weight_v \(buffer\)"):
        di.materialize(sn, device="cpu", scheme="he")


def test_callback_that_misses_a_buffer_is_refused():
    with torch.device("meta"):
        model = Rotary(8)
    with pytest.raises(ValueError, match="inv_freq have no values after .*buffers=callback"):
        di.materialize(model, device="cpu", scheme="he", buffers=lambda name, mod: None)
    assert all(p.is_meta for p in model.parameters())  # back on meta: no uninitialized memory left


def _hf_models():
    T = pytest.importorskip("transformers")
    T.logging.set_verbosity_error()
    return {
        "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                                          num_attention_heads=4, vocab_size=64)),
        "bert": lambda: T.BertForMaskedLM(T.BertConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                                       num_attention_heads=4, vocab_size=64)),
    }


@pytest.mark.peers
@pytest.mark.parametrize("family", ["llama", "bert"])
@pytest.mark.parametrize("empty", ["init_empty_weights", "meta"])
def test_hf_models_materialize_with_their_buffers(family, empty):
    """accelerate's empty models keep their real buffers; models built on meta get theirs from HF's own
    ``_init_weights(module)``; no callback either way."""
    accelerate = pytest.importorskip("accelerate")
    build_fn = _hf_models()[family]
    with accelerate.init_empty_weights() if empty == "init_empty_weights" else torch.device("meta"):
        model = build_fn()
    plan = di.materialize(model, device="cpu", scheme="normal", seed=0)
    ref = dict(build_fn().named_buffers())
    bufs = dict(model.named_buffers())
    assert bufs and all(torch.equal(b, ref[n]) for n, b in bufs.items())  # inv_freq / position_ids as built
    assert all(not p.is_meta for p in model.parameters()) and len(plan) > 0


@pytest.mark.peers
def test_torchtitan_rope_cache_kept_under_init_empty_weights():
    accelerate = pytest.importorskip("accelerate")
    pytest.importorskip("torchtitan")
    from tests.test_peers import _torchtitan_llama

    cfg = _torchtitan_llama(tied=True, dim=32, n_layers=2, vocab=64)
    with accelerate.init_empty_weights():
        model = cfg.build()
    di.materialize(model, device="cpu", scheme="torchtitan_depth", seed=0)
    ref = dict(cfg.build().named_buffers())
    assert all(torch.equal(b, ref[n]) for n, b in model.named_buffers())
    # (init_empty_weights re-wraps every registered parameter, which unties torchtitan's tied head: each is
    # then planned and filled on its own, with the head's and the embedding's init.)
    assert all(not p.is_meta for p in model.parameters())

    with torch.device("meta"):  # torchtitan's own way: the rope cache comes from its _init_self_buffers
        model = cfg.build()
    di.materialize(model, device="cpu", scheme="torchtitan_depth", seed=0)
    assert all(torch.equal(b, ref[n]) for n, b in model.named_buffers())
    assert model.tok_embeddings.weight is model.lm_head.weight
