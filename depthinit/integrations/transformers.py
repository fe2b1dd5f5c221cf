"""An HF ``TrainerCallback`` that runs a :class:`~depthinit.monitor.VarianceMonitor` (``pip install
depthinit[transformers]``).

>>> from depthinit.integrations.transformers import VarianceMonitorCallback
>>> trainer = Trainer(model, args, train_dataset=ds, callbacks=[VarianceMonitorCallback(every=10)])

The monitor is made on the Trainer's model when training begins, :meth:`~depthinit.monitor.VarianceMonitor.step`
runs at ``on_optimizer_step`` (after ``optimizer.step()``, before the gradients are zeroed: once per
optimizer step, gradient accumulation included) and the monitor is closed when training ends. With
``log_to_trainer`` the scalars also go to the loggers the Trainer reports to (``args.report_to``), at the
Trainer's ``global_step`` (the number of optimizer steps taken, this one included):

* ``"wandb"``: the run the Trainer's ``WandbCallback`` started (``wandb.run``), keyed by
  ``train/global_step`` as that callback does, so the curves share its x axis;
* ``"tensorboard"``: a ``SummaryWriter`` in the folder of the Trainer's ``TensorBoardCallback``
  (``$TENSORBOARD_LOGGING_DIR``, else ``<output_dir>/runs/<time>_<host>``, the same rule);
* other integrations are not forwarded (one warning names them); the monitor's own ``sinks`` still work.

On every checkpoint the monitor's state goes to ``<checkpoint>/depthinit_monitor.pt``; a run resumed from
that checkpoint (``trainer.train(resume_from_checkpoint=...)``) continues its history.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - the optional extra
    raise ImportError("depthinit.integrations.transformers needs transformers: pip install "
                      "'depthinit[transformers]' (or transformers accelerate)") from e

from ..sinks import Scalars, Sink, TensorBoard
from . import TRAINER_STATS, MonitorCallback

__all__ = ["VarianceMonitorCallback", "STATE_FILE"]

STATE_FILE = "depthinit_monitor.pt"
_FORWARDED = ("wandb", "tensorboard")


def _report_to(args: Any) -> list[str]:
    r = getattr(args, "report_to", None) or []
    r = [r] if isinstance(r, str) else list(r)
    return [] if r in (["none"], []) else r


class VarianceMonitorCallback(MonitorCallback, TrainerCallback):
    """Run a :class:`~depthinit.monitor.VarianceMonitor` in an HF ``Trainer``; the arguments are
    :class:`depthinit.integrations.MonitorCallback`'s (``log_to_trainer``, ``trainer_stats``) and the monitor's."""

    def __init__(self, log_to_trainer: bool = True, trainer_stats: Sequence[str] = TRAINER_STATS,
                 **monitor_options: Any) -> None:
        super().__init__()
        self._init_monitor(log_to_trainer, trainer_stats, monitor_options)

    def _trainer_sinks(self, args: Any, state: Any) -> list[Sink]:
        if not (self.log_to_trainer and getattr(state, "is_world_process_zero", True)):
            return []
        targets = _report_to(args)
        sinks: list[Sink] = []
        if "wandb" in targets:
            import wandb

            if wandb.run is not None:
                run = wandb.run
                sinks.append(Scalars(lambda m, s: run.log({**m, "train/global_step": s}), self.trainer_stats,
                                     step_offset=1))
        if "tensorboard" in targets:
            from transformers.integrations.integration_utils import default_logdir

            logdir = os.getenv("TENSORBOARD_LOGGING_DIR") or os.path.join(args.output_dir, default_logdir())
            sinks.append(_Shifted(TensorBoard(os.path.expanduser(logdir), stats=self.trainer_stats,
                                              histograms=False), 1))
        other = [t for t in targets if t not in _FORWARDED]
        if other:
            warnings.warn(f"VarianceMonitorCallback: the monitor's scalars are not forwarded to {other} (only to "
                          f"{list(_FORWARDED)}); give the monitor its own sinks=", stacklevel=2)
        return sinks

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if model is None:
            raise ValueError("VarianceMonitorCallback: the Trainer passed no model to on_train_begin")
        resumed = os.path.join(args.output_dir, f"checkpoint-{state.global_step}", STATE_FILE)
        if state.global_step > 0 and os.path.isfile(resumed):
            self._holder.load_state_dict(torch.load(resumed, weights_only=False))
        self._holder.attach(model, self._trainer_sinks(args, state))

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._holder.step()

    def on_save(self, args, state, control, **kwargs):
        if self.monitor is not None and getattr(state, "is_world_process_zero", True):
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            os.makedirs(folder, exist_ok=True)
            torch.save(self._holder.state_dict(), os.path.join(folder, STATE_FILE))

    def on_train_end(self, args, state, control, **kwargs):
        self._holder.close()


class _Shifted(Sink):
    """``sink`` with every step moved by ``offset`` (the Trainer counts steps after the update)."""

    def __init__(self, sink: Sink, offset: int) -> None:
        self.sink, self.offset = sink, offset

    def open(self) -> None:
        self.sink.open()

    def write(self, step: int, records: list[dict[str, Any]]) -> None:
        self.sink.write(step + self.offset, records)

    def alert(self, event) -> None:
        import dataclasses

        self.sink.alert(dataclasses.replace(event, step=event.step + self.offset))

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.close()
