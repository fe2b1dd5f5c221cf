"""Peak host memory of ``di.materialize`` on CPU, as a multiple of the parameter bytes.

Each measurement runs in a fresh process: after a warm-up (imports, compiled CPU fill), the peak RSS is
reset (``/proc/self/clear_refs``); the peak RSS (``VmHWM``) while materializing a meta-built GPT-2-style model,
minus the RSS just before, divided by the parameter bytes, is the figure. Target: <= 1.1.

    python bench/materialize_memory.py --model gpt2:n_layer=24,n_embd=1024,n_head=16,vocab=50257,block=1024 \
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

if os.path.dirname(os.path.abspath(__file__)) not in sys.path:  # the helpers beside this script
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
from _results import save_json  # noqa: E402

CHILD = r"""
import json, sys, torch
import depthinit as di
from depthinit.applications.models import build, n_params
spec, scheme = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
model = build(spec, device="meta")
# warm the fill path on a tiny model first so one-time costs (compilation, imports) are not counted
di.materialize(build("mlp:depth=2,width=64", device="meta"), device="cpu", scheme="he", seed=0)
from depthinit.fill import warmup_cpu; warmup_cpu()  # build (or load) the CPU fill kernel now
def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) so the warm-up's own peak is not counted
before = status("VmRSS")
di.materialize(model, device="cpu", scheme=scheme, seed=0)
peak = status("VmHWM")
nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
print(json.dumps({"params": n_params(model), "param_bytes": nbytes, "rss_before": before, "peak": peak,
                  "ratio": (peak - before) / nbytes}))
"""


def measure(spec: str, scheme: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, spec, scheme], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


TARGET = 1.1


def run(spec: str, scheme: str = "gpt2") -> dict:
    """:func:`measure` with the model, the scheme and the target: ``ratio`` (peak extra host memory / parameter
    bytes) ``<= target`` is the goal."""
    return {"model": spec, "scheme": scheme, **measure(spec, scheme), "target": TARGET}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2:n_layer=24,n_embd=1024,n_head=16,vocab=50257,block=1024")
    ap.add_argument("--scheme", default="gpt2")
    ap.add_argument("--json", metavar="PATH", default=None, help="also save the result as JSON (- prints it)")
    args = ap.parse_args(argv)
    r = run(args.model, args.scheme)
    print(f"{r['model']}: {r['params']:,} parameters, {r['param_bytes'] / 2**20:.0f} MiB; "
          f"peak extra host memory {(r['peak'] - r['rss_before']) / 2**20:.0f} MiB = {r['ratio']:.3f}x the parameter "
          f"bytes (target <= {r['target']}x)")
    if args.json:
        save_json(r, args.json)
    return r


if __name__ == "__main__":
    main()
