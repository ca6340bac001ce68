"""Paste-back per detail mode on real photos: sharpness kept inside the faces, pixels changed outside them.

Run: ``python benchmarks/paste_modes.py [--photos ../shared/photos] [--out DIR] [--capacity 32]``.
For every photo (and scikit-image's astronaut), every face is detected, aligned to a 128-px CelebA crop
and run through a stand-in generator of known, limited capacity (tests/standin.py: it reconstructs a
low-pass version of its input and adds a hair-colour shift in the crop's top third), then put back
with ``--detail transfer`` and ``--detail replace`` through the same functions ``faceedit edit`` uses.
Two edits: (a) identity (the model's own reconstruction), (b) +Blond_Hair (a visible change). Prints
per photo: sharpness inside the face boxes (Laplacian energy of the result / of the original), % of
pixels changed outside the face boxes and overall, and the edit's strength (mean shift towards blond in
the hair band, 8-bit levels) and paste time, plus a no-op check through ``api.edit_many`` (target =
source). Writes before / transfer / replace crops of (b) to the output folder: look at them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from faceedit import api, attributes, images, sources
from faceedit.batch import OutputPlan
from faceedit.face import align, detect
from tests.standin import ATTRIBUTES, standin_engine

MODES = ("transfer", "replace")
EDITS = {"identity": attributes.EditSpec(), "blond": attributes.EditSpec(add=("Blond_Hair",))}
BLOND = np.array([0.45, 0.30, -0.20]) / np.linalg.norm([0.45, 0.30, -0.20])  # the stand-in's colour


def prepare(path: Path, engine: api.Engine) -> api.Prepared | None:
    """The photo with its faces found (default detector) and aligned as ``faceedit edit`` does."""
    photo = images.read(path)
    faces = detect.detect(photo.rgb)
    if not faces:
        return None
    config = engine.config
    crops = [
        align.align(photo.rgb, f, config["template"], 128, interpolation=config["resize"]) for f in faces
    ]
    return api.Prepared(path, path, photo, faces, crops)


def edited_photos(
    prepared: api.Prepared, engine: api.Engine, spec: attributes.EditSpec
) -> dict[str, tuple[np.ndarray, float]]:
    """mode -> (the photo's pixels after the edit, paste milliseconds); no no-op short cut: the paste
    itself is measured."""
    names = list(engine.config["attributes"])
    x = images.to_tensor([a.crop for a in prepared.aligned])
    source = sources.source_labels(names, x.shape[0], sources.parse_source("Black_Hair", names))
    cond = attributes.encode(engine.config["conditioning"], names, source, spec)
    rebuilt = attributes.encode(engine.config["conditioning"], names, source, attributes.EditSpec())
    faces = api._generate(engine, x, cond, rebuilt, 8)
    results = {}
    for mode in MODES:
        start = time.perf_counter()
        pixels = api._paste(prepared, faces.edited, api.PasteOptions(detail=mode), faces.changes)
        results[mode] = (pixels, 1000 * (time.perf_counter() - start))
    return results


def _gray(pixels: np.ndarray) -> np.ndarray:
    rgb = images.to_uint8(pixels) if pixels.dtype != np.uint8 else pixels
    rgb = rgb if rgb.ndim == 2 else rgb[..., :3].mean(axis=2)
    return np.asarray(rgb, np.float32)


def face_mask(prepared: api.Prepared) -> np.ndarray:
    mask = np.zeros(prepared.photo.pixels.shape[:2], bool)
    for face in prepared.faces:
        x0, y0, x1, y1 = np.round(np.asarray(face.box)).astype(int)
        mask[max(y0, 0) : y1, max(x0, 0) : x1] = True
    return mask


def sharpness(pixels: np.ndarray, mask: np.ndarray) -> float:
    """Laplacian energy (mean squared response) inside ``mask``."""
    import cv2

    return float((cv2.Laplacian(_gray(pixels), cv2.CV_32F)[mask] ** 2).mean())


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = a != b
    return diff.reshape(diff.shape[0], diff.shape[1], -1).any(axis=2)


def blond_shift(prepared: api.Prepared, result: np.ndarray) -> float:
    """Mean shift (8-bit levels) towards the stand-in's blond in each face's hair band (crop rows < 30%)."""
    shifts = []
    for a in prepared.aligned:
        before = align.warp_affine(images.to_uint8(prepared.photo.rgb), a.matrix, 128).astype(np.float32)
        after = align.warp_affine(_rgb(result), a.matrix, 128).astype(np.float32)
        band = (after - before)[4:38, 16:112]
        shifts.append(float((band @ BLOND).mean()))
    return float(np.mean(shifts))


def _rgb(pixels: np.ndarray) -> np.ndarray:
    u8 = images.to_uint8(pixels)
    return np.repeat(u8[..., None], 3, axis=2) if u8.ndim == 2 else np.ascontiguousarray(u8[..., :3])


def write_strip(out: Path, prepared: api.Prepared, results: dict[str, np.ndarray]) -> None:
    """Before | transfer | replace around the largest face (1.6 face widths), 320 px high."""
    import cv2

    face = max(prepared.faces, key=lambda f: f.width * f.height)
    cx, cy, side = (
        (face.box[0] + face.box[2]) / 2,
        (face.box[1] + face.box[3]) / 2,
        0.8 * max(face.width, face.height),
    )
    h, w = prepared.photo.pixels.shape[:2]
    x0, y0, x1, y1 = (
        max(int(cx - side), 0),
        max(int(cy - side), 0),
        min(int(cx + side), w),
        min(int(cy + side), h),
    )
    tiles = [_rgb(p)[y0:y1, x0:x1] for p in (prepared.photo.pixels, results["transfer"], results["replace"])]
    scale = 320 / tiles[0].shape[0]
    size = (max(1, round(tiles[0].shape[1] * scale)), 320)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST  # never smooth the evidence
    strip = np.concatenate([cv2.resize(t, size, interpolation=interp) for t in tiles], axis=1)
    images.write(out / f"{prepared.path.stem}.png", strip, overwrite=True)


def noop_changed(path: Path, engine: api.Engine, mode: str) -> int | None:
    """Pixels a target = source edit (--add Black_Hair --source Black_Hair) changes through edit_many."""
    request = api.EditRequest(
        spec=attributes.EditSpec(add=("Black_Hair",)),
        source=sources.parse_source("Black_Hair", ATTRIBUTES),
        paste=api.PasteOptions(detail=mode),
    )
    with tempfile.TemporaryDirectory() as tmp:
        plan = OutputPlan(out_dir=Path(tmp), suffix="_noop", format="png")
        item = api.edit_many([path], engine, request, plan, workers=1).items[0]
        if item.status != "ok":
            return None
        return int(changed(images.read(path).pixels, images.read(item.outputs[0]).pixels).sum())


def measure(path: Path, engine: api.Engine, out: Path) -> list[str]:
    prepared = prepare(path, engine)
    if prepared is None:
        return [f"{path.name:28s} no face"]
    mask, before = face_mask(prepared), prepared.photo.pixels
    rows = []
    for edit, spec in EDITS.items():
        timed = edited_photos(prepared, engine, spec)
        results = {mode: pixels for mode, (pixels, _) in timed.items()}
        for mode in MODES:
            after = results[mode]
            diff = changed(before, after)
            ratio = sharpness(after, mask) / max(sharpness(before, mask), 1e-9)
            shift = blond_shift(prepared, after)
            rows.append(
                f"{path.name:28s} {len(prepared.faces):2d} {edit:9s} {mode:9s} {ratio:6.3f} "
                f"{100 * diff[~mask].mean():8.2f} {100 * diff.mean():8.2f} {shift:7.1f} {timed[mode][1]:8.1f}"
            )
        if edit == "blond":
            write_strip(out, prepared, results)
    rows.append(
        f"{path.name:28s}    no-op     " + "  ".join(f"{m} {noop_changed(path, engine, m)} px" for m in MODES)
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--photos", type=Path, default=root.parent / "shared" / "photos")
    parser.add_argument("--out", type=Path, default=root / "benchmarks" / "out" / "paste_modes")
    parser.add_argument(
        "--capacity",
        type=int,
        default=32,
        help="side (px) the stand-in rebuilds its 128-px input at; 128: perfect",
    )
    args = parser.parse_args()
    import skimage

    paths = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    paths.append(Path(skimage.__file__).parent / "data" / "astronaut.png")
    args.out.mkdir(parents=True, exist_ok=True)
    engine = standin_engine(lowpass=args.capacity)
    print(f"stand-in capacity: {args.capacity} px of 128")
    print("photo                        faces edit  mode      sharp  %out-chg %all-chg  blond paste-ms")
    for path in paths:
        for row in measure(path, engine, args.out):
            print(row, flush=True)
    print(f"crops (before | transfer | replace): {args.out}")


if __name__ == "__main__":
    main()
