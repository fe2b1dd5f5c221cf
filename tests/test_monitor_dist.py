"""VarianceMonitor on an FSDP2-sharded model (DTensor parameters, 2 gloo processes on CPU): the weight, gradient
and update rows — Q/K/V thirds of the sharded ``c_attn`` included, whose boundaries fall inside the local
shards — are the global figures, equal to a one-process run; one collective per monitored step; only
rank 0 writes to the sinks.

Both ranks see the same batches, so FSDP's gradient average equals the one-process gradient exactly
(the mean of two equal fp32 values) and, with one torch thread on every side (the same fp32 reduction
order), the trained weights are bitwise equal. Activation rows are merged across ranks into global-batch
figures (the same collective): twice the counts, the same moments. What differs is the
grouping of the fp64 sums (each rank's shard, merged across ranks with Chan's formula): ``rel=1e-9``
(n * eps64 for a few thousand elements, with margin). Activations are rank-local and equal here.
"""

from __future__ import annotations

import math

import pytest

from tests._dist import run_distributed
from tests.test_monitor import tiny_gpt2, train

pytestmark = pytest.mark.slow


def sharded_run(rank: int, world: int, steps: int) -> dict:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from depthinit import sinks
    from depthinit.monitor import VarianceMonitor

    torch.set_num_threads(1)  # two processes on a small machine
    model = tiny_gpt2()
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    out = {"sink_records": 0}

    class Count(sinks.Sink):
        def write(self, step, records):
            out["sink_records"] += len(records)

    mon = VarianceMonitor(model, every=1, update="exact", sinks=[Count()])  # after sharding: DTensor params
    calls = []
    names = [n for n in ("all_gather_single", "all_gather_into_tensor") if hasattr(dist, n)]
    orig = {n: getattr(dist, n) for n in names}
    step = mon.step

    def counting(fn):
        def wrapped(*a, **k):
            calls.append(1)
            return fn(*a, **k)

        return wrapped

    def counted_step():  # collectives issued inside mon.step() only (not FSDP's own)
        for n in names:
            setattr(dist, n, counting(orig[n]))
        try:
            step()
        finally:
            for n in names:
                setattr(dist, n, orig[n])

    mon.step = counted_step
    train(model, mon, steps)
    mon.close()
    out["history"] = mon.history
    out["collectives"] = len(calls)
    out["local_rows"] = tuple(model.transformer.h[0].attn.c_attn.weight.to_local().shape)
    return out


def test_fsdp2_sharded_records_equal_one_process_run():
    import torch

    from depthinit.monitor import VarianceMonitor

    steps = 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the same fp32 reduction order, so the same trained weights
    try:
        single_model = tiny_gpt2()
        single = VarianceMonitor(single_model, every=1, update="exact")
        train(single_model, single, steps)
        single.close()
    finally:
        torch.set_num_threads(threads)
    ref = single.history

    results = run_distributed(sharded_run, 2, steps)
    assert results[0]["local_rows"] == (24, 16)  # 48 rows of c_attn split 24 / 24: q (16) | k (16) | v (16)
    for res in results:
        hist = res["history"]
        assert [(r["step"], r["kind"], r["name"]) for r in hist] == [(r["step"], r["kind"], r["name"]) for r in ref]
        for a, b in zip(ref, hist):
            batch = a["kind"] == "act" or a.get("stream")  # activations, residual-stream gradients: per batch
            for k, v in a.items():
                if k in ("count", "nonfinite", "zeros"):  # the global batch of both ranks
                    assert b[k] == v * (2 if batch else 1), (a["kind"], a["name"], k)
                elif isinstance(v, float):
                    want = v * math.sqrt(2) if batch and k == "l2" else v  # twice the sum of squares
                    assert b[k] == pytest.approx(want, rel=1e-9, abs=1e-30), (a["kind"], a["name"], k)
        # one all_gather per monitored step: weights, gradients, update and activation rows together
        assert res["collectives"] == steps
    assert results[0]["sink_records"] == len(ref) and results[1]["sink_records"] == 0
