"""GPU variant of bench_monitor_overhead.py: VarianceMonitor vs no monitoring vs a wandb.watch-like baseline.

GPT-2 small (12 layers, d=768, vocab 50257) on 8 x 1024 tokens, bf16 autocast, AdamW, on one CUDA
device; the three variants interleaved in blocks of ``2 * every`` steps, timed by wall clock with the
device synchronized at block boundaries only (so the monitor's asynchronous design is measured as
used: statistics launched on the stream, copied to pinned memory, read at a later drain). On CUDA the
monitor's statistics are the fused Triton kernels of ``depthinit.kernels.stats``; the baseline's
``.item()`` calls synchronize the device at every logged tensor.

Import-safe on a machine without a GPU; ``--help`` works everywhere; :func:`run` returns the structured result
(``bench/gpu_check.py`` calls it; ``dry_run=True``: a tiny model on CPU). Usage::

    .venv/bin/python bench/gpu_monitor_overhead.py                    # GPT-2 small, bf16
    .venv/bin/python bench/gpu_monitor_overhead.py --compile --rounds 10
    .venv/bin/python bench/gpu_monitor_overhead.py --layers 24 --width 1024 --heads 16 --json
"""

from __future__ import annotations

import importlib.util
import os
import sys

GPU_DEFAULTS = {
    "device": "cuda", "amp": "bf16", "layers": 12, "width": 768, "heads": 12, "vocab": 50257, "seq": 1024,
    "batch": 8, "every": 10, "rounds": 6, "clock": "wall", "threads": 0,
    "wandb": False,  # the GPU image has no wandb; the hand-written watch-like baseline stands in (same work)
}  # fmt: skip


def _base():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_monitor_overhead.py")
    spec = importlib.util.spec_from_file_location("bench_monitor_overhead", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


DRY_RUN = {"device": "cpu", "amp": "none", "layers": 2, "width": 32, "heads": 2, "vocab": 128, "seq": 16, "batch": 2,
           "every": 2, "rounds": 1, "threads": 1}  # fmt: skip


def run(dry_run: bool = False, **options) -> dict:
    """The benchmark with GPU_DEFAULTS (or the dry-run sizes) updated by ``options`` (the command-line names with
    underscores, e.g. ``layers=4``); returns bench_monitor_overhead's result dict (``step_ms``, ``overhead_pct``,
    ``depthinit_over_watch``, ``config``, ...)."""
    settings = {**GPU_DEFAULTS, **(DRY_RUN if dry_run else {}), **options}
    argv = []
    for k, v in settings.items():
        if isinstance(v, bool):
            argv += [f"--{k.replace('_', '-')}"] if v else []
        else:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return main(argv)


def main(argv: list[str] | None = None) -> dict | None:
    argv = sys.argv[1:] if argv is None else list(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:  # run as a script from a checkout: make the package importable
        sys.path.insert(0, root)
    base = _base()
    desc = __doc__.split("\n")[0]
    if not any(a in ("-h", "--help") for a in argv):
        import torch

        args = base.parser(GPU_DEFAULTS, desc).parse_args(argv)
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("gpu_monitor_overhead: no CUDA device here; run it on a GPU machine (or pass --device cpu)",
                  file=sys.stderr)
            return None
    return base.main(argv, defaults=GPU_DEFAULTS, description=desc)


if __name__ == "__main__":
    main()
