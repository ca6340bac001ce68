"""The one importer skeleton for official PyTorch checkpoints (find file -> read -> key map -> kwargs ->
discriminator/classifier -> config -> assemble), driven by an :class:`ArchHooks` per code base
(``convert/torch_archs.py``). Nothing is written: ``faceedit models import`` saves the result.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceedit import __version__, specs
from faceedit.convert.torch_files import (
    EXPECTED,
    expect,
    is_tensor_dict,
    read_torch_file,
    sha256_of,
    wrapped_state,
    wrong_file,
)
from faceedit.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from types import ModuleType

    from faceedit.models import FaceModel

log = logging.getLogger("faceedit")

DReader = Callable[[Any], tuple[dict, dict]]  # D file's object -> (classifier state, classifier kwargs)


@dataclass
class Job:
    """One import in progress: what the skeleton and the hooks have found so far."""

    path: Path  # the generator file
    ov: dict[str, Any]  # checked overrides (see upstream.import_checkpoint)
    obj: Any = None  # the loaded file
    state: dict = field(default_factory=dict)  # generator state dict, our keys
    kwargs: dict = field(default_factory=dict)  # generator constructor arguments
    c_state: dict | None = None
    c_kwargs: dict | None = None
    extra: dict = field(default_factory=dict)  # provenance beyond file, sha256 and upstream
    attrs: list[str] | None = None  # label names, when a hook settles them before the D (AttGAN)


class ArchHooks(ABC):
    """What differs between the official code bases; the defaults fit a generator saved as a state dict
    (bare or in ``{'state_dict': ...}``) with no discriminator. One instance per import."""

    arch: str = ""
    attr_kwarg: str = ""  # the generator argument that counts the labels ("" : none)

    def model(self) -> ModuleType:
        import importlib

        return importlib.import_module(f"faceedit.models.{self.arch}")

    @abstractmethod
    def find(self, path: Path, job: Job) -> Path:
        """The generator file of ``path`` (a file or a training run's folder)."""
        raise NotImplementedError

    def generator_object(self, job: Job) -> tuple[Any, tuple]:
        """(what the model's ``generator_state`` maps, its extra arguments) from the loaded file;
        anything but a dict of tensors is the wrong file."""
        raw = wrapped_state(job.obj)
        raw = job.obj if raw is None else raw
        if not is_tensor_dict(raw):
            raise wrong_file(self.arch, job.path, job.obj)
        return raw, ()

    def adjust(self, job: Job) -> None:
        """Complete ``job.kwargs`` from options and side files once the weights are mapped."""
        return None  # most code bases store everything the generator needs in its weights

    def discriminator(self, job: Job) -> tuple[Path | None, DReader | None]:
        """(D file found beside the generator or None, its reader or None when the model has no D)."""
        return None, None

    @abstractmethod
    def config(self, job: Job) -> dict[str, Any]:
        """``models.make_config`` keywords: attributes, image_size, template, resize, conditioning, ..."""
        raise NotImplementedError


def run(hooks: ArchHooks, path: Path, ov: dict[str, Any]) -> FaceModel:
    """The skeleton: every official PyTorch importer is these steps with ``hooks`` filling the gaps."""
    from faceedit import models

    arch, model = hooks.arch, hooks.model()
    job = Job(path=path, ov=ov)
    job.path = hooks.find(path, job)
    job.obj = read_torch_file(job.path)
    expect(arch, job.path, job.obj)
    raw, args = hooks.generator_object(job)
    job.state = key_map(model.generator_state, arch, job.path, raw, *args)
    job.kwargs = key_map(model.generator_kwargs, arch, job.path, job.state)
    hooks.adjust(job)
    _classifier(hooks, job)
    keywords = hooks.config(job)
    provenance = _provenance(job.path, model.UPSTREAM, job.extra)
    config = models.make_config(
        arch, job.kwargs, classifier_kwargs=job.c_kwargs, provenance=provenance, **keywords
    )
    return assemble(config, job.state, job.c_state, job.path)


def _classifier(hooks: ArchHooks, job: Job) -> None:
    """The classifier from the D file (``--discriminator``, else the one beside G), if the model has one."""
    beside, reader = hooks.discriminator(job)
    if reader is None:
        return
    n_attrs = len(job.attrs) if job.attrs is not None else job.kwargs[hooks.attr_kwarg]
    explicit = job.ov.get("discriminator")
    job.c_state, job.c_kwargs, d_extra = read_discriminator(hooks, explicit, beside, reader, n_attrs)
    job.extra = {**d_extra, **job.extra}  # D's provenance first, then what the hooks noted


def key_map(fn: Callable[..., dict], arch: str, path: Path, obj: Any, *args: Any) -> dict:
    """``fn(obj, *args)`` (a key map beside the model) with its failures in one line naming the file."""
    from faceedit.models.layers import KeyMapError

    try:
        return fn(obj, *args)
    except KeyMapError as e:
        raise CheckpointError(f"{path.name}: {e}", f"pass {EXPECTED[arch]}") from e
    except (KeyError, AttributeError, TypeError) as e:
        raise wrong_file(arch, path, obj) from e


def read_discriminator(
    hooks: ArchHooks, explicit: Path | None, beside: Path | None, read: DReader, n_attrs: int
) -> tuple[dict | None, dict | None, dict]:
    """(classifier state, classifier kwargs, provenance) from a discriminator file.

    An ``explicit`` file (``discriminator=``) must be usable; one merely found ``beside`` the generator
    is skipped with a warning when it is not (the generator alone is still a complete model).
    """
    path = explicit or beside
    if path is None or (explicit is None and not path.is_file()):
        return None, None, {}
    try:
        obj = read_torch_file(path)
        obj = wrapped_state(obj) or obj  # STGAN's D_<iter>.pth.tar and the hub copies' {"state_dict": D}
        state, kwargs = key_map(read, hooks.arch, path, obj)
        count = kwargs.get(hooks.attr_kwarg, n_attrs)
        if count != n_attrs:
            raise CheckpointError(f"{path.name} predicts {count} attributes, the generator takes {n_attrs}")
    except (CheckpointError, UsageError) as e:
        if explicit is not None:
            raise
        log.warning("no attribute classifier: ignoring %s (%s)", path.name, e.message)
        return None, None, {}
    return state, kwargs, {"classifier_source_file": path.name, "classifier_source_sha256": sha256_of(path)}


def attributes(arch: str, count: int, ov: dict, from_files: list[str] | None = None) -> list[str]:
    """Label names in training order: ``--attrs``, else names stored beside the weights, else the
    official default list of that length (:mod:`faceedit.specs`); UsageError when none fits."""
    if "attrs" in ov:
        names = ov["attrs"]
        if len(names) != count:
            raise UsageError(
                f"the checkpoint has {count} attributes but --attrs lists {len(names)}",
                "list the names in training order, comma-separated",
            )
        return names
    if from_files is not None and len(from_files) == count:
        return list(from_files)
    defaults = [s.attributes for (a, _), s in specs.SPECS.items() if a == arch and len(s.attributes) == count]
    if defaults:
        return list(defaults[0])
    raise UsageError(
        f"the checkpoint was trained with {count} attributes and their names are not stored in it",
        "pass --attrs with the names in training order, comma-separated",
    )


def image_size(job: Job, default: int) -> int:
    """``--image-size``, else the discriminator's (it is built for one size), else ``default``."""
    size = job.ov.get("image_size") or (job.c_kwargs["image_size"] if job.c_kwargs else None)
    if job.c_kwargs is not None and size != job.c_kwargs["image_size"]:
        raise UsageError(
            f"--image-size {size} contradicts the discriminator, built for {job.c_kwargs['image_size']}"
        )
    return size or default


def _provenance(path: Path, upstream: str, extra: dict | None = None) -> dict:
    return {
        "source_file": path.name,
        "source_sha256": sha256_of(path),
        "upstream": upstream,
        "created_by": f"faceedit {__version__}",
        **(extra or {}),
    }


def assemble(config: dict, g_state: dict, c_state: dict | None, source: Path) -> FaceModel:
    """Build the model of ``config`` empty and load the mapped weights strictly; eval mode."""
    from faceedit import models
    from faceedit.models.layers import as_float32

    model = models.build(config, empty=True)
    models.load_weights(model.generator, as_float32(g_state), f"{source.name} (generator)")
    if model.classifier is not None:
        d_name = config["provenance"].get("classifier_source_file", source.name)
        models.load_weights(model.classifier, as_float32(c_state or {}), f"{d_name} (discriminator)")
    model.generator.eval()
    if model.classifier is not None:
        model.classifier.eval()
    return model
