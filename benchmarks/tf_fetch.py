"""Figures for the TF import path: index parse time, crc32c speed, Range-fetch plans and a loopback fetch.

Run from the repository root with ../shared next to it:  python benchmarks/tf_fetch.py [--convert-full]
The real hylee/UGATIT_model files cannot be reached from here, so the full-size plan is computed from the
layout of tf-import.md §3.2 (generator_B with its Adam slots, packed in sorted-name order as Saver does).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACEEDIT_SHARED", REPO.parent / "shared"))
TF = SHARED / "fixtures" / "tf"


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def index_parse() -> None:
    import gzip

    from faceedit.convert.tf_bundle import parse_index

    multiblock = gzip.decompress((TF / "multiblock" / "model.ckpt-7.index.gz").read_bytes())
    samples = {
        "ugatit_tiny (554 entries, like the real 777)": (
            TF / "ugatit_tiny" / "UGATIT.model-3.index"
        ).read_bytes(),
        "multiblock (300 entries, 2 blocks)": multiblock,
        "snappy_index (300 entries, snappy)": (TF / "snappy_index" / "model.ckpt-7.index").read_bytes(),
    }
    for name, data in samples.items():
        seconds = _best(lambda data=data: parse_index(data))
        print(f"index parse  {name:46s} {len(data):>8,d} B  {seconds * 1e3:7.2f} ms")


def crc_speed() -> None:
    from faceedit.convert import tf_codecs as tfckpt

    data = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    fast = _best(lambda: tfckpt.crc32c(data), 3)
    print(
        f"crc32c       google-crc32c (C: {tfckpt.CRC32C_ACCELERATED})    {len(data) / fast / 1e6:9.0f} MB/s"
    )
    small = data[: 4 << 20]
    slow = _best(lambda: tfckpt._crc32c_extend_py(0, small), 1)
    print(f"crc32c       pure-Python fallback             {len(small) / slow / 1e6:9.1f} MB/s")
    print(
        f"             -> U-GAT-IT's 1 GiB FC kernel: {(1 << 30) / (len(data) / fast):.2f} s vs "
        f"{(1 << 30) / (len(small) / slow):.0f} s"
    )


def _full_generator_b() -> list:
    """Entries of generator_B and its slots for the released model (ch 64, 4 res blocks, 256 px)."""
    from faceedit.convert.tf_bundle import TensorEntry

    sys.path.insert(0, str(REPO / "tests"))
    from tests.test_tfimport import _ugatit_layout  # the §3.2 table, written independently of tfimport

    layout = _ugatit_layout("generator_B/")
    names = sorted(n + s for n in layout for s in ("", "/Adam", "/Adam_1"))
    entries, offset = [], 4_701_720_000  # predicted start of generator_B's span (tf-import.md §2)
    for name in names:
        shape = layout[name.removesuffix("/Adam_1").removesuffix("/Adam")]
        entries.append(TensorEntry(name, 1, shape, 0, offset, 4 * math.prod(shape), 0))
        offset += entries[-1].size
    return entries


def plans() -> None:
    from faceedit.convert.tf_bundle import open_checkpoint
    from faceedit.convert.tf_plans import is_slot
    from faceedit.convert.tf_ranges import Segment, plan_requests

    tiny = [e for n, e in open_checkpoint(TF / "ugatit_tiny").entries.items()
            if n.startswith("generator_B/") and not is_slot(n)]  # fmt: skip
    full = [e for e in _full_generator_b() if not is_slot(e.name)]
    for label, wanted, size in (
        ("tiny (80,048 B file)", tiny, 80_048),
        ("real (8,049,363,696 B predicted)", full, 8_049_363_696),
    ):
        payload = sum(e.size for e in wanted)
        print(f"plan         {label}: {len(wanted)} tensors, payload {payload:,d} B ({payload / size:.1%})")
        for gap in (0, 4 << 10, 64 << 10, 1 << 20, 4 << 20):
            reqs = plan_requests([Segment(e, e.offset) for e in wanted], gap)
            asked = sum(r.end - r.start for r in reqs)
            print(f"             max_gap {gap:>8,d} B: {len(reqs):3d} requests, {asked:>15,d} B asked")


def loopback_fetch() -> None:
    from huggingface_hub import constants

    from faceedit.convert import tf_remote as tfremote
    from tests.rangeserver import FakeHub

    constants.HF_HUB_OFFLINE = False
    os.environ["FACEEDIT_CACHE"] = tempfile.mkdtemp()
    with FakeHub.from_folder(
        "bench/ugatit", TF / "ugatit_tiny", "f_smoothing", (".data-00000-of-00001",)
    ) as hub:
        for gap in (0, tfremote.MERGE_GAP):
            stats = tfremote.FetchStats()
            start = time.perf_counter()
            tfremote.import_ugatit_from_hub(
                hub.repo_id,
                "f_smoothing",
                endpoint=hub.endpoint,
                max_gap=gap,
                stats=stats,
                progress=lambda done, total: None,
            )
            total = time.perf_counter() - start
            print(
                f"loopback     max_gap {gap:>8,d} B: {stats.requests} range requests, "
                f"{stats.bytes_requested:,d} of 80,048 B, fetch {stats.seconds * 1e3:.0f} ms, "
                f"whole import {total * 1e3:.0f} ms"
            )


def convert_full() -> None:
    """Convert a full-size generator (random values, 1.1 GB): time and peak memory of the numpy/torch side."""
    import resource

    from faceedit.convert.tf_plans import build_model, plan_import
    from tests.test_tfimport import _index, _ugatit_layout

    entries = _index(_ugatit_layout("generator_B/"), with_slots=False)
    plan = plan_import("ugatit", entries)
    rng = np.random.default_rng(0)
    tensors = {n: rng.standard_normal(entries[n].shape, dtype=np.float32) for n in plan.names}
    start = time.perf_counter()
    build_model(plan, tensors)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(
        f"convert      full U-GAT-IT generator: {time.perf_counter() - start:.1f} s, peak RSS {peak:.1f} GB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--convert-full", action="store_true", help="also convert a 1.1 GB random generator")
    args = parser.parse_args()
    index_parse()
    crc_speed()
    plans()
    loopback_fetch()
    if args.convert_full:
        convert_full()


if __name__ == "__main__":
    main()
