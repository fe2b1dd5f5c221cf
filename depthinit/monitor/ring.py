"""The device ring buffer of monitored steps and its drain: no host synchronization until the records are due.

Each monitored step's ``[R, N_FIELDS]`` fp64 rows go to a free slot of a device ring of ``drain + 2`` slots. On
CUDA the slot is copied ``non_blocking`` to a pinned host twin at once and an event is recorded after the copy;
:meth:`DeviceRing.drain` hands back the steps whose copy has landed (``event.query()``: no stall), waiting only
for the ones it is told to. Off CUDA the ring is host memory and every step is ready at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from depthinit.kernels.contract import N_FIELDS


class DeviceRing:
    """Slots of monitored steps on ``device``: :meth:`push` after measuring, :meth:`drain` every ``drain`` pushes."""

    def __init__(self, drain: int = 1):
        if isinstance(drain, bool) or not isinstance(drain, int) or drain < 1:
            raise ValueError(f"VarianceMonitor: drain must be an int >= 1, got {drain!r}")
        self.drain_every = drain
        self.capacity = drain + 2
        self.since_drain = 0
        self._pending: deque = deque()  # (slot, step, valid, event)
        self.reset()

    def reset(self) -> None:
        """Drop the buffers (the device or the number of rows changed); nothing may be pending."""
        assert not self._pending, "DeviceRing.reset with pending steps"
        self._ring: Tensor | None = None
        self._host: Tensor | None = None
        self._free: list[int] = []

    @property
    def allocated(self) -> bool:
        return self._ring is not None

    def allocate(self, n_rows: int, device: torch.device) -> None:
        self._ring = torch.empty((self.capacity, n_rows, N_FIELDS), dtype=torch.float64, device=device)
        if device.type == "cuda":
            self._host = torch.empty((self.capacity, n_rows, N_FIELDS), dtype=torch.float64, pin_memory=True)
        self._free = list(range(self.capacity))

    @property
    def full(self) -> bool:
        return not self._free

    def __len__(self) -> int:
        """Steps pushed and not drained yet."""
        return len(self._pending)

    def push(self, step: int, data: Tensor, valid: np.ndarray) -> bool:
        """Keep ``data`` (``[R, N_FIELDS]`` on the device) of ``step``; True when a drain is due."""
        slot = self._free.pop(0)
        self._ring[slot].copy_(data)
        event = None
        if self._host is not None:
            self._host[slot].copy_(self._ring[slot], non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending.append((slot, step, valid, event))
        self.since_drain += 1
        return self.since_drain >= self.drain_every

    def drain(self, force: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(step, data, valid)`` of the pending steps whose copy has landed, oldest first, as host arrays; waits
        for the first ``force`` of them (all if -1). Each slot is free again once its step is handed back."""
        self.since_drain = 0
        k = 0
        while self._pending:
            slot, step, valid, event = self._pending[0]
            if event is not None and not (force < 0 or k < force) and not event.query():
                break
            if event is not None:
                event.synchronize()
            data = (self._host[slot] if self._host is not None else self._ring[slot]).numpy().copy()
            self._pending.popleft()
            self._free.append(slot)
            k += 1
            yield step, data, valid
