"""A Lightning ``Callback`` that runs a :class:`~depthinit.monitor.VarianceMonitor` (``pip install
depthinit[lightning]``).

>>> from depthinit.integrations.lightning import VarianceMonitorCallback
>>> from depthinit.sinks import JSONL
>>> trainer = L.Trainer(callbacks=[VarianceMonitorCallback(every=10, sinks=[JSONL("stats.jsonl")])])

The monitor is made on the ``LightningModule`` when fitting starts (after the strategy moved it to its
device), :meth:`~depthinit.monitor.VarianceMonitor.step` runs at the end of every training batch that
took an optimizer step (so ``accumulate_grad_batches`` counts optimizer steps; the gradients are still
there: automatic optimization zeroes them in the next step), and the monitor is closed when fitting ends.
Its state (history, step counter, alert windows) is saved in Lightning checkpoints and restored on
``trainer.fit(ckpt_path=...)``. With ``log_to_trainer`` the scalars also go to every logger of the trainer
(``logger.log_metrics``: TensorBoard, wandb, CSV, ...) at the trainer's ``global_step``.
Manual optimization: call ``callback.monitor.step()`` yourself after ``optimizer.step()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError as e:  # pragma: no cover - the optional extra
    raise ImportError("depthinit.integrations.lightning needs Lightning: pip install 'depthinit[lightning]' "
                      "(or lightning)") from e

from ..sinks import Scalars
from . import TRAINER_STATS, MonitorCallback

__all__ = ["VarianceMonitorCallback"]


class VarianceMonitorCallback(MonitorCallback, pl.Callback):
    """Run a :class:`~depthinit.monitor.VarianceMonitor` in a Lightning ``Trainer``; the arguments are
    :class:`depthinit.integrations.MonitorCallback`'s (``log_to_trainer``, ``trainer_stats``) and the monitor's."""

    def __init__(self, log_to_trainer: bool = True, trainer_stats: Sequence[str] = TRAINER_STATS,
                 **monitor_options: Any) -> None:
        super().__init__()
        self._init_monitor(log_to_trainer, trainer_stats, monitor_options)
        self._stepped = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        extra = []
        if self.log_to_trainer:
            extra = [Scalars(lg.log_metrics, self.trainer_stats, step_offset=1, prefix="depthinit/")
                     for lg in trainer.loggers]
        self._holder.attach(pl_module, extra)

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        self._stepped = True

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._stepped:  # an optimizer step happened in this batch (not an accumulation-only batch)
            self._stepped = False
            self._holder.step()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._holder.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._holder.close()

    def state_dict(self) -> dict[str, Any]:
        return self._holder.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._holder.load_state_dict(state_dict)
