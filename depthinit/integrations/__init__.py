"""Trainer integrations of :class:`~depthinit.monitor.VarianceMonitor` (optional extras).

* :mod:`depthinit.integrations.lightning` — ``VarianceMonitorCallback``, a Lightning ``Callback``
  (``pip install depthinit[lightning]``);
* :mod:`depthinit.integrations.transformers` — ``VarianceMonitorCallback``, an HF ``TrainerCallback``
  (``pip install depthinit[transformers]``).

Both take the monitor's own options (``VarianceMonitorCallback(every=10, sinks=[JSONL("m.jsonl")])``),
create the monitor on the trainer's model when training starts, call :meth:`VarianceMonitor.step` after
each optimizer step (before the gradients are zeroed), close it when training ends, and also send the
scalars to the trainer's own loggers (``log_to_trainer=True``). This module holds what they share.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..monitor import VarianceMonitor
from ..sinks import Sink

__all__ = ["MonitorHolder", "MonitorCallback", "TRAINER_STATS"]

TRAINER_STATS = ("std", "update_ratio", "norm_change_ratio")  # what a trainer's loggers get by default


class MonitorHolder:
    """The monitor of one training run: options checked up front, the monitor made when the model is known,
    a checkpointed state kept until then."""

    def __init__(self, owner: str, options: dict[str, Any]) -> None:
        if "model" in options:
            raise TypeError(f"{owner}: the model comes from the trainer; do not pass model=")
        try:
            inspect.signature(VarianceMonitor).bind(None, **options)
        except TypeError as e:
            raise TypeError(f"{owner}: {e} (the options are VarianceMonitor's)") from None
        self.owner = owner
        self.options = dict(options)
        self.monitor: VarianceMonitor | None = None
        self._state: dict[str, Any] | None = None

    def attach(self, model: nn.Module, extra_sinks: Sequence[Sink] = ()) -> VarianceMonitor:
        if self.monitor is not None and not self.monitor._closed:
            self.monitor.close()
        opts = dict(self.options)
        opts["sinks"] = list(opts.get("sinks", ())) + list(extra_sinks)
        self.monitor = VarianceMonitor(model, **opts)
        if self._state is not None:
            self.monitor.load_state_dict(self._state)
            self._state = None
        return self.monitor

    def step(self) -> None:
        if self.monitor is not None and not self.monitor._closed:
            self.monitor.step()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def state_dict(self) -> dict[str, Any]:
        if self.monitor is None:
            return {} if self._state is None else dict(self._state)
        return self.monitor.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.monitor is not None and not self.monitor._closed:
            self.monitor.load_state_dict(state)
        else:
            self._state = dict(state)


class MonitorCallback:
    """What both callbacks share: the checked options, the holder and the :attr:`monitor` property.

    Callback arguments:
        log_to_trainer: also send the scalars (``trainer_stats``) to the trainer's loggers.
        trainer_stats: the statistics sent there (one scalar per row and statistic).
        **monitor_options: :class:`~depthinit.monitor.VarianceMonitor`'s options (``every``, ``sinks``,
            ``alerts``, ``include``, ...); checked when the callback is made, so a misspelled one fails at once.
    """

    def _init_monitor(self, log_to_trainer: bool, trainer_stats: Sequence[str], options: dict[str, Any]) -> None:
        self._holder = MonitorHolder("VarianceMonitorCallback", options)
        self.log_to_trainer = log_to_trainer
        self.trainer_stats = tuple(trainer_stats)

    @property
    def monitor(self) -> VarianceMonitor | None:
        """The running monitor (None before training starts)."""
        return self._holder.monitor
