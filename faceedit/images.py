"""Reading and writing photos, and the only place colour order and value range are decided.

Outside: :class:`Photo` (upright RGB pixels in the file's own bit depth, plus what it takes to restore
mode, alpha and metadata on write). Inside the models: float ``[N,3,S,S]`` in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceedit import console, jpeg
from faceedit.errors import InputError, OutputError, UsageError
from faceedit.fsutil import atomic_file
from faceedit.imagefile import check_size, check_still, max_pixels_limit, open_image, read_bytes, short

if TYPE_CHECKING:
    import torch

DEFAULT_QUALITY = 95
_ORIENTATION = 0x0112
_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


@dataclass(frozen=True, eq=False)
class Photo:
    """One decoded photo, upright (EXIF orientation applied).

    ``pixels`` is HWC RGB in the file's own depth (uint8, or uint16 for 16-bit files) and is what
    paste-back writes into; ``rgb`` is its uint8 copy for detection and the GANs. ``mode`` is the
    Pillow mode of the file ("RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "RGB;16", ...), restored
    by :func:`write` together with ``alpha`` (HW, same dtype as ``pixels``), EXIF and ICC profile.
    """

    pixels: np.ndarray
    mode: str = "RGB"
    alpha: np.ndarray | None = None
    exif: bytes | None = None  # orientation tag already removed
    icc_profile: bytes | None = None
    format: str | None = None
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def rgb(self) -> np.ndarray:
        """uint8 HWC RGB (the detection and model input)."""
        return to_uint8(self.pixels)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def is_gray(self) -> bool:
        return self.mode in {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "LA;16"}

    def replace(self, **changes: Any) -> Photo:
        """A copy with some fields changed (e.g. edited ``pixels``); metadata and mode are kept."""
        return dataclasses.replace(self, **changes)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """uint8 copy of uint8/uint16/float([0,1]) pixels (rounded, not truncated)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return np.clip(np.rint(pixels.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def max_value(dtype: np.dtype) -> float:
    """The value of full white for ``dtype`` (255, 65535, or 1.0 for floats)."""
    return float(np.iinfo(dtype).max) if np.issubdtype(dtype, np.integer) else 1.0


# ----------------------------------------------------------------------------------------- reading


def read(path: Path | str, max_pixels: int | None = None) -> Photo:
    """Decode ``path`` into an upright :class:`Photo`; every failure is a one-line :class:`InputError`."""
    path = Path(path)
    data = read_bytes(path)
    limit = max_pixels_limit(max_pixels)
    try:
        with open_image(data) as im:
            check_size(path, im.size, limit)
            check_still(path, im)
            if _is_deep_colour(data, im):
                return _read_deep_colour(path, data, im)
            return _from_pillow(path, im)
    except UnidentifiedImageError:
        raise InputError(
            f"{path} is not an image (or a format Pillow cannot read)",
            "give a JPEG, PNG, WebP, BMP or TIFF file",
        ) from None
    except Image.DecompressionBombError as e:  # a plugin's own check (GIF frames, ICO...)
        raise InputError(f"{path} is refused as a decompression bomb ({short(e)})") from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error) as e:
        raise InputError(
            f"{path} is truncated or corrupt ({short(e)})", "re-export or re-download the file"
        ) from None


def _metadata(im: Image.Image) -> dict[str, Any]:
    exif = Image.Exif()  # a copy: Pillow caches getexif(), and exif_transpose still needs the tag
    exif.load(im.getexif().tobytes())
    exif.pop(_ORIENTATION, None)
    info: dict[str, Any] = {"dpi": im.info["dpi"]} if "dpi" in im.info else {}
    if settings := jpeg.source_settings(im, im.getexif().get(_ORIENTATION, 1)):
        info["jpeg"] = settings  # re-encoding with them keeps the untouched pixels (see faceedit.jpeg)
    return {
        "exif": exif.tobytes() if len(exif) else None,
        "icc_profile": im.info.get("icc_profile"),
        "format": im.format,
        "info": info,
    }


def _from_pillow(path: Path, im: Image.Image) -> Photo:
    im.load()  # decode now, so that truncation is reported here
    meta = _metadata(im)
    mode = im.mode
    upright = ImageOps.exif_transpose(im)
    alpha = None
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in im.info):
        rgba = upright.convert("RGBA")
        pixels, alpha = np.asarray(rgba)[..., :3], np.asarray(rgba)[..., 3]
    elif mode.startswith("I;16") or mode == "I":
        gray = np.clip(np.asarray(upright, dtype=np.int64), 0, 65535).astype(np.uint16)
        pixels, mode = np.repeat(gray[..., None], 3, axis=2), "I;16"
    elif mode == "F":
        raise InputError(
            f"{path} is a 32-bit float image, which faceedit does not edit",
            "convert it to 8- or 16-bit first",
        )
    else:
        if mode not in {"RGB", "L", "1", "P", "CMYK"}:
            mode = "RGB"  # YCbCr, LAB, HSV...: work and write in RGB
        pixels = np.asarray(upright.convert("RGB"))
    return Photo(np.ascontiguousarray(pixels), mode, _contiguous(alpha), path=path, **meta)


def _contiguous(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.ascontiguousarray(a)


def _is_deep_colour(data: bytes, im: Image.Image) -> bool:
    """True for 16-bit colour PNG/TIFF, which Pillow would silently reduce to 8 bits."""
    if im.format == "PNG" and data[12:16] == b"IHDR":
        return data[24] == 16 and data[25] in (2, 4, 6)  # bit depth; RGB, gray+alpha, RGBA
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and im.mode not in {"I;16", "I;16B", "I;16L", "I", "F"}
    return False


def _read_deep_colour(path: Path, data: bytes, im: Image.Image) -> Photo:
    import cv2

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # ignores EXIF orientation
    if decoded is None or decoded.dtype != np.uint16:
        raise InputError(
            f"{path} is a 16-bit image OpenCV cannot decode", "convert it to 8-bit or another format"
        )
    if decoded.ndim == 2:
        decoded = decoded[..., None]
    channels = decoded.shape[2]
    pixels = decoded[..., [2, 1, 0]] if channels >= 3 else np.repeat(decoded[..., :1], 3, axis=2)
    alpha = decoded[..., -1] if channels in (2, 4) else None
    orientation = im.getexif().get(_ORIENTATION, 1)
    pixels = orient(pixels, orientation)
    alpha = None if alpha is None else orient(alpha, orientation)
    mode = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}[channels]
    return Photo(np.ascontiguousarray(pixels), mode, _contiguous(alpha), path=path, **_metadata(im))


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1..8) to an HW[C] array (what ImageOps.exif_transpose does)."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: x.swapaxes(0, 1)[:, ::-1],
        7: lambda x: x.swapaxes(0, 1)[::-1, ::-1],
        8: lambda x: x.swapaxes(0, 1)[::-1],
    }
    return ops[orientation](a) if orientation in ops else a


# ----------------------------------------------------------------------------------------- writing


def write(
    path: Path | str,
    image: Photo | np.ndarray,
    like: Photo | None = None,
    overwrite: bool = False,
    quality: int | None = None,
) -> Path:
    """Write atomically (never overwriting unless asked), restoring mode, bit depth, alpha and metadata.

    ``image`` is a :class:`Photo` or an HWC RGB(A) array (uint8/uint16); ``like`` gives the mode and
    metadata to restore for an array (its alpha too, when the sizes match). The format comes from the
    suffix; what it cannot hold is reduced (16 bits to 8 for JPEG/WebP/BMP, alpha dropped for JPEG).
    """
    path = Path(path)
    photo = image if isinstance(image, Photo) else _photo_from_array(image, like)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(
            f"cannot write {path.suffix or 'files without a suffix'}",
            f"use one of {', '.join(sorted(_FORMATS))}",
        )
    _say_what_is_lost(path, photo, fmt)
    try:
        with atomic_file(path, overwrite=overwrite) as tmp:
            tmp.write_bytes(encode(photo, fmt, quality))
    except OSError as e:  # also from the final rename: e.g. the name is taken by a folder
        raise OutputError(
            f"cannot write {path}: {e.strerror or short(e)}", "check free space and permissions"
        ) from e
    return path


def _say_what_is_lost(path: Path, photo: Photo, fmt: str) -> None:
    """Once per run and kind: what ``fmt`` cannot hold (alpha in JPEG, 16 bits in JPEG/WebP/BMP)."""
    if photo.alpha is not None and fmt == "JPEG":
        console.warn_once(
            "alpha-jpeg",
            f"{path.name}: JPEG has no transparency, so it is flattened on white "
            "(name the output .png, e.g. --format png, to keep it; not repeated for other files)",
        )
    if photo.bit_depth == 16 and fmt in {"JPEG", "WEBP", "BMP"}:
        console.warn_once(
            f"depth-{fmt}",
            f"{path.name}: {fmt} holds 8 bits per channel, so 16-bit colour is reduced "
            "(use --format png or tiff to keep it; not repeated for other files)",
        )


def _photo_from_array(array: np.ndarray, like: Photo | None) -> Photo:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    alpha = array[..., 3] if array.shape[2] == 4 else None
    pixels = array[..., :3]
    if like is None:
        return Photo(np.ascontiguousarray(pixels), "RGBA" if alpha is not None else "RGB", _contiguous(alpha))
    if alpha is None and like.alpha is not None and like.alpha.shape == pixels.shape[:2]:
        alpha = like.alpha
    if like.bit_depth == 16 and pixels.dtype == np.uint8:
        pixels = pixels.astype(np.uint16) * 257
    if alpha is not None and alpha.dtype != pixels.dtype:
        alpha = alpha.astype(np.uint16) * 257 if pixels.dtype == np.uint16 else to_uint8(alpha)
    return like.replace(pixels=np.ascontiguousarray(pixels), alpha=_contiguous(alpha))


def encode(photo: Photo, fmt: str, quality: int | None = None) -> bytes:
    """The file bytes of ``photo`` in ``fmt`` ("JPEG", "PNG", "WEBP", "BMP", "TIFF")."""
    if photo.bit_depth == 16 and fmt in {"PNG", "TIFF"} and not photo.mode.startswith("I"):
        return _encode_deep_colour(photo, fmt)
    im = _to_pillow(photo, fmt)
    options: dict[str, Any] = {}
    if photo.exif and fmt in {"JPEG", "PNG", "WEBP", "TIFF"}:
        options["exif"] = photo.exif
    if photo.icc_profile and fmt in {"JPEG", "PNG", "WEBP", "TIFF"}:
        options["icc_profile"] = photo.icc_profile
    if "dpi" in photo.info and fmt in {"JPEG", "PNG", "TIFF"}:
        options["dpi"] = photo.info["dpi"]
    if fmt == "WEBP":
        options["quality"] = int(quality or DEFAULT_QUALITY)
    if fmt == "JPEG":
        options.update(jpeg.save_options(photo.info.get("jpeg"), quality, DEFAULT_QUALITY))
        if im.mode == "RGB" and "qtables" in options:
            im = Image.fromarray(jpeg.precompensate(np.asarray(im), options.get("subsampling", -1)))
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _to_pillow(photo: Photo, fmt: str) -> Image.Image:
    """A Pillow image in the photo's own mode, reduced to what ``fmt`` can store."""
    rgb = photo.rgb
    alpha = None if photo.alpha is None else to_uint8(photo.alpha)
    if photo.mode == "I;16" and fmt in {"PNG", "TIFF"}:
        return Image.fromarray(_luma(photo.pixels).astype(np.uint16))
    if alpha is not None and fmt == "JPEG":
        rgb, alpha = _flatten_on_white(rgb, alpha), None
    if photo.is_gray:
        gray = Image.fromarray(_luma(rgb).astype(np.uint8))
        if alpha is None:
            return gray.convert("1", dither=Image.Dither.NONE) if photo.mode == "1" else gray
        if fmt in {"PNG", "TIFF"}:
            return Image.merge("LA", (gray, Image.fromarray(alpha)))
        rgb = np.asarray(gray.convert("RGB"))  # WebP/BMP have no gray+alpha: store it as RGBA
    im = Image.fromarray(rgb)
    if alpha is not None and fmt != "JPEG":
        im.putalpha(Image.fromarray(alpha))
    if photo.mode == "CMYK" and fmt in {"JPEG", "TIFF"} and alpha is None:
        return im.convert("CMYK")
    if photo.mode == "P" and fmt in {"PNG", "BMP", "TIFF"}:
        # Back to a palette (mode kept); RGBA needs the octree quantiser.
        method = Image.Quantize.FASTOCTREE if im.mode == "RGBA" else Image.Quantize.MEDIANCUT
        return im.quantize(256, method=method, dither=Image.Dither.NONE)
    return im


def _luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2, as Pillow's convert("L"); exact for R == G == B, so gray round trips are lossless.
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.rint(luma)


def _flatten_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.rint(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _encode_deep_colour(photo: Photo, fmt: str) -> bytes:
    """16-bit colour through OpenCV (Pillow has no 16-bit RGB); EXIF/ICC chunks added for PNG."""
    import cv2

    gray = _luma(photo.pixels).astype(np.uint16) if photo.is_gray else None
    if gray is not None and photo.alpha is None:
        stacked = gray
    else:
        bgr = np.dstack([gray] * 3) if gray is not None else photo.pixels[..., ::-1]
        stacked = bgr if photo.alpha is None else np.dstack([bgr, photo.alpha.astype(np.uint16)])
    ok, buffer = cv2.imencode(".png" if fmt == "PNG" else ".tiff", np.ascontiguousarray(stacked))
    if not ok:
        raise OutputError(f"OpenCV could not encode a 16-bit {fmt}")
    data = buffer.tobytes()
    return _png_with_metadata(data, photo.exif, photo.icc_profile) if fmt == "PNG" else data


def _png_with_metadata(png: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert iCCP and eXIf chunks right after IHDR (both must precede the image data)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    extra = b""
    if icc:
        extra += chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if exif:
        extra += chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR header, body, CRC
    return png[:ihdr_end] + extra + png[ihdr_end:]


# ------------------------------------------------------------------------------- tensors (the edge)


def to_tensor(crops: Sequence[np.ndarray] | np.ndarray, device: Any = "cpu") -> torch.Tensor:
    """uint8 HWC RGB crops (all S x S) -> float32 ``[N,3,S,S]`` in ``[-1, 1]`` (x / 127.5 - 1)."""
    import torch

    batch = np.stack([to_uint8(np.asarray(c)) for c in crops]) if not isinstance(crops, np.ndarray) else crops
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[3] != 3:
        raise ValueError(f"expected HWC RGB crops, got shape {batch.shape}")
    t = torch.from_numpy(np.ascontiguousarray(to_uint8(batch))).to(device).permute(0, 3, 1, 2)
    return t.float().div_(127.5).sub_(1.0).contiguous()


def from_tensor(t: torch.Tensor) -> list[np.ndarray]:
    """float ``[N,3,S,S]`` in ``[-1, 1]`` (tanh output) -> list of uint8 HWC RGB (clamped, rounded)."""
    import torch

    if t.ndim == 3:
        t = t.unsqueeze(0)
    with torch.no_grad():
        u8 = ((t.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)
    array = u8.permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a) for a in array]
