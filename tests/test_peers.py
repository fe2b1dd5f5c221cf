"""depthinit's plans against the real thing: each project's own init, parameter by parameter.

Every family is built from a config (tiny sizes, no download), initialized by its own code (HF
``post_init``/``_init_weights``, torchtitan ``init_weights``, OLMo-core ``init_weights``), and every
parameter's measured mean, std and range is compared with the matching depthinit scheme's plan row.

Tolerances: a sample std of n i.i.d. draws has relative standard error ~1/sqrt(2n) and a sample mean
std/sqrt(n); the checks allow 6 of those (a false failure ~1e-9 per tensor with the fixed seeds). The
smallest checked tensor has 128 elements (ViT's cls_token: 0.5x/2x errors are still far outside), weight
matrices have >= 16k elements (6 SE = 3.3 %). Constants (biases, norms, padding rows) must match exactly.
Truncated rows: the peer's values must lie inside the plan's bounds, and the plan's std is compared after
truncation (the std of the truncated distribution). ``DEPTHINIT_PEER_TABLE=path`` appends the per-parameter
table (parameter, peer std, depthinit std) to a file, for the record.
"""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch

import depthinit as di

pytestmark = pytest.mark.peers


def _trunc_std(r) -> float:
    """Std of N(mean, std²) truncated to [low, high] (symmetric about the mean in every scheme)."""
    if r.distribution != "trunc_normal":
        return r.std
    t = (r.high - r.mean) / r.std
    if t > 8:
        return r.std
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return r.std * math.sqrt(1 - 2 * t * phi / math.erf(t / math.sqrt(2)))


def compare(family: str, model: torch.nn.Module, plan: di.InitPlan, skip: dict[str, str] | None = None,
            peer_clamp: float | None = None) -> list[tuple[str, float, float]]:
    """Check every plan row against the peer's tensor; returns (name, peer std, depthinit std) rows.
    ``peer_clamp``: the peer truncates at ±peer_clamp·σ where the plan's clamp is wider (the std is then
    compared with the std of σ truncated at ±peer_clamp·σ)."""
    import re

    params = dict(model.named_parameters(remove_duplicate=False))
    pads = {f"{n}.weight" if n else "weight": m.padding_idx for n, m in model.named_modules()
            if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None}
    table, checked = [], 0
    for r in plan:
        if skip and any(re.search(rx, r.name) for rx in skip):
            continue
        t = params[r.name].detach().double()
        if r.name in pads:  # padding rows: zero in the peer, and planned to stay zero
            assert torch.all(t[pads[r.name]] == 0), f"{family} {r.name}: peer padding row not zero"
            assert "padding row" in r.note, f"{family} {r.name}: padding row not kept zero"
            t = torch.cat([t[: pads[r.name]], t[pads[r.name] + 1:]])
        if r.distribution == "constant":
            assert torch.all(t == r.mean), f"{family} {r.name}: peer is not the constant {r.mean}"
            continue
        assert r.distribution in ("normal", "uniform", "trunc_normal"), (r.name, r.distribution)
        n = t.numel()
        want = _trunc_std(r) if r.distribution == "trunc_normal" else r.std
        if peer_clamp is not None and r.distribution == "trunc_normal" and (r.high - r.mean) > peer_clamp * r.std:
            want = _trunc_std(type("R", (), {"distribution": "trunc_normal", "mean": r.mean, "std": r.std,
                                             "high": r.mean + peer_clamp * r.std})())
        got = t.std().item()
        assert abs(got - want) <= 6 * want / math.sqrt(2 * n), (
            f"{family} {r.name}: peer std {got:.5g}, depthinit {want:.5g} (role {r.role}, fans {r.fan_in}/{r.fan_out})")
        assert abs(t.mean().item() - r.mean) <= 6 * want / math.sqrt(n), f"{family} {r.name}: mean"
        if r.low is not None:
            assert t.min().item() >= r.low - 1e-6 * want and t.max().item() <= r.high + 1e-6 * want, (
                f"{family} {r.name}: peer range [{t.min().item():.4g}, {t.max().item():.4g}] outside the plan's "
                f"[{r.low:.4g}, {r.high:.4g}]")
        table.append((r.name, got, want))
        checked += 1
    assert checked >= 4, f"{family}: only {checked} rows checked"
    out = os.environ.get("DEPTHINIT_PEER_TABLE")
    if out:
        with open(out, "a") as f:
            f.write(f"\n### {family} (scheme {plan.scheme})\n\n")
            f.write("| parameter | peer std | depthinit std |\n|---|---|---|\n")
            for name, got, want in table:
                f.write(f"| `{name}` | {got:.5g} | {want:.5g} |\n")
            src = {}
            for r in plan:
                src[r.source] = src.get(r.source, 0) + 1
            f.write(f"\nrole sources: {', '.join(f'{k or chr(45)}: {v}' for k, v in sorted(src.items()))}\n")
    return table


# ---------------------------------------------------------------------------------------------- HF


def _hf():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def _quiet():
    return warnings.catch_warnings()


def test_hf_gpt2_gpt2_scheme_and_conv1d_fans():
    T = _hf()
    torch.manual_seed(0)
    m = T.GPT2LMHeadModel(T.GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=512, n_positions=64,
                                       bos_token_id=0, eos_token_id=0))
    p = di.plan(m, "gpt2")
    compare("HF GPT-2", m, p)
    r = p["transformer.h.0.mlp.c_fc.weight"]  # Conv1D [in=128, out=512]
    assert (r.fan_in, r.fan_out) == (128, 512)
    he = di.plan(m, "he")
    assert he["transformer.h.0.mlp.c_fc.weight"].std == pytest.approx(math.sqrt(2 / 128))  # 0.125, not 0.0625
    assert he["transformer.h.0.mlp.c_proj.weight"].std == pytest.approx(math.sqrt(2 / 512))
    assert he["transformer.h.0.attn.c_attn.weight"].fan_in == 128


def test_hf_llama_normal_scheme_and_padding_row():
    T = _hf()
    torch.manual_seed(0)
    m = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=256,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                                         pad_token_id=3))
    p = di.plan(m, "normal", std=0.02)
    compare("HF Llama", m, p)
    q = di.plan(m, "he")
    q.apply()
    assert torch.all(m.model.embed_tokens.weight[3] == 0) and m.model.embed_tokens.weight[4].abs().sum() > 0


def test_hf_bert_normal_scheme():
    T = _hf()
    torch.manual_seed(0)
    m = T.BertForMaskedLM(T.BertConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=256,
                                       num_attention_heads=4, vocab_size=512, pad_token_id=0))
    compare("HF BERT", m, di.plan(m, "normal", std=0.02))


def test_hf_llama_torchtitan_depth_scales_up_proj_as_w3():
    # HF's up_proj is torchtitan's w3 (w2(silu(w1 x) * w3 x)): depth_init scales it with wo and w2
    T = _hf()
    m = T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=4, hidden_size=64, intermediate_size=128,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=128))
    p = di.plan(m, "torchtitan_depth")
    for i in range(4):
        want = 0.02 / math.sqrt(2 * (i + 1))
        for leaf in ("mlp.up_proj", "mlp.down_proj", "self_attn.o_proj"):
            assert p[f"model.layers.{i}.{leaf}.weight"].std == pytest.approx(want)
        assert p[f"model.layers.{i}.mlp.gate_proj.weight"].std == pytest.approx(0.02)


def test_hf_mixtral_expert_banks():
    T = _hf()
    torch.manual_seed(0)
    m = T.MixtralForCausalLM(T.MixtralConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=256,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
                                             num_local_experts=4, num_experts_per_tok=2))
    compare("HF Mixtral", m, di.plan(m, "normal", std=0.02))
    he = di.plan(m, "he")
    up, down = he["model.layers.0.mlp.experts.gate_up_proj"], he["model.layers.0.mlp.experts.down_proj"]
    assert (up.role, up.fan_in, down.role, down.fan_in) == ("mlp_in", 128, "mlp_out", 256)
    assert down.std == pytest.approx(math.sqrt(2 / 256))  # per expert; the whole bank gave 0.0055
    g = di.plan(m, "gpt2")
    assert g["model.layers.1.mlp.experts.down_proj"].std == pytest.approx(0.02 / math.sqrt(4))


def test_hf_gpt_oss_expert_banks_stored_in_out():
    # GPT-OSS stores its banks [E, in, out] (x @ W[e]), the transpose of Mixtral's; its routing is data
    # dependent, so the plan comes from module types: the bank's hidden size decides the orientation
    T = _hf()
    torch.manual_seed(0)
    m = T.GptOssForCausalLM(T.GptOssConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=48,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=128,
                                           num_local_experts=4, num_experts_per_tok=2,
                                           layer_types=["full_attention"] * 2))
    he = di.plan(m, "he")
    up, down = he["model.layers.0.mlp.experts.gate_up_proj"], he["model.layers.0.mlp.experts.down_proj"]
    assert (up.shape, up.fan_in, up.fan_out) == ((4, 32, 96), 32, 96)
    assert (down.shape, down.fan_in, down.fan_out) == ((4, 48, 32), 48, 32)
    assert up.std == pytest.approx(math.sqrt(2 / 32)) and down.std == pytest.approx(math.sqrt(2 / 48))
    assert di.plan(m, "gpt2")["model.layers.1.mlp.experts.down_proj"].std == pytest.approx(0.02 / math.sqrt(4))


def test_hf_gemma_zero_centred_norm_gains():
    # Gemma's RMSNorm computes x̂·(1 + w) and HF initializes w to 0: the traced forward sees the offset, so
    # "norm gains one" means w = 0 here (w = 1 would double every norm's output)
    T = _hf()
    cfg = T.GemmaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=8, vocab_size=128)
    torch.manual_seed(0)
    m = T.GemmaForCausalLM(cfg)
    own = {n: t.detach().clone() for n, t in m.named_parameters() if "norm" in n}
    assert own and all(torch.all(t == 0) for t in own.values())  # HF's own init
    p = di.plan(m, "gpt2")
    assert all(p[n].role == "norm" and p[n].distribution == "constant" and p[n].mean == 0 for n in own)
    p.apply()
    assert all(torch.equal(m.get_parameter(n), t) for n, t in own.items())
    with torch.device("meta"):
        mm = T.GemmaForCausalLM(cfg)
    di.materialize(mm, device="cpu", scheme="he", seed=0)
    assert all(torch.all(mm.get_parameter(n) == 0) for n in own)


@pytest.mark.parametrize("family", ["gpt2", "bert", "t5"])
def test_hf_init_empty_weights_materializes_with_ties(family):
    # accelerate's init_empty_weights() re-registers every parameter, which unties lm_head from the embedding;
    # materialize re-ties what the model's config ties (HF's own tie_weights) before planning
    T = _hf()
    accelerate = pytest.importorskip("accelerate")
    build = {"gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                                             n_positions=16)),
             "bert": lambda: T.BertForMaskedLM(T.BertConfig(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                                             num_attention_heads=2, vocab_size=64)),
             "t5": lambda: T.T5ForConditionalGeneration(T.T5Config(num_layers=1, d_model=32, d_ff=64, d_kv=8,
                                                                   num_heads=2, vocab_size=64))}[family]
    with accelerate.init_empty_weights():
        m = build()
    di.materialize(m, device="cpu", scheme="normal", seed=0)
    out, inp = m.get_output_embeddings().weight, m.get_input_embeddings().weight
    assert out is inp and out.device.type == "cpu" and torch.isfinite(out).all()


def test_hf_whisper_frozen_sinusoidal_positions_are_kept():
    # Whisper's encoder positions are a frozen (requires_grad=False) sinusoid table that training never
    # changes: a fill would destroy it for good. init_ keeps it; materialize from meta rebuilds it through
    # HF's own _init_weights (the encoder's branch), not through nn.Embedding.reset_parameters' N(0, 1).
    T = _hf()
    cfg = T.WhisperConfig(vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                          d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                          decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                          max_source_positions=16, max_target_positions=16, num_mel_bins=8)
    torch.manual_seed(0)
    m = T.WhisperForConditionalGeneration(cfg)
    name = "model.encoder.embed_positions.weight"
    table = m.get_parameter(name).detach().clone()
    assert not m.get_parameter(name).requires_grad and table[1].abs().max() > 0.5
    p = di.plan(m, "normal", std=0.02)
    assert p[name].distribution == "keep" and "frozen" in p[name].note
    p.apply()
    assert torch.equal(m.get_parameter(name), table)
    with torch.device("meta"):
        mm = T.WhisperForConditionalGeneration(cfg)
    di.materialize(mm, device="cpu", scheme="normal", seed=0)
    assert torch.allclose(mm.get_parameter(name), table)


def test_hf_vit_normal_scheme_and_token_embeddings():
    T = _hf()
    torch.manual_seed(0)
    m = T.ViTForImageClassification(T.ViTConfig(num_hidden_layers=2, hidden_size=128, intermediate_size=256,
                                                num_attention_heads=4, image_size=32, patch_size=4, num_labels=10))
    compare("HF ViT", m, di.plan(m, "normal", std=0.02))
    he = di.plan(m, "he")
    for name in ("vit.embeddings.cls_token", "vit.embeddings.position_embeddings"):
        assert he[name].role == "embedding" and he[name].fan_in == 128


def test_hf_t5_fan_in_rows_and_block_depth():
    """T5's init is 1/sqrt(fan_in) (LeCun) on k, v, o, wi, wo; q folds the attention scale (an extra
    d_kv^-1/2) and the shared embedding is N(0, 1): those two are T5's own choices, not compared."""
    T = _hf()
    torch.manual_seed(0)
    m = T.T5ForConditionalGeneration(T.T5Config(num_layers=4, num_decoder_layers=4, d_model=128, d_ff=256, d_kv=32,
                                                num_heads=4, vocab_size=512))
    p = di.plan(m, "lecun")
    compare("HF T5", m, p, skip={r"\.q\.weight$": "attention scale folded into q", r"^shared\.": "std 1",
                                 r"relative_attention_bias": "std (d_model)^-1/2 on a [buckets, heads] table"})
    r = p["encoder.block.2.layer.1.DenseReluDense.wo.weight"]
    assert (r.layer, r.n_layers) == (3, 4)  # block 2 of 4, not layer 1 of 2
    d = di.plan(m, "deepnorm", architecture="encoder_decoder")
    assert d.constants["encoder_alpha"] == pytest.approx(0.81 * (4**4 * 4) ** (1 / 16))


# ---------------------------------------------------------------------------------------------- torchtitan


def _torchtitan_llama(tied: bool, dim: int = 128, n_layers: int = 4, vocab: int = 512):
    pytest.importorskip("torchtitan")
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.llama3 import (
        _EMBEDDING_INIT,
        _EMBEDDING_SKIP_INIT,
        _NORM_INIT,
        _build_llama3_layers,
        _output_linear_init,
    )
    from torchtitan.models.llama3.model import Llama3Model

    cfg = Llama3Model.Config(
        dim=dim, vocab_size=vocab, enable_weight_tying=tied,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim,
                                        param_init=_EMBEDDING_SKIP_INIT if tied else _EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)),
        layers=_build_llama3_layers(n_layers=n_layers, dim=dim, n_heads=4, n_kv_heads=2, hidden_dim=256,
                                    fuse_qkv=True, attn_backend="flex",
                                    rope=ComplexRoPE.Config(dim=dim // 4, max_seq_len=64, theta=500000,
                                                            scaling="llama")))
    return cfg


@pytest.mark.parametrize("tied", [False, True])
def test_torchtitan_llama3(tied):
    cfg = _torchtitan_llama(tied)
    torch.manual_seed(0)
    m = cfg.build()
    m.init_weights()
    p = di.plan(m, "torchtitan_depth")
    compare(f"torchtitan Llama3 ({'tied' if tied else 'untied'})", m, p)
    if tied:
        r = p["tok_embeddings.weight"]
        assert r.tied == ("lm_head.weight",) and r.std == pytest.approx(128**-0.5) and r.high == pytest.approx(
            3 * 128**-0.5)


def test_torchtitan_qwen3_moe_expert_banks():
    """torchtitan's Qwen3-MoE: N(0, 0.02) everywhere, Megatron's 0.02/sqrt(2L) on the attention output and
    the experts' down projections (``w2_EDF`` banks [E, D, F]) — depthinit's ``megatron`` scheme."""
    pytest.importorskip("torchtitan")
    from torchtitan.models.common import CosSinRoPE, Embedding, Linear
    from torchtitan.models.qwen3 import _EMBEDDING_INIT, _LINEAR_INIT, _build_qwen3_moe_layers, _qwen3_norm
    from torchtitan.models.qwen3.model import Qwen3Model

    dim, vocab, L = 128, 512, 4
    cfg = Qwen3Model.Config(
        vocab_size=vocab, dim=dim, norm=_qwen3_norm(dim),
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_LINEAR_INIT),
        layers=_build_qwen3_moe_layers(n_layers=L, dim=dim, n_heads=4, n_kv_heads=2, head_dim=32, moe_hidden_dim=64,
                                       num_experts=4, top_k=2, attn_backend="flex", moe_comm_backend="standard",
                                       rope=CosSinRoPE.Config(dim=32, max_seq_len=64, theta=1000000.0)))
    torch.manual_seed(0)
    m = cfg.build()
    m.init_weights()
    p = di.plan(m, "megatron")
    compare("torchtitan Qwen3-MoE", m, p)
    w2 = [r for r in p if r.name.endswith("w2_EDF")]
    assert w2 and all(r.role == "mlp_out" and r.fan_in == 64 for r in w2)


def test_torchtitan_deepseek_v3_moe():
    """torchtitan's DeepSeek-V3 (MLA attention, a dense first layer, then MoE layers with w1/w2/w3 expert banks,
    shared experts and a router): its depth init, depthinit's ``torchtitan_depth``."""
    pytest.importorskip("torchtitan")
    from torchtitan.models.common import ComplexRoPE, Embedding, Linear, RMSNorm
    from torchtitan.models.deepseek_v3 import (
        _EMBEDDING_INIT,
        _NORM_INIT,
        DeepSeekV3Model,
        _build_dsv3_layers,
        _output_linear_init,
    )

    dim, vocab = 128, 512
    layers = _build_dsv3_layers(
        n_layers=3, n_dense_layers=1, dim=dim, n_heads=4, q_lora_rank=0, kv_lora_rank=64, qk_nope_head_dim=32,
        qk_rope_head_dim=16, v_head_dim=32, mscale=0.70, dense_hidden_dim=256, moe_hidden_dim=128, num_experts=4,
        num_shared_experts=1, router_top_k=2, router_score_func="softmax", attn_backend="flex",
        moe_comm_backend="standard", non_blocking_capacity_factor=None,
        rope=ComplexRoPE.Config(dim=16, max_seq_len=64, theta=10000.0, scaling="none"))
    cfg = DeepSeekV3Model.Config(
        vocab_size=vocab, dim=dim, layers=layers,
        tok_embeddings=Embedding.Config(num_embeddings=vocab, embedding_dim=dim, param_init=_EMBEDDING_INIT),
        norm=RMSNorm.Config(normalized_shape=dim, param_init=_NORM_INIT),
        lm_head=Linear.Config(in_features=dim, out_features=vocab, param_init=_output_linear_init(dim)))
    torch.manual_seed(0)
    m = cfg.build()
    m.init_weights()
    p = di.plan(m, "torchtitan_depth")
    compare("torchtitan DeepSeek-V3 (MoE)", m, p)
    w3 = p["layers.2.moe.routed_experts.inner_experts.w3_EFD"]
    assert (w3.role, w3.fan_in, w3.std) == ("mlp_in", 128, pytest.approx(0.02 / math.sqrt(6)))


# ---------------------------------------------------------------------------------------------- OLMo-core


def _olmo_core(init_method: str):
    pytest.importorskip("olmo_core")
    from olmo_core.nn.transformer import InitMethod, TransformerConfig

    cfg = TransformerConfig.llama_like(d_model=128, vocab_size=512, n_layers=4, n_heads=4, hidden_size_multiple_of=64,
                                       init_method=InitMethod(init_method))
    m = cfg.build(init_device="cpu")
    m.init_weights(device=torch.device("cpu"))
    return m


def test_olmo_core_normal():
    """OLMo-core's default: every linear and embedding trunc_normal(0.02, ±3σ)."""
    m = _olmo_core("normal")
    p = di.plan(m, "trunc_normal", std=0.02, a=-0.06, b=0.06)
    compare("OLMo-core (normal)", m, p)
    assert p["lm_head.w_out.weight"].role == "head" and p["blocks.3.attention.w_out.weight"].role == "attn_out"


def test_olmo_core_llama_depth_vs_torchtitan_depth():
    """OLMo-core's ``llama_depth`` has torchtitan's stds (w_out, w2, w3: 0.02/sqrt(2l); embedding N(0,1); head
    d^-1/2) with ±3σ clamps where torchtitan uses torch's default ±2: stds compared, peer inside the bounds."""
    m = _olmo_core("llama_depth")
    p = di.plan(m, "torchtitan_depth")
    compare("OLMo-core (llama_depth)", m, p, peer_clamp=3.0)
    assert [p[f"blocks.{i}.attention.w_out.weight"].layer for i in range(4)] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------------------------- traced vs rules


def _hf_builders(T):
    return {
        "gpt2": lambda: T.GPT2LMHeadModel(T.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=32,
                                                       bos_token_id=0, eos_token_id=0)),
        "llama": lambda: T.LlamaForCausalLM(T.LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                                          num_attention_heads=4, num_key_value_heads=2,
                                                          vocab_size=128)),
        "bert": lambda: T.BertForMaskedLM(T.BertConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128,
                                                       num_attention_heads=4, vocab_size=128)),
        "t5": lambda: T.T5ForConditionalGeneration(T.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_ff=128,
                                                              d_kv=16, num_heads=4, vocab_size=128)),
        "vit": lambda: T.ViTForImageClassification(T.ViTConfig(num_hidden_layers=2, hidden_size=64,
                                                               intermediate_size=128, num_attention_heads=4,
                                                               image_size=16, patch_size=4, num_labels=10)),
    }


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert", "t5", "vit"])
def test_hf_traced_structure_agrees_with_module_and_name_rules(family):
    """Where the name tables are right, the traced forward says the same (roles, fans, depths); every row
    of the traced plan is then sourced 'traced'."""
    T = _hf()
    m = _hf_builders(T)[family]()
    traced, rules = di.plan(m, "he"), di.plan(m, "he", example=False)
    assert all(r.source == "traced" for r in traced)
    assert {r.source for r in rules} <= {"module", "name"}
    for a, b in zip(traced, rules):
        assert (a.name, a.role, a.fan_in, a.fan_out, a.layer, a.n_layers) == (
            b.name, b.role, b.fan_in, b.fan_out, b.layer, b.n_layers), a.name


def test_olmo_core_traced_plan_matches_its_init():
    m = _olmo_core("llama_depth")
    p = di.plan(m, "torchtitan_depth", example=torch.zeros(1, 8, dtype=torch.long))
    assert sum(r.source == "traced" for r in p) == len(p.rows)
    compare("OLMo-core (llama_depth, traced)", m, p, peer_clamp=3.0)
