"""Attribute semantics of every model: the CelebA vocabulary, exclusive groups and conflict rules, the
frozen ``EditSpec`` and its parsing, and ``encode`` (EditSpec + source labels -> generator conditioning
[N,A] per scheme). numpy only, so the CLI stays fast; these rules live nowhere else.
"""

from __future__ import annotations

import difflib
import importlib
import math
import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from faceedit import specs
from faceedit.errors import CheckpointError, UsageError

# --- vocabulary --------------------------------------------------------------------------------------

# The vocabularies and official attribute lists live in the facts table (re-exported here).
CELEBA_ATTRIBUTES = specs.CELEBA_ATTRIBUTES
STARGAN_ATTRIBUTES = specs.STARGAN_ATTRIBUTES
STGAN_PORT_ATTRIBUTES = specs.STGAN_PORT_ATTRIBUTES
ATTGAN_ATTRIBUTES = specs.ATTGAN_ATTRIBUTES
DEFAULT_ATTRIBUTES: dict[tuple[str, str], tuple[str, ...]] = {
    key: s.attributes for key, s in specs.SPECS.items()
}

HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
# At most one member of a group can be the target (StarGAN/STGAN-port create_labels; AttGAN rules too).
EXCLUSIVE_GROUPS: tuple[tuple[str, ...], ...] = (HAIR_COLOURS,)

# --- conflict rules: "when X becomes 1, these become 0" ------------------------------------------------

Rules = Mapping[str, tuple[str, ...]]


def _one_hot(group: Sequence[str]) -> dict[str, tuple[str, ...]]:
    return {name: tuple(other for other in group if other != name) for name in group}


# StarGAN / STGAN-port create_labels: a hair colour switches the others off; nothing else interacts.
HAIR_RULES: Rules = _one_hot(HAIR_COLOURS)
# AttGAN-Tensorflow check_attribute_conflict (the Mustache/No_Beard pair is commented out there since
# Dec 2018); the official TF STGAN uses the same function.
TF_RULES: Rules = {
    "Bald": ("Bangs",),
    "Receding_Hairline": ("Bangs",),
    "Bangs": ("Bald", "Receding_Hairline"),
    **HAIR_RULES,
    **_one_hot(("Straight_Hair", "Wavy_Hair")),
}
# elvisyjlin/AttGAN-PyTorch keeps the Mustache/No_Beard pair.
PORT_RULES: Rules = {**TF_RULES, **_one_hot(("Mustache", "No_Beard"))}

# --- conditioning block of config.json ---------------------------------------------------------------

Scheme = Literal["stargan", "attgan", "stgan", "none"]
SCHEMES: tuple[str, ...] = ("stargan", "attgan", "stgan", "none")


@dataclass(frozen=True)
class Conditioning:
    """The ``conditioning`` block of a model's config.json, validated (missing keys take defaults)."""

    scheme: Scheme
    thres_int: float = 0.5
    rules: Literal["port", "tf"] = "port"

    @property
    def clears(self) -> Rules:
        """Conflict rules this model's official test code applies."""
        if self.scheme == "attgan" or (self.scheme == "stgan" and self.rules == "tf"):
            return PORT_RULES if self.rules == "port" else TF_RULES
        return HAIR_RULES if self.scheme in ("stargan", "stgan") else {}

    @property
    def one_hot_toggle(self) -> bool:
        """True where the official per-attribute test *sets* a hair colour instead of inverting it."""
        return self.scheme == "stargan" or (self.scheme == "stgan" and self.rules == "port")

    @property
    def has_slider(self) -> bool:
        """The official code has a slider that sets the edited entry (AttGAN test_slide, TF STGAN)."""
        return self.scheme == "attgan" or (self.scheme == "stgan" and self.rules == "tf")


def parse_conditioning(conditioning: Mapping[str, Any] | Conditioning) -> Conditioning:
    """Validate a config.json ``conditioning`` dict; CheckpointError when it cannot be a real model's."""
    if isinstance(conditioning, Conditioning):
        return conditioning
    hint = "the model's config.json is damaged or from a newer faceedit; re-export or re-import it"
    scheme = conditioning.get("scheme")
    if scheme not in SCHEMES:
        raise CheckpointError(f"config.json conditioning.scheme {scheme!r} is not one of {SCHEMES}", hint)
    rules = conditioning.get("rules", "port")
    thres = conditioning.get("thres_int", 0.5)
    if rules not in ("port", "tf"):
        raise CheckpointError(f"config.json conditioning.rules {rules!r} is not 'port' or 'tf'", hint)
    if isinstance(thres, bool) or not isinstance(thres, numbers.Real) or not 0 < thres < math.inf:
        raise CheckpointError(f"config.json conditioning.thres_int {thres!r} is not a positive number", hint)
    return Conditioning(scheme, float(thres), rules)


def default_conditioning(arch: str, variant: str = "port") -> dict[str, Any]:
    """The conditioning block for an official model: ``default_conditioning("stgan", "tf")``."""
    return specs.arch_spec(arch, variant).conditioning()


# --- attribute names -----------------------------------------------------------------------------------


def normalize(name: str) -> str:
    """Matching key: case-insensitive, and '-', ' ' and '_' are the same (``blond-hair`` = Blond_Hair)."""
    return re.sub(r"[\s_\-]+", "_", name.strip()).strip("_").lower()


def _lookup(name: str, known: Sequence[str]) -> list[str]:
    """Exact (normalized) match, else every attribute the name is a prefix of (3+ characters)."""
    key = normalize(name)
    exact = [k for k in known if normalize(k) == key]
    if exact or len(key) < 3:
        return exact
    return [k for k in known if normalize(k).startswith(key)]


def resolve(name: str, attributes: Sequence[str], model: str = "this model") -> str:
    """The model's spelling of ``name``; UsageError (exit 2) that lists what the model knows otherwise.

    ``blond`` and ``BLOND-HAIR`` both give Blond_Hair; an abbreviation must be unambiguous.
    """
    found = _lookup(name, attributes)
    if len(found) == 1:
        return found[0]
    known = ", ".join(attributes) if attributes else "none"
    if found:
        raise UsageError(
            f"attribute {name!r} is ambiguous for {model}: it matches {', '.join(found)}",
            "write more of the name",
        )
    celeba = _lookup(name, CELEBA_ATTRIBUTES)
    if len(celeba) == 1:
        raise UsageError(
            f"{model} was not trained on the CelebA attribute {celeba[0]}; it knows: {known}",
            "pick one of those, or a model trained with that attribute (faceedit models list)",
        )
    keys = {normalize(k): k for k in attributes}
    close = [keys[k] for k in difflib.get_close_matches(normalize(name), keys, n=3, cutoff=0.6)]
    hint = (
        f"did you mean {' or '.join(close)}?" if close else "names are case-insensitive; abbreviations work"
    )
    raise UsageError(f"unknown attribute {name!r} for {model}; it knows: {known}", hint)


# --- what the user asks for ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EditSpec:
    """One edit request, the same for every face of a batch.

    ``add``/``remove`` set an attribute on/off; ``toggle`` is the official per-attribute test edit
    (invert; StarGAN/STGAN-port switch *to* a hair colour). ``intensity`` scales every edit,
    ``intensities`` overrides it per attribute (``--add Blond_Hair=0.8``). ``slide`` (AttGAN and TF
    STGAN only) sets the edited entries to ±intensity with no conflict rules (official test_slide).
    ``expression`` (StarGAN on RaFD or both datasets) is the target expression; see faceedit.expressions.
    """

    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    toggle: tuple[str, ...] = ()
    intensity: float = 1.0
    intensities: tuple[tuple[str, float], ...] = ()
    slide: bool = False
    expression: str | None = None

    def __post_init__(self) -> None:
        for name in ("add", "remove", "toggle", "intensities"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_number("--intensity", self.intensity)
        option_of: dict[str, str] = {}
        for option, names in (("--add", self.add), ("--remove", self.remove), ("--toggle", self.toggle)):
            for name in names:
                if option_of.setdefault(normalize(name), option) != option:
                    raise UsageError(
                        f"{name} is given to both {option_of[normalize(name)]} and {option}",
                        "ask for each attribute once",
                    )
        value_of: dict[str, float] = {}
        for name, value in self.intensities:
            _check_number(f"intensity of {name}", value)
            if normalize(name) not in option_of:
                raise UsageError(f"an intensity is given for {name}, which is not edited")
            if value_of.setdefault(normalize(name), value) != value:
                raise UsageError(f"{name} is given two intensities", "give one NAME=INTENSITY per attribute")
        if self.slide and self.toggle:
            raise UsageError("--toggle cannot be combined with slider mode", "use --add or --remove")

    @property
    def edits(self) -> tuple[tuple[str, str], ...]:
        """(name, "add"|"remove"|"toggle") in a fixed order, duplicates dropped."""
        ops = [(n, "toggle") for n in self.toggle] + [(n, "remove") for n in self.remove]
        ops += [(n, "add") for n in self.add]
        return tuple(dict.fromkeys(ops))

    def strength(self, name: str) -> float:
        """The intensity that applies to ``name`` (its override, else the global one)."""
        key = normalize(name)
        return next((v for n, v in self.intensities if normalize(n) == key), self.intensity)

    def with_intensity(self, value: float) -> EditSpec:
        """The same edit at another global intensity (per-attribute overrides are kept)."""
        return replace(self, intensity=value)

    def describe(self) -> str:
        """Short label for grids and logs: ``+Blond_Hair -Male @0.8`` (``reconstruction`` if empty)."""
        sign = {"add": "+", "remove": "-", "toggle": "~"}
        parts = [sign[kind] + name for name, kind in self.edits]
        parts += [f"{name}@{value:g}" for name, value in self.intensities]
        parts += [self.expression] if self.expression else []
        if self.intensity != 1.0 or self.slide:
            parts.append(("slide " if self.slide else "@") + f"{self.intensity:g}")
        return " ".join(parts) if self.edits or self.expression else "reconstruction"


def _check_number(what: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, got {value!r}")


def parse_items(values: Iterable[str]) -> list[tuple[str, float | None]]:
    """``["Blond_Hair,male=0.5", "Young"]`` -> [("Blond_Hair", None), ("male", 0.5), ("Young", None)]."""
    items: list[tuple[str, float | None]] = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, _, number = part.partition("=")
            if not name.strip():
                raise UsageError(f"{part!r} names no attribute", "write NAME or NAME=INTENSITY")
            items.append((name.strip(), _parse_float(number, part) if number else None))
    return items


def _parse_float(text: str, context: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(
            f"{text!r} in {context!r} is not a number", "write NAME=INTENSITY, e.g. Male=0.5"
        ) from None
    _check_number(f"intensity in {context!r}", value)
    return value


def parse_edit(
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    intensity: float = 1.0,
    *,
    toggle: Iterable[str] = (),
    slide: bool = False,
    expression: str | None = None,
) -> EditSpec:
    """Build an EditSpec from CLI option values (comma lists, repeated options, ``NAME=INTENSITY``)."""
    names: dict[str, list[str]] = {}
    overrides: list[tuple[str, float]] = []
    for option, values in (("add", add), ("remove", remove), ("toggle", toggle)):
        names[option] = []
        for name, value in parse_items(values):
            names[option].append(name)
            if value is not None:
                overrides.append((name, value))
    return EditSpec(
        tuple(names["add"]),
        tuple(names["remove"]),
        tuple(names["toggle"]),
        intensity,
        tuple(overrides),
        slide,
        expression,
    )


def check(
    attributes: Sequence[str],
    spec: EditSpec,
    conditioning: Mapping[str, Any] | Conditioning | None = None,
    *,
    model: str = "this model",
) -> EditSpec:
    """Resolve every name to the model's spelling; UsageError for unknown names and impossible combos.

    With ``conditioning`` it also rejects edits the scheme cannot do together (two hair colours; Bald
    with Bangs under AttGAN rules; ...), slider mode where the official code has none, and any edit for
    a model without attributes (U-GAT-IT). Returns the resolved spec (encode calls this itself).
    """
    cond = parse_conditioning(conditioning) if conditioning is not None else None
    if cond is not None and cond.scheme == "none" and spec.edits:
        raise UsageError(
            f"{model} has no attributes to edit", "drop --add/--remove (or use `faceedit anime`)"
        )
    resolved = {n: resolve(n, attributes, model) for n, _ in spec.edits}
    resolved.update({n: resolve(n, attributes, model) for n, _ in spec.intensities})
    out = EditSpec(
        tuple(dict.fromkeys(resolved[n] for n in spec.add)),
        tuple(dict.fromkeys(resolved[n] for n in spec.remove)),
        tuple(dict.fromkeys(resolved[n] for n in spec.toggle)),
        spec.intensity,
        tuple(dict.fromkeys((resolved[n], v) for n, v in spec.intensities)),
        spec.slide,
        spec.expression,
    )
    if cond is not None:
        _check_scheme(out, cond, model)
    return out


def _check_scheme(spec: EditSpec, cond: Conditioning, model: str) -> None:
    if spec.slide and not cond.has_slider:
        raise UsageError(
            f"slider mode needs an AttGAN or TF STGAN model, not {model} ({cond.scheme}, {cond.rules})",
            "use --intensity instead",
        )
    if spec.slide:
        return  # the official sliders apply no conflict rules
    turned_on = [name for name, kind in spec.edits if kind != "remove"]
    for name in turned_on:
        clash = [other for other in turned_on if other in cond.clears.get(name, ())]
        if clash:
            raise UsageError(
                f"{name} and {clash[0]} cannot both be turned on: for {model} turning on {name} turns "
                f"{clash[0]} off",
                "edit them in two runs, or pick one",
            )


# --- conditioning ------------------------------------------------------------------------------------


def _as_labels(source: np.ndarray, n_attributes: int) -> np.ndarray:
    labels = np.asarray(source, dtype=np.float64)
    if labels.ndim != 2 or labels.shape[1] != n_attributes:
        raise ValueError(f"source labels must be [N,{n_attributes}], got shape {labels.shape}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("source labels must be 0/1 (see labels_from_logits)")
    return labels


def _edit(
    cond: Conditioning, attributes: Sequence[str], source: np.ndarray, spec: EditSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 targets [N,A], per-column intensity [A] (of the edit that changed it), edited-column mask [A]."""
    index = {name: i for i, name in enumerate(attributes)}
    target = source.copy()
    strength = np.full(len(attributes), float(spec.intensity))
    edited = np.zeros(len(attributes), dtype=bool)
    for name, kind in spec.edits:
        i = index[name]
        if kind == "toggle" and not (cond.one_hot_toggle and name in HAIR_COLOURS):
            target[:, i] = 1.0 - source[:, i]
        else:
            target[:, i] = 0.0 if kind == "remove" else 1.0
        turned_on = target[:, i] == 1.0
        for other in () if spec.slide else cond.clears.get(name, ()):
            if other in index:
                target[turned_on, index[other]] = 0.0
                strength[index[other]] = spec.strength(name)
    for name, _ in spec.edits:  # an explicit edit's own intensity wins over a partner's
        strength[index[name]] = spec.strength(name)
        edited[index[name]] = True
    return target, strength, edited


def targets(
    conditioning: Mapping[str, Any] | Conditioning,
    attributes: Sequence[str],
    source: np.ndarray,
    spec: EditSpec,
) -> np.ndarray:
    """0/1 target labels [N,A] after the edit and the scheme's conflict rules (AttGAN ``att_b``)."""
    cond = parse_conditioning(conditioning)
    spec = check(attributes, spec, cond)
    return _edit(cond, attributes, _as_labels(source, len(attributes)), spec)[0].astype(np.float32)


def encode(
    conditioning: Mapping[str, Any] | Conditioning,
    attributes: Sequence[str],
    source: np.ndarray,
    spec: EditSpec,
) -> np.ndarray | None:
    """The conditioning vector fed to the generator, [N,A] float32 (None for U-GAT-IT).

    ``source`` [N,A] holds the faces' own 0/1 labels in ``attributes`` order. Per scheme:
    stargan: 0/1 labels, c = c_src + intensity·(c_trg − c_src) (1.0 = official create_labels);
    attgan: (c_trg·2−1)·thres_int with edited entries ±intensity (official test_int);
    stgan port: (c_trg − c_src)·intensity (1.0 = official test, 0.5 = its training samples);
    stgan tf: (c_trg·2−1)·thres_int with edited entries ×intensity, minus (c_src·2−1)·thres_int.
    """
    cond = parse_conditioning(conditioning)
    spec = check(attributes, spec, cond)
    if cond.scheme == "none":
        return None
    src = _as_labels(source, len(attributes))
    trg, strength, edited = _edit(cond, attributes, src, spec)
    if cond.scheme == "stargan":  # unchanged columns stay exactly 0/1; intensity 1 gives c_trg itself
        out = src + strength * (trg - src)
    elif cond.scheme == "attgan":
        out = _scaled_target(cond, trg, strength, edited, spec.slide, divide_by_thres=True)
    elif cond.rules == "port":
        out = (trg - src) * strength
    else:
        out = _scaled_target(cond, trg, strength, edited, spec.slide, divide_by_thres=False)
        out = out - _signed(src, cond.thres_int)
    return out.astype(np.float32)


def _signed(labels: np.ndarray, thres: float) -> np.ndarray:
    """0/1 -> ±thres_int in float32, as the official code computes it."""
    return (labels.astype(np.float32) * 2 - 1) * np.float32(thres)


def _scaled_target(
    cond: Conditioning,
    trg: np.ndarray,
    strength: np.ndarray,
    edited: np.ndarray,
    slide: bool,
    divide_by_thres: bool,
) -> np.ndarray:
    """Target [N,A] at ±thres_int; edited entries SET to ±intensity (slide) or scaled (official test).

    AttGAN test.py: ``x * test_int / thres_int`` (-> ±test_int); TF STGAN: ``x * test_int``.
    """
    out = _signed(trg, cond.thres_int)
    for j in np.flatnonzero(edited):
        if slide:
            out[:, j] = (trg[:, j] * 2 - 1) * strength[j]
        elif divide_by_thres:
            out[:, j] = out[:, j] * np.float32(strength[j]) / np.float32(cond.thres_int)
        else:
            out[:, j] = out[:, j] * np.float32(strength[j])
    return out


# Names that moved to faceedit.grids and faceedit.sources stay importable from here.
_MOVED = {
    **dict.fromkeys(("grid_specs", "grid", "sweep", "parse_sweep"), "grids"),
    **dict.fromkeys(("labels_from_logits", "SourceSpec", "parse_source", "source_labels"), "sources"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"faceedit.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
