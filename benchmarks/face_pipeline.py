"""Face pipeline figures: per-photo detect / align / paste-back times at 0.25, 1 and 12 MP per detector
backend, how well each backend's 5 points agree with 68-point landmarks on the astronaut, and (with
``--photos``) faces found, extra and missed per backend on ../shared/photos and transformed copies.

Run: ``python benchmarks/face_pipeline.py [--repeats 3] [--fan-random-weights] [--photos DIR]``.
Prints tables; no assertions (speed targets live here, not in tests). Timing photos are synthesised
from scikit-image's astronaut (upscaled and reflect-padded), so no data is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

# face-pipeline.md §2: landmark-model points on astronaut.png (FaceMesh 468 in cv2.dnn, dlib 68).
FACEMESH = np.array([[202.9, 101.7], [245.6, 103.9], [222.5, 129.3], [198.0, 138.6], [246.7, 140.3]])
DLIB_EYES_MOUTH = np.array([[203.2, 101.5], [246.5, 104.2], [201, 139], [246, 141]])
SIZES = {"0.25 MP": (512, 512), "1 MP": (1024, 1024), "12 MP": (3000, 4000)}


def astronaut() -> np.ndarray:
    import skimage

    from faceedit import images

    return images.read(Path(skimage.__file__).parent / "data" / "astronaut.png").rgb


def synthesise(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """The astronaut scaled to the photo's height, reflect-padded to its width (one face, sized with it)."""
    import cv2

    side = height
    scaled = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC if side > 512 else cv2.INTER_AREA)
    pad = width - side
    return cv2.copyMakeBorder(scaled, 0, 0, pad // 2, pad - pad // 2, cv2.BORDER_REFLECT_101)


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def place_random_fan_weights() -> Path:
    """Random-weight FAN/S3FD files in a temporary TORCH_HOME: right FLOPs, meaningless points."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    home = Path(tempfile.mkdtemp(prefix="faceedit-bench-torch-"))
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), folder / "2DFAN4-11f355bf06.pth.tar")
    torch.save(s3fd().state_dict(), folder / "s3fd-619a316812.pth")
    os.environ["TORCH_HOME"] = str(home)
    return home


def available_backends(fan_random: bool) -> list[str]:
    from faceedit.face import detect

    names = ["mtcnn"]
    try:
        import yuface  # noqa: F401

        names.append("yunet")
    except ImportError:
        print("yunet: not installed (pip install yuface; CPython 3.11 only)")
    if fan_random:
        place_random_fan_weights()
    if all(p.exists() for p in detect.fan_weight_paths()):
        names.append("fan")
    else:
        print("fan: weights not cached (faceedit models download fan, or --fan-random-weights for timings)")
    return names


def agreement(backend: str, rgb: np.ndarray, fan_random: bool) -> str:
    """Mean / max distance (px, IOD ~43) of the backend's points to FaceMesh's and dlib's."""
    from faceedit.face import detect

    if backend == "fan" and fan_random:
        return "n/a (random weights)"
    faces = detect.detect(rgb, backend)
    if not faces:
        return "no face"
    p = faces[0].points5
    mesh = np.hypot(*(p - FACEMESH).T)
    dlib = np.hypot(*(p[[0, 1, 3, 4]] - DLIB_EYES_MOUTH).T)
    return f"FaceMesh {mesh.mean():.1f}/{mesh.max():.1f}  dlib {dlib.mean():.1f}/{dlib.max():.1f}"


def robustness(backend: str, rgb: np.ndarray) -> str:
    """Faces found in transformed copies (expected: 1 each; 3 in the canvas)."""
    import cv2

    from faceedit.face import detect

    turned30 = cv2.warpAffine(rgb, cv2.getRotationMatrix2D((255.5, 255.5), 30, 1), (512, 512))
    canvas = np.zeros((512, 1280, 3), np.uint8)
    canvas[:, :512], canvas[:, 768:] = rgb[:, ::-1], rgb
    canvas[128:384, 540:796] = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_AREA)
    cases = {
        "64px": cv2.resize(rgb, (64, 64), interpolation=cv2.INTER_AREA),
        "rot30": turned30,
        "rot90": np.rot90(rgb, 3),
        "rot180": np.rot90(rgb, 2),
        "3faces": canvas,
    }
    found = []
    for name, image in cases.items():
        faces = detect.detect(np.ascontiguousarray(image), backend, try_rotations=False, min_face_size=8)
        found.append(f"{name}={len(faces)}")
    return " ".join(found)


def time_fan_landmarks(rgb: np.ndarray, repeats: int) -> float:
    """FAN's 68 points on one given face box of the detection copy (random weights: S3FD not timed).

    With random weights S3FD returns hundreds of boxes and its post-processing time balloons, so only
    the landmark network is timed here; S3FD forward cost: face-pipeline.md §1 (0.68 s at 512^2, 2 cores).
    """
    from faceedit.face import detect

    small, _ = detect._resize_for_detection(rgb, detect.DETECT_MAX_SIDE)
    box = detect.detect(small, "mtcnn")[0].box
    fa = detect.get_backend("fan", "auto")._fa  # type: ignore[attr-defined]
    seconds, _ = best_of(lambda: fa.get_landmarks_from_image(small, detected_faces=[[*box, 1.0]]), repeats)
    return seconds


def time_photo(backend: str, rgb: np.ndarray, repeats: int) -> tuple[float, float, float, float, int]:
    """Seconds for detect, align (celeba 128 / ffhq 1024) and paste-back (partial colour match)."""
    from faceedit.face import align, blend, detect

    t_detect, faces = best_of(lambda: detect.detect(rgb, backend), repeats)
    if not faces:
        return t_detect, float("nan"), float("nan"), float("nan"), 0
    face = faces[0]  # type: ignore[index]
    t_celeba, aligned = best_of(lambda: align.align(rgb, face, "celeba-178", 128), repeats)
    t_ffhq, _ = best_of(lambda: align.align(rgb, face, "ffhq", 1024), repeats)
    crop, matrix = aligned.crop, aligned.matrix  # type: ignore[attr-defined]
    t_paste, _ = best_of(lambda: blend.paste_back(rgb, crop, matrix, color_match="partial"), repeats)
    return t_detect, t_celeba, t_ffhq, t_paste, len(faces)  # type: ignore[arg-type]


def photo_copies(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The photo and the copies tests/test_photos_detect.py checks: mirrored, 0.7x, 1.3x, mirrored
    1.1x, JPEG quality 60, gray."""
    import cv2

    h, w = rgb.shape[:2]

    def scaled(image: np.ndarray, k: float) -> np.ndarray:
        how = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, (round(w * k), round(h * k)), interpolation=how)

    _, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 60])
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    copies = {"photo": rgb, "mirror": rgb[:, ::-1], "0.7x": scaled(rgb, 0.7), "1.3x": scaled(rgb, 1.3)}
    copies["mirror 1.1x"] = scaled(rgb[:, ::-1], 1.1)
    copies["jpeg60"] = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    copies["gray"] = np.repeat(gray[..., None], 3, axis=2)
    return {k: np.ascontiguousarray(v) for k, v in copies.items()}


class Unverified:
    """A backend without faceedit.face.verify's rules (what every backend returned before them)."""

    def __init__(self, name: str) -> None:
        from faceedit.face import detect

        backend = detect.get_backend(name)
        self.name = f"{name} unverified"
        self.max_side = getattr(backend, "max_side", detect.DETECT_MAX_SIDE)
        self.detect = backend.unverified  # type: ignore[attr-defined]


def count_photos(folder: Path, backends: list[str]) -> None:
    """Per backend: versions with the right face count, extra and missed faces, seconds per image."""
    from faceedit import images
    from faceedit.face import detect

    table = re.findall(r"^\| `([^`]+)` \| (\d+) \|", (folder / "README.md").read_text(), flags=re.M)
    photos = [(name, photo_copies(images.read(folder / name).rgb), int(n)) for name, n in table]
    print(f"\nfaces on {len(photos)} photos of {folder} x {len(photos[0][1])} versions (photo + copies):")
    print("  backend                right   extra  missed  s/image  wrong (photo: version found/expected)")
    for name in [b for b in backends if b != "fan"]:
        for backend in (Unverified(name), detect.get_backend(name)):
            right = extra = missed = runs = 0
            wrong, start = [], time.perf_counter()
            for photo, copies, expected in photos:
                for version, rgb in copies.items():
                    found = len(detect.detect(rgb, backend))
                    runs, right = runs + 1, right + (found == expected)
                    extra, missed = extra + max(found - expected, 0), missed + max(expected - found, 0)
                    if found != expected:
                        wrong.append(f"{photo}: {version} {found}/{expected}")
            seconds = (time.perf_counter() - start) / runs
            label = backend.name if isinstance(backend, Unverified) else f"{name} (default rules)"
            figures = f"{right:3d}/{runs}  {extra:5d}  {missed:6d}  {seconds:7.3f}"
            print(f"  {label:22s} {figures}  {'; '.join(wrong)}")


def header() -> None:
    import cv2
    import torch

    print(f"faceedit face pipeline benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"opencv {cv2.__version__}, numpy {np.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs per figure")
    parser.add_argument("--fan-random-weights", action="store_true", help="time fan on random weights")
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of the photo sizes")
    parser.add_argument("--photos", type=Path, help="also count faces on these photos (../shared/photos)")
    parser.add_argument("--photos-only", action="store_true", help="only the --photos table")
    args = parser.parse_args()
    header()
    rgb = astronaut()
    backends = available_backends(args.fan_random_weights)
    if args.photos:
        count_photos(args.photos, backends)
        if args.photos_only:
            return
    print("\n5-point agreement on astronaut.png (mean/max px; IOD ~43 px) and robustness (faces found):")
    for name in backends:
        print(f"  {name:6s} {agreement(name, rgb, args.fan_random_weights)}")
        if not (name == "fan" and args.fan_random_weights):
            print(f"  {'':6s} {robustness(name, rgb)}")
    print(
        "\nper photo, best of",
        args.repeats,
        "(seconds): detect | align celeba-178@128 | align ffhq@1024 | paste",
    )
    for label in args.sizes.split(","):
        h, w = SIZES[label.strip()]
        photo = synthesise(rgb, h, w)
        for name in backends:
            if name == "fan" and args.fan_random_weights:
                seconds = time_fan_landmarks(photo, args.repeats)
                print(
                    f"  {label:8s} {w}x{h}  fan    FAN 68 points on one face {seconds:.3f} (S3FD not timed)"
                )
                continue
            t = time_photo(name, photo, args.repeats)
            print(
                f"  {label:8s} {w}x{h}  {name:6s} detect {t[0]:7.3f}  align {t[1]:6.3f} / {t[2]:6.3f}  "
                f"paste {t[3]:6.3f}  faces {t[4]}"
            )


if __name__ == "__main__":
    main()
