"""Per-code-base hooks of the PyTorch importer skeleton (:mod:`faceedit.convert.torch_import`): where each
official repository keeps its files, what wraps its generator, how its discriminator and side files complete
the config. Key maps stay beside each model in ``models/<arch>.py``; facts come from :mod:`faceedit.specs`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from faceedit import specs
from faceedit.convert import torch_files as files
from faceedit.convert.torch_import import ArchHooks, DReader, Job, attributes, image_size
from faceedit.errors import CheckpointError, UsageError

log = logging.getLogger("faceedit")


def _spec_keywords(spec: specs.ArchSpec, **changes: Any) -> dict[str, Any]:
    """make_config keywords of an official model as :mod:`faceedit.specs` states it."""
    keywords = {"template": spec.template, "resize": spec.resize, "conditioning": spec.conditioning()}
    return {**keywords, **changes}


class StarGAN(ArchHooks):
    """yunjey/stargan: ``<iter>-G.ckpt`` (bare state dict) with ``<iter>-D.ckpt`` beside it; the labels
    are CelebA attributes, RaFD expressions or both (split by :func:`expressions.resolve_layout`)."""

    arch, attr_kwarg = "stargan", "c_dim"

    def find(self, path: Path, job: Job) -> Path:
        return files.stargan_file(path)

    def generator_object(self, job: Job) -> tuple[Any, tuple]:
        wrapped = files.wrapped_state(job.obj) is not None
        job.extra["source_format"] = "hub {'state_dict'} wrapper" if wrapped else "bare state dict"
        return super().generator_object(job)

    def discriminator(self, job: Job) -> tuple[Path | None, DReader | None]:
        return files.stargan_d_beside(job.path), _stargan_d(job.kwargs["c_dim"])

    def config(self, job: Job) -> dict[str, Any]:
        from faceedit import expressions

        size = image_size(job, specs.arch_spec(self.arch).image_size)
        channels = job.kwargs.pop("c_dim")
        classes = job.c_kwargs.pop("classes") if job.c_kwargs is not None else None
        n_attrs = len(job.ov["attrs"]) if "attrs" in job.ov else None
        dataset, count = expressions.resolve_layout(channels, classes, job.ov.get("dataset"), n_attrs)
        spec = specs.arch_spec(self.arch, labels=dataset)
        for target in (job.kwargs, job.c_kwargs) if job.c_kwargs is not None else (job.kwargs,):
            target.update(c_dim=count, c2_dim=len(spec.expressions))
        names = attributes(self.arch, count, job.ov) if count else []
        return _spec_keywords(spec, attributes=names, image_size=size)


def _stargan_d(channels: int) -> DReader:
    """Reader of a D for a G with ``channels`` label inputs: D predicts as many classes (CelebA or RaFD)
    or two fewer (CelebA + RaFD: G also takes the mask); anything else is another model's D."""

    def read(d_obj: Any) -> tuple[dict, dict]:
        from faceedit.models import stargan

        c_state = stargan.classifier_state(d_obj)
        kwargs = stargan.classifier_kwargs(c_state)
        kwargs["classes"] = classes = kwargs.pop("c_dim")  # split by the label layout in StarGAN.config
        fits = [channels] + ([channels - 2] if channels > 10 else [])
        if classes not in fits:
            raise CheckpointError(
                f"the discriminator predicts {classes} classes, the generator takes {channels} labels "
                f"(expected {' or '.join(map(str, fits))})"
            )
        return c_state, kwargs

    return read


# setting.txt name -> generator argument
_ATTGAN_SETTING = {
    "enc_dim": "enc_dim", "enc_layers": "enc_layers", "enc_norm": "enc_norm_fn", "enc_acti": "enc_acti_fn",
    "dec_dim": "dec_dim", "dec_layers": "dec_layers", "dec_norm": "dec_norm_fn", "dec_acti": "dec_acti_fn",
    "n_attrs": "n_attrs", "shortcut_layers": "shortcut_layers", "inject_layers": "inject_layers",
    "img_size": "img_size",
}  # fmt: skip
# setting.txt name -> discriminator (classifier) argument
_ATTGAN_D_SETTING = {
    "dis_dim": "dim", "dis_norm": "norm_fn", "dis_acti": "acti_fn", "dis_fc_dim": "fc_dim",
    "dis_fc_norm": "fc_norm_fn", "dis_fc_acti": "fc_acti_fn", "dis_layers": "n_layers",
}  # fmt: skip


class AttGAN(ArchHooks):
    """elvisyjlin/AttGAN-PyTorch: ``checkpoint/weights.<epoch>.pth`` ({'G'} or {'G', 'D', optimizers})
    and the run's ``setting.txt`` (sizes, attribute names, thres_int, data set)."""

    arch, attr_kwarg = "attgan", "n_attrs"

    def __init__(self) -> None:
        self.setting: dict = {}

    def find(self, path: Path, job: Job) -> Path:
        path, setting_path = files.attgan_files(path)
        self.setting = files.read_setting(setting_path)
        job.extra["setting_file"] = setting_path.name if setting_path else None
        return path

    def generator_object(self, job: Job) -> tuple[Any, tuple]:
        if not isinstance(job.obj, Mapping) or not isinstance(job.obj.get("G"), Mapping):
            raise files.wrong_file(self.arch, job.path, job.obj)
        return job.obj["G"], ()

    def adjust(self, job: Job) -> None:
        setting = self.setting
        job.kwargs.update({arg: setting[key] for key, arg in _ATTGAN_SETTING.items() if key in setting})
        # The generator only uses img_size for its label tile, which we size from the features anyway.
        job.kwargs["img_size"] = job.ov.get("image_size") or job.kwargs.get("img_size", 128)
        job.attrs = attributes(self.arch, job.kwargs["n_attrs"], job.ov, setting.get("attrs"))

    def discriminator(self, job: Job) -> tuple[Path | None, DReader | None]:
        # The optional save() format {'G', 'D', 'optim_G', 'optim_D'} carries D in the same file.
        return (job.path if isinstance(job.obj.get("D"), Mapping) else None), self._read_d

    def _read_d(self, d_obj: Any) -> tuple[dict, dict]:
        from faceedit.models import attgan

        d_state = d_obj["D"] if isinstance(d_obj.get("D"), Mapping) else d_obj  # {'G','D',...} or bare D
        c_state = attgan.classifier_state(d_state)
        c_kwargs = attgan.classifier_kwargs(c_state)
        c_kwargs.update({arg: self.setting[k] for k, arg in _ATTGAN_D_SETTING.items() if k in self.setting})
        return c_state, c_kwargs

    def config(self, job: Job) -> dict[str, Any]:
        spec = specs.arch_spec(self.arch)
        if job.c_kwargs is not None:
            job.c_kwargs["img_size"] = job.kwargs["img_size"]
        template = spec.template
        if str(self.setting.get("data", "")).lower() == "celeba-hq":
            # CelebA-HQ models saw whole aligned CelebA-HQ faces; ffhq is the closest crop we have.
            log.warning("CelebA-HQ model: using the ffhq crop template (closest to CelebA-HQ's alignment)")
            template = "ffhq"
        return _spec_keywords(
            spec,
            attributes=job.attrs,
            image_size=job.kwargs["img_size"],
            template=template,
            conditioning=spec.conditioning(float(self.setting.get("thres_int", 0.5))),
        )


class STGAN(ArchHooks):
    """bluestyle97/STGAN-pytorch: ``checkpoints/G_<iter>.pth.tar`` ({'state_dict', 'optimizer'}) with
    ``D_<iter>.pth.tar`` beside it."""

    arch, attr_kwarg = "stgan", "attr_dim"

    def find(self, path: Path, job: Job) -> Path:
        return files.stgan_file(path)

    def discriminator(self, job: Job) -> tuple[Path | None, DReader | None]:
        return files.stgan_d_beside(job.path), self._read_d

    def _read_d(self, d_obj: Any) -> tuple[dict, dict]:
        from faceedit.models import stgan

        c_state = stgan.classifier_state(d_obj)
        return c_state, stgan.classifier_kwargs(c_state)

    def config(self, job: Job) -> dict[str, Any]:
        spec = specs.arch_spec(self.arch)
        size = image_size(job, spec.image_size)
        names = attributes(self.arch, job.kwargs["attr_dim"], job.ov)
        return _spec_keywords(spec, attributes=names, image_size=size)


class UGATIT(ArchHooks):
    """znxlwm/UGATIT-pytorch: ``<dataset>_params_<step>.pt`` holding both generators and the four
    discriminators; one direction is imported, without a classifier."""

    arch = "ugatit"

    def find(self, path: Path, job: Job) -> Path:
        return files.ugatit_file(path)

    def generator_object(self, job: Job) -> tuple[Any, tuple]:
        direction = job.ov.get("direction", "A2B")
        if not isinstance(job.obj, Mapping) or f"gen{direction}" not in job.obj:
            raise files.wrong_file(self.arch, job.path, job.obj)
        job.extra["generator"] = f"gen{direction}"
        return job.obj, (direction,)

    def adjust(self, job: Job) -> None:
        size = job.ov.get("image_size")
        if size:
            if not job.kwargs["light"] and size != job.kwargs["img_size"]:
                raise UsageError(
                    f"this full U-GAT-IT model only runs at {job.kwargs['img_size']} px",
                    "drop --image-size (only light models run at other sizes)",
                )
            job.kwargs["img_size"] = size

    def config(self, job: Job) -> dict[str, Any]:
        spec = specs.arch_spec(self.arch)
        direction = job.ov.get("direction", "A2B")
        return _spec_keywords(spec, attributes=[], image_size=job.kwargs["img_size"], direction=direction)


HOOKS: dict[str, type[ArchHooks]] = {"stargan": StarGAN, "attgan": AttGAN, "stgan": STGAN, "ugatit": UGATIT}
