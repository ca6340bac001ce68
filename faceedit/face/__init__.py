"""Faces in photos: find them (``detect``), crop them as a model was trained (``align``), paste them
back (``blend``).

Use the submodules (``from faceedit.face import detect, align, blend``); importing this package is light:
OpenCV, torch and the detectors load inside the functions that use them.
"""

from faceedit.face.detect import Face

__all__ = ["Face"]
