"""JPEG in, JPEG out: how many pixels a decode -> encode round trip moves by more than 2 levels, per
shared JPEG photo, for three ways of re-encoding (no face is edited, so every changed pixel is loss).

Run: ``python benchmarks/jpeg_roundtrip.py [--photos ../shared/photos]``. Prints a table; no
assertions. Ways: ``q95`` (the previous default: quality 95, Pillow's 4:2:0), ``tables`` (the
source's quantisation tables and subsampling), ``faceedit`` (tables + chroma pre-compensation, what
``images.write`` does now). Size is the output's bytes over the source's.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from faceedit import images, jpeg


def _encode(rgb: np.ndarray, how: str, settings: dict) -> bytes:
    buffer = io.BytesIO()
    if how == "q95":
        Image.fromarray(rgb).save(buffer, "JPEG", quality=95)
    else:
        options = jpeg.save_options(settings, None, 95)
        pixels = jpeg.precompensate(rgb, options.get("subsampling", -1)) if how == "faceedit" else rgb
        Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "photos"
    )
    args = parser.parse_args()
    print(f"{'photo':26} {'MP':>5} {'sub':>4} | {'way':8} {'>2 levels':>9} {'max':>4} {'size':>5} {'ms':>6}")
    for path in sorted(args.photos.glob("*.jp*g")):
        photo = images.read(path)
        if photo.format != "JPEG":
            continue
        settings = photo.info["jpeg"]
        for how in ("q95", "tables", "faceedit"):
            start = time.perf_counter()
            data = _encode(photo.rgb, how, settings)
            ms = (time.perf_counter() - start) * 1000
            again = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
            diff = np.abs(again - photo.rgb.astype(int)).max(axis=2)
            size = len(data) / path.stat().st_size
            mp = photo.width * photo.height / 1e6
            print(
                f"{path.name:26} {mp:5.2f} {settings['subsampling']:4} | {how:8} {(diff > 2).mean():9.2%} "
                f"{diff.max():4} {size:5.2f} {ms:6.0f}"
            )


if __name__ == "__main__":
    main()
