"""Export formats a user takes away: spec JSON, diffusers folders, ONNX, safetensors.

Every check that can fail on the user's input runs before the first file is written; files are
written to a temporary name and moved into place, so a failed export leaves no partial file.
The ``diffusers`` and ``onnx`` exports carry a model card (``README.md``) and their metadata
(``export.json``): where the student comes from, its objectives and how it was written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanosd_nas.spaces._builder import BuiltModel, build
from nanosd_nas.spaces._diffusers_config import unet_config, vae_config
from nanosd_nas.spaces._errors import SpaceError
from nanosd_nas.spaces._export_card import (
    SD15_SCHEDULE,
    ExportSource,
    diffusers_model_index,
    model_card,
    model_index_json,
    onnx_model_index,
)
from nanosd_nas.spaces._export_options import OnnxOptions
from nanosd_nas.spaces._onnx_export import write_onnx
from nanosd_nas.spaces._spec import ArchSpec

FORMATS: tuple[str, ...] = ("spec", "diffusers", "onnx", "safetensors")
#: What ``export.json`` holds, in this version.
EXPORT_METADATA_VERSION = 1


@dataclass
class ExportResult:
    """What an export wrote, and what it checked.

    Attributes:
        format: the export format.
        files: paths written, relative to the output folder.
        checks: per component, the largest absolute difference between ONNX Runtime's and
            PyTorch's outputs over the shapes checked (``onnx`` only).
        metadata: what ``export.json`` holds (``diffusers`` and ``onnx``).
    """

    format: str
    out_dir: Path
    files: list[str] = field(default_factory=list)
    checks: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        onnx = self.metadata.get("onnx")
        return {"format": self.format, "out_dir": str(self.out_dir), "files": self.files,
                "onnx_max_abs_diff": self.checks,
                "onnx": None if onnx is None else {
                    k: onnx[k] for k in ("layout", "precision", "checked_shapes")} | {
                    "exporters": {c: e["exporter"] for c, e in onnx["components"].items()}}}


@dataclass(frozen=True)
class _Job:
    """One export's choices: how ONNX is written, and where the student comes from."""

    onnx: OnnxOptions
    source: ExportSource


def _move_tree(staging: Path, out_dir: Path) -> list[str]:
    """Move every file of ``staging`` into ``out_dir`` (same layout), each with ``os.replace``."""
    moved = []
    for source in sorted(p for p in staging.rglob("*") if p.is_file()):
        relative = source.relative_to(staging)
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)
        moved.append(relative.as_posix())
    return moved


def _spec_json(spec: ArchSpec) -> str:
    return spec.to_json(indent=2) + "\n"


def _write_json(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _metadata(spec: ArchSpec, fmt: str, job: _Job, **extra: Any) -> dict[str, Any]:
    return {"version": EXPORT_METADATA_VERSION, "format": fmt, "spec_id": spec.spec_id,
            "source": job.source.to_dict(), **extra}


def _write_scheduler(staging: Path) -> None:
    """``scheduler/``: SD 1.5's noise schedule, which the teachers denoise with."""
    from diffusers import DDIMScheduler

    # diffusers' scheduler classes carry no annotations.
    scheduler: Any = DDIMScheduler(**SD15_SCHEDULE)  # type: ignore[no-untyped-call]
    scheduler.save_pretrained(staging / "scheduler")


Exported = tuple[dict[str, float], dict[str, Any]]


def _export_spec(spec: ArchSpec, staging: Path, _: BuiltModel | None, __: _Job) -> Exported:
    (staging / "spec.json").write_text(_spec_json(spec))
    return {}, {}


def _export_diffusers(spec: ArchSpec, staging: Path, model: BuiltModel | None,
                      job: _Job) -> Exported:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    configs = {"unet": unet_config(spec), "vae": vae_config(spec)}  # NotExpressible, if so
    model = model or build(spec)
    for name, cls, module in (("unet", UNet2DConditionModel, model.unet),
                              ("vae", AutoencoderKL, model.vae)):
        # diffusers' ConfigMixin.from_config carries no annotations.
        stock = cls.from_config(configs[name])  # type: ignore[no-untyped-call]
        stock.load_state_dict(module.state_dict(), strict=True)
        stock.save_pretrained(staging / name, safe_serialization=True)
    _write_scheduler(staging)
    (staging / "model_index.json").write_text(model_index_json(diffusers_model_index()))
    (staging / "README.md").write_text(model_card(spec, job.source, fmt="diffusers"))
    (staging / "spec.json").write_text(_spec_json(spec))
    metadata = _metadata(spec, "diffusers", job)
    _write_json(staging / "export.json", metadata)
    return {}, metadata


def _export_safetensors(spec: ArchSpec, staging: Path, model: BuiltModel | None,
                        _: _Job) -> Exported:
    from safetensors.torch import save_file

    model = model or build(spec)
    metadata = {"format": "pt", "spec_id": spec.spec_id}
    for name, module in (("unet", model.unet), ("vae", model.vae)):
        tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(staging / f"{name}.safetensors"), metadata=metadata)
    (staging / "spec.json").write_text(_spec_json(spec))
    return {}, {}


def _export_onnx(spec: ArchSpec, staging: Path, model: BuiltModel | None, job: _Job) -> Exported:
    checks, onnx = write_onnx(model or build(spec), staging, job.onnx)
    metadata = _metadata(spec, "onnx", job, onnx=onnx, onnx_max_abs_diff=checks)
    (staging / "spec.json").write_text(_spec_json(spec))
    if job.onnx.layout == "optimum":
        _write_scheduler(staging)
        (staging / "model_index.json").write_text(model_index_json(onnx_model_index()))
    (staging / "README.md").write_text(model_card(spec, job.source, fmt="onnx", onnx=onnx))
    _write_json(staging / "export.json", metadata)
    return checks, metadata


_EXPORTERS: dict[str, Callable[[ArchSpec, Path, BuiltModel | None, _Job], Exported]] = {
    "spec": _export_spec,
    "diffusers": _export_diffusers,
    "onnx": _export_onnx,
    "safetensors": _export_safetensors,
}


def export(
    spec: ArchSpec, fmt: str, out_dir: str | Path, *, model: BuiltModel | None = None,
    onnx: OnnxOptions | None = None, source: ExportSource | None = None,
) -> ExportResult:
    """Write ``spec`` in format ``fmt`` into ``out_dir``.

    Args:
        spec: the architecture.
        fmt: ``spec``; ``diffusers`` (``unet/``, ``vae/`` and ``scheduler/`` folders, a
            ``model_index.json`` and a model card; :class:`NotExpressible` where stock diffusers
            cannot express the spec); ``onnx`` (``unet``, ``vae_encoder``, ``vae_decoder`` with
            dynamic batch and spatial axes, each checked against PyTorch with ONNX Runtime at
            two shapes, and a model card); or ``safetensors``.
        out_dir: output folder, created if missing.
        model: weights to write; by default the spec's seeded initial weights.
        onnx: layout, precision and exporter of an ``onnx`` export (by default this project's
            layout, FP32, the TorchScript exporter); other formats take none.
        source: where the student comes from, for the model card; by default seeded weights.

    Raises:
        SpaceError: an unknown format, or ONNX options given to another format.
    """
    if fmt not in _EXPORTERS:
        raise SpaceError(f"format {fmt!r} does not exist; known: {', '.join(FORMATS)}")
    if onnx is not None and fmt != "onnx" and onnx != OnnxOptions():
        raise SpaceError(f"layout, precision and exporter apply to the onnx format, not {fmt!r}")
    if model is not None and model.spec != spec:
        raise ValueError("the model given was not built from this spec")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if fmt == "diffusers":
        unet_config(spec)  # fail before any file exists
        vae_config(spec)
    job = _Job(onnx=onnx or OnnxOptions(), source=source or ExportSource())
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        checks, metadata = _EXPORTERS[fmt](spec, staging, model, job)
        out.mkdir(exist_ok=True)
        files = _move_tree(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(format=fmt, out_dir=out, files=files, checks=checks, metadata=metadata)
