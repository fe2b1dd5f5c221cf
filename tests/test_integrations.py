"""The trainer integrations with the real packages on CPU: a Lightning Trainer and an HF Trainer run tiny
GPT-2 models with the callbacks; the monitor's records land in JSONL, in the trainer's TensorBoard logs and
in an offline wandb run; checkpoints carry the monitor's state.

What is checked exactly: the monitored steps (optimizer steps, accumulation counted once), the JSONL records
against the monitor's history, the forwarded scalars against those records (same value, the trainer's
global step = monitor step + 1).
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from depthinit import models
from depthinit.monitor import VarianceMonitor
from depthinit.sinks import JSONL, WandB, read_jsonl

from ._wandb import wandb_history

VOCAB, BLOCK = 32, 8


def tb_scalars(logdir) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    mux = EventMultiplexer(size_guidance={"scalars": 0})
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    out: dict[str, dict[int, float]] = {}
    for run, tags in mux.Runs().items():
        for tag in tags.get("scalars", []):
            out.setdefault(tag, {}).update({e.step: e.value for e in mux.Scalars(run, tag)})
    return out


def token_data(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, BLOCK + 1), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- Lightning


@pytest.fixture(scope="module")
def L():
    return pytest.importorskip("lightning.pytorch")


def lit_module(L):
    class TinyLM(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.model = models.gpt2(n_layer=2, n_embd=16, n_head=2, vocab=VOCAB, block=BLOCK)

        def training_step(self, batch, batch_idx):
            (x,) = batch
            logits = self.model(x[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-2)

    return TinyLM()


def lit_trainer(L, root, max_steps, accumulate=1, callbacks=()):
    from lightning.pytorch.loggers import TensorBoardLogger

    return L.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, default_root_dir=str(root),
                     logger=TensorBoardLogger(str(root), name="tb", version=0), enable_progress_bar=False,
                     enable_model_summary=False, accumulate_grad_batches=accumulate, log_every_n_steps=1,
                     callbacks=list(callbacks), num_sanity_val_steps=0)


def loader(n=32, bsz=4):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(token_data(n)), batch_size=bsz)


def test_lightning_callback_records_jsonl_tensorboard_and_checkpoints(L, tmp_path):
    from depthinit.integrations.lightning import VarianceMonitorCallback

    cb = VarianceMonitorCallback(every=2, sinks=[JSONL(tmp_path / "m.jsonl")])
    trainer = lit_trainer(L, tmp_path, max_steps=6, accumulate=2, callbacks=[cb])
    module = lit_module(L)
    trainer.fit(module, loader())
    mon = cb.monitor
    assert mon._closed and mon.global_step == 6 == trainer.global_step  # optimizer steps, not batches
    recs, _ = read_jsonl(tmp_path / "m.jsonl")
    assert sorted({r["step"] for r in recs}) == [0, 2, 4]
    assert [(r["step"], r["kind"], r["name"]) for r in recs] == [(r["step"], r["kind"], r["name"])
                                                                  for r in mon.history]
    kinds = {r["kind"] for r in recs}
    assert kinds == {"weight", "grad", "act", "update"} and any(r.get("stream") for r in recs)
    # the trainer's TensorBoard logger got the scalars, at the trainer's global step (monitor step + 1)
    tb = tb_scalars(tmp_path / "tb")
    assert "loss" in tb  # the module's own metric, same event files
    want = {r["step"] + 1: r["std"] for r in recs if r["kind"] == "weight" and r["name"] == "h.0.attn.q"}
    assert tb["depthinit/weight/std/h.0.attn.q"] == pytest.approx(want, rel=1e-6)
    # the checkpoint holds the monitor's state; fit(ckpt_path=) continues its history and step counter
    ckpt = trainer.checkpoint_callback.best_model_path  # Lightning's ModelCheckpoint, at the end of fit
    assert os.path.isfile(ckpt)
    state = torch.load(ckpt, weights_only=False)["callbacks"]
    (saved,) = [v for k, v in state.items() if "VarianceMonitorCallback" in k]
    assert saved["global_step"] == 6 and list(saved["steps"]) == [0, 2, 4]
    cb2 = VarianceMonitorCallback(every=2, sinks=[JSONL(tmp_path / "m2.jsonl")])
    lit_trainer(L, tmp_path, max_steps=10, accumulate=2, callbacks=[cb2]).fit(lit_module(L), loader(), ckpt_path=ckpt)
    assert cb2.monitor.global_step == 10
    assert sorted({r["step"] for r in cb2.monitor.history}) == [0, 2, 4, 6, 8]
    assert sorted({r["step"] for r in read_jsonl(tmp_path / "m2.jsonl")[0]}) == [6, 8]


def test_lightning_callback_checks_options_at_once(L):
    from depthinit.integrations.lightning import VarianceMonitorCallback

    with pytest.raises(TypeError, match="evry"):
        VarianceMonitorCallback(evry=3)


# ---------------------------------------------------------------------------------------------- HF Trainer


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers")


def hf_model(hf):
    torch.manual_seed(0)
    cfg = hf.GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=VOCAB, n_positions=BLOCK, bos_token_id=0,
                        eos_token_id=0)
    return hf.GPT2LMHeadModel(cfg)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        self.x = token_data(n)[:, :BLOCK]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.x[i]}


def hf_trainer(hf, out, cb, max_steps, report_to, save_steps=None):
    args = hf.TrainingArguments(output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4,
                                gradient_accumulation_steps=2, learning_rate=1e-3, logging_steps=1,
                                report_to=report_to, use_cpu=True, save_strategy="steps" if save_steps else "no",
                                save_steps=save_steps or 500, disable_tqdm=True, dataloader_num_workers=0)
    return hf.Trainer(model=hf_model(hf), args=args, train_dataset=Tokens(64), callbacks=[cb])


def test_hf_trainer_callback_records_jsonl_and_forwards_to_tensorboard(hf, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    from depthinit.integrations.transformers import STATE_FILE, VarianceMonitorCallback

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    cb = VarianceMonitorCallback(every=2, sinks=[JSONL(tmp_path / "m.jsonl")])
    trainer = hf_trainer(hf, tmp_path / "out", cb, max_steps=6, report_to=["tensorboard"], save_steps=4)
    trainer.train()
    mon = cb.monitor
    assert mon._closed and mon.global_step == 6 == trainer.state.global_step
    recs, _ = read_jsonl(tmp_path / "m.jsonl")
    assert sorted({r["step"] for r in recs}) == [0, 2, 4]
    assert {r["kind"] for r in recs} == {"weight", "grad", "act", "update"}
    assert {r["name"] for r in recs if r.get("stream")} == {"h.0", "h.1"}
    tb = tb_scalars(tmp_path / "tb")
    assert "train/loss" in tb  # the Trainer's own TensorBoard logs, same folder
    want = {r["step"] + 1: r["std"] for r in recs if r["kind"] == "grad" and r["name"] == "h.1.mlp.c_fc"}
    assert tb["grad/std/h.1.mlp.c_fc"] == pytest.approx(want, rel=1e-6)
    # the checkpoint at step 4 holds the monitor's state; resuming from it continues the history
    assert os.path.isfile(tmp_path / "out" / "checkpoint-4" / STATE_FILE)
    cb2 = VarianceMonitorCallback(every=2)
    hf_trainer(hf, tmp_path / "out", cb2, max_steps=8, report_to=[]).train(
        resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-4"))
    assert sorted({r["step"] for r in cb2.monitor.history}) == [0, 2, 4, 6]


def test_hf_trainer_forwards_to_wandb_offline_and_the_wandb_sink(hf, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from depthinit.integrations.transformers import VarianceMonitorCallback

    for k, v in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
                 "WANDB_PROJECT": "depthinit-test"}.items():
        monkeypatch.setenv(k, v)
    cb = VarianceMonitorCallback(every=2)
    hf_trainer(hf, tmp_path / "out", cb, max_steps=4, report_to=["wandb"]).train()
    wandb.finish()
    rows = wandb_history(str(tmp_path))
    ours = [r for r in rows if "weight/std/h.0.attn.q" in r]
    want = {r["step"] + 1: r["std"] for r in cb.monitor.history if r["kind"] == "weight" and r["name"] == "h.0.attn.q"}
    assert {r["train/global_step"]: r["weight/std/h.0.attn.q"] for r in ours} == pytest.approx(want, rel=1e-6)
    assert any("train/loss" in r for r in rows)  # the Trainer's own logs, same run


def test_wandb_sink_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    torch.manual_seed(0)
    m = models.gpt2(n_layer=2, n_embd=16, n_head=2, vocab=VOCAB, block=BLOCK)
    sink = WandB(histograms=True, project="depthinit-test", mode="offline", dir=str(tmp_path))
    mon = VarianceMonitor(m, every=2, sinks=[sink])
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for s in range(5):
        x = token_data(4, s)
        F.cross_entropy(m(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()).backward()
        opt.step()
        mon.step()
        opt.zero_grad()
    run = sink._run
    mon.close()
    run.finish()
    rows = {r["_step"]: r for r in wandb_history(str(tmp_path))}
    assert sorted(rows) == [0, 2, 4]
    for r in mon.history:
        if r["kind"] == "act" and "std" in r:
            assert rows[r["step"]][f"act/std/{r['name']}"] == pytest.approx(r["std"], rel=1e-6)
    key = "weight/hist/h.0.attn.q"  # a wandb.Histogram: nested keys _type, bins, values
    assert rows[2][key + "/_type"] == "histogram" and len(rows[2][key + "/values"]) == 32
    w = [r for r in mon.history if (r["step"], r["kind"], r["name"]) == (2, "weight", "h.0.attn.q")][0]
    assert sum(rows[2][key + "/values"]) == pytest.approx(w["count"], rel=1e-9)
