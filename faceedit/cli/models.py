"""``faceedit models list | info | download | verify | import``.

Results go to stdout (plain aligned text, or one JSON document with --json); progress and messages to
stderr. ``list`` and ``info`` read only the registry and the cache folders: no torch, no network.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from faceedit import console

models_app = typer.Typer(
    help="List, inspect, download, verify and import model weights.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Never touch the network (also: HF_HUB_OFFLINE=1).")
]
FAN = "fan"  # face-alignment's landmark/detector weights: not a card, fetched by face.detect


def register(app: typer.Typer) -> None:
    """Add the ``models`` group to the root app."""
    from faceedit.cli.models_import import import_command

    models_app.command("import")(import_command)
    app.add_typer(models_app, name="models")


# ------------------------------------------------------------------------------------ list


@models_app.command("list")
def list_command(
    json_: JsonOption = False,
    cached: Annotated[bool, typer.Option("--cached", help="Only models that are downloaded.")] = False,
) -> None:
    """Every model faceedit knows: name, task, architecture, download size, attributes, source."""
    from faceedit import hub, registry

    rows = []
    for card in registry.list_cards():
        state = "import" if card.import_only else hub.cached_state(card)
        if cached and state not in ("yes", "raw"):
            continue
        rows.append((card, state))
    if json_:
        console.emit_json([_summary(card, state) for card, state in rows])
        return
    table = [("NAME", "TASK", "ARCH", "SIZE", "ATTRIBUTES", "SOURCE", "CACHED")]
    table += [
        (
            _name(card),
            card.task,
            f"{card.arch}/{card.variant}",
            _size(card),
            _attrs(card),
            _source(card),
            state,
        )
        for card, state in rows
    ]
    _print_table(table)
    if not rows:
        console.info("no model is cached yet: `faceedit models download NAME`")


def _summary(card: Any, state: str) -> dict[str, Any]:
    from faceedit import registry

    return {
        "name": card.name,
        "task": card.task,
        "default": registry.DEFAULTS.get(card.task) == card.name,
        "arch": card.arch,
        "variant": card.variant,
        "image_size": card.image_size,
        "download_mb": card.source.download_mb,
        "attributes": list(card.attributes),
        "source": card.source.kind,
        "repo_id": card.source.repo_id,
        "cached": state,
    }


def _name(card: Any) -> str:
    from faceedit import registry

    return card.name + (" *" if registry.DEFAULTS.get(card.task) == card.name else "")


def _size(card: Any) -> str:
    mb = card.source.download_mb
    if mb is None:
        return "-"
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


def _attrs(card: Any) -> str:
    expressions = len(card.conditioning.get("expressions", ()))
    more = f" + {expressions} expressions" if expressions else ""
    if not card.attributes:
        return f"{expressions} expressions" if expressions else "-"
    text = ",".join(card.attributes)
    room = 44 - len(more)
    return (text if len(text) <= room else f"{len(card.attributes)}: {text[: room - 8]}…") + more


def _source(card: Any) -> str:
    src = card.source
    kind = {
        "hub-upstream": "hub",
        "hub-tf": "hub (TF, ranged)",
        "hub-faceedit": "hub",
        "github-raw": "github",
    }
    kind = kind.get(src.kind)
    return f"{kind}: {src.repo_id}" if kind else "import (see models info)"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        console.emit("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# ------------------------------------------------------------------------------------ info


@models_app.command("info")
def info_command(
    name: Annotated[str, typer.Argument(help="Model name (see `faceedit models list`).")],
    json_: JsonOption = False,
) -> None:
    """Everything on a model card: inputs, attributes, licences, where the weights come from, cache."""
    from faceedit import hub

    card = hub.card_for(name)
    state = "import" if card.import_only else hub.cached_state(card)
    folder = str(hub.converted_dir(card.name)) if state == "yes" else None
    if json_:
        console.emit_json({**card.to_dict(), "cached": state, "folder": folder})
        return
    src, lic = card.source, card.licences
    lines = [
        ("name", card.name),
        ("task", card.task),
        ("architecture", f"{card.arch} ({card.variant})  {dict(card.generator_kwargs)}"),
        ("input", f"{card.image_size}x{card.image_size}, crop {card.template}, {card.resize} resize"),
        ("attributes", ", ".join(card.attributes) or "- (image-to-image)"),
        ("conditioning", ", ".join(f"{k}={v}" for k, v in card.conditioning.items())),
        ("direction", card.direction or ""),
        ("classifier", "yes (official discriminator's head)" if card.classifier else "no: pass --source"),
        ("source", src.kind + (f"  {src.repo_id}" if src.repo_id else "")),
        (
            "revision",
            src.revision or ("first download's commit (ledger)" if src.kind.startswith("hub") else ""),
        ),
        ("files", ", ".join(_file_line(f) for f in src.files)),
        ("download", _size(card)),
        ("published at", src.url or ""),
        ("how to get it", src.instructions or f"faceedit models download {card.name}"),
        ("licence: code", lic.code),
        ("licence: weights", lic.weights),
        ("licence: data", lic.dataset),
        ("upstream", card.upstream),
        ("paper", card.paper),
        ("notes", card.notes),
        ("cached", state + (f"  {folder}" if folder else "")),
    ]
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        if value:
            console.emit(f"{key.ljust(width)}  {value}")


def _file_line(f: Any) -> str:
    pin = f"sha256 {f.sha256[:12]}…" if f.sha256 else "sha256 recorded on first download"
    pin = f"git blob {f.git_blob[:12]}…" if getattr(f, "git_blob", None) else pin
    return f"{f.path} ({f.role}; {pin})"


# ------------------------------------------------------------------------------------ download


@models_app.command("download")
def download_command(
    names: Annotated[list[str], typer.Argument(help="Model names, hf:ORG/REPO[@REV], or `fan`.")],
    force: Annotated[bool, typer.Option("--force", help="Download and convert again.")] = False,
    update: Annotated[
        bool, typer.Option("--update", help="Ask the hub for the newest commit of unpinned sources.")
    ] = False,
    offline: OfflineOption = False,
    json_: JsonOption = False,
) -> None:
    """Fetch, verify (sha256) and convert models now, so that later runs work offline."""
    from faceedit import hub

    results = []
    for name in names:
        if name == FAN:
            results.append(_download_fan(offline))
            continue
        console.info(f"{name}: resolving…")
        progress = False if json_ else None  # None: bars when stderr is a terminal
        resolved = hub.resolve(name, offline=offline, force=force, update=update, progress=progress)
        verb = "downloaded and verified" if resolved.downloaded else "already cached"
        console.info(f"{name}: {verb} ({resolved.verification})")
        results.append(
            {
                "name": name,
                "folder": str(resolved.folder),
                "verified": resolved.verified,
                "verification": resolved.verification,
                "downloaded": resolved.downloaded,
            }
        )
    if json_:
        console.emit_json(results)
    else:
        for result in results:
            console.emit(f"{result['name']}\t{result['folder']}")


def _download_fan(offline: bool) -> dict[str, Any]:
    """face-alignment's weights, through the face pipeline's own fetcher (it knows their URLs)."""
    from faceedit.errors import ModelUnavailableError

    try:
        from faceedit.face.detect import fetch_fan_weights
    except ImportError as e:
        raise ModelUnavailableError(
            "this build cannot prefetch face-alignment's weights",
            "they are downloaded on first use of the fan detector",
        ) from e
    if offline:
        raise ModelUnavailableError("`fan` is downloaded from face-alignment's servers", "drop --offline")
    paths = fetch_fan_weights(progress=console.progress_enabled())
    return {
        "name": FAN,
        "folder": ", ".join(str(p) for p in paths),
        "verified": False,
        "verification": "face-alignment's own download",
        "downloaded": True,
    }


# ------------------------------------------------------------------------------------ verify


@models_app.command("verify")
def verify_command(
    name: Annotated[str | None, typer.Argument(help="One model (default: everything cached).")] = None,
    json_: JsonOption = False,
) -> None:
    """Re-hash cached downloads and converted models offline; a mismatch is deleted and exits 4."""
    from faceedit import hub
    from faceedit.errors import CheckpointError

    checks = hub.verify(name)
    if json_:
        console.emit_json([check.__dict__ for check in checks])
    else:
        for check in checks:
            removed = "  (deleted)" if check.removed else ""
            console.emit(f"{check.status:<8}  {check.model}  {check.item}  [{check.against}]{removed}")
    if not checks:
        console.info("nothing cached to verify" + (f" for {name}" if name else ""))
    bad = [c for c in checks if c.status == "mismatch"]
    if bad:
        raise CheckpointError(
            f"{len(bad)} cached file(s) failed verification and were deleted",
            f"run `faceedit models download {name or 'NAME'} --force`",
        )
