"""Read back what an offline wandb run wrote: the history rows of its ``run-*.wandb`` file.

The file is ``:W&B`` + magic + version (7 bytes), then LevelDB log records (32 KiB blocks, each record a
7-byte header ``crc32, length, type``: 1 full, 2 first, 3 middle, 4 last) holding ``wandb.proto`` Records.
"""

from __future__ import annotations

import glob
import json
import os
import struct
import time


def wandb_history(root: str, timeout: float = 60.0) -> list[dict]:
    """History rows (``{key: value}``) of the single offline run under ``root`` (its ``WANDB_DIR``), once the
    run's ``exit`` record is in the file (wandb's service process may still be writing after ``finish()``)."""
    (path,) = glob.glob(os.path.join(root, "wandb", "offline-run-*", "run-*.wandb"))
    deadline = time.monotonic() + timeout
    while True:
        rows, done = _read(path)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _read(path: str) -> tuple[list[dict], bool]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", path
    pos, block, out, buf, done = 7, 32768, [], b"", False
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7:pos + 7 + n]
        pos += 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            kind = rec.WhichOneof("record_type")
            done |= kind == "exit"
            if kind == "history":
                out.append({it.key or "/".join(it.nested_key): json.loads(it.value_json) for it in rec.history.item})
    return out, done
