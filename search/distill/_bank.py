"""The block bank: every stage variant of a space, distilled alone and cached on disk.

An entry is one safetensors file, named by the stage and a key that hashes the variant, the
teacher, the distillation settings and the data seed, so a second study with the same settings
reuses it and a change to any of them builds a new one. Files are written whole (temporary file,
then ``os.replace``) with a checksum of their tensors in the header, so a reader sees a complete
entry or none, and a damaged one is named instead of loaded.

A stage variant identical to the teacher's own stage (same parameters, fed by the same source)
needs no entry: surgery already gives it the teacher's weights. A stage whose source surgery
changed (D3, fed by E3 once E4, the mid block and D4 are gone) is distilled even when its layers
are the teacher's, on the input it receives in the student. Units are the U-Net stages, the
U-Net's stem, time embedding and head (when the first level is narrower than the teacher's) and
the VAE's sides, so that every tensor of an assembled candidate comes from the teacher unchanged
or from an entry (:func:`parameter_origins` counts any other).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nanosd_nas.latency_models import project_home
from nanosd_nas.search.distill._assembly import Origins, load_unit, parameter_origins
from nanosd_nas.search.distill._data import CalibrationData, calibration_data, data_identity
from nanosd_nas.search.distill._distill import (
    DistillResult,
    DistillSettings,
    StageBatchSource,
    distill_stage,
    fit_features,
)
from nanosd_nas.search.distill._io import distill_unet_io
from nanosd_nas.search.distill._stages import (
    StageRef,
    Trace,
    fed_by,
    path_features,
    trace,
    trace_batched,
    unet_stages,
)
from nanosd_nas.search.distill._teacher import Teacher
from nanosd_nas.search.distill._vae import distill_vae_part
from nanosd_nas.search.distill._variants import (
    UNET_IO,
    VAE_PARTS,
    StageVariant,
    stage_documents,
    stage_variants,
)
from nanosd_nas.spaces import ArchSpec, BuiltModel, SpecUNet, prune, transplant

#: Bumped when the entry format or the distillation procedure changes meaning (2: stages
#: distilled on their post-surgery input, the stem/time/head unit, real conditioning).
BANK_FORMAT = 2


class BankError(ValueError):
    """A bank entry that is missing or damaged."""


@dataclass
class EntryInfo:
    """What building (or finding) one entry did."""

    stage: str
    label: str
    key: str
    reused: bool
    initial_loss: float = 0.0
    final_loss: float = 0.0
    heldout_initial: float = 0.0
    heldout_final: float = 0.0
    steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BuildReport:
    """Entries built and reused by one :meth:`BlockBank.build`."""

    entries: list[EntryInfo] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def built(self) -> int:
        return sum(not e.reused for e in self.entries)

    @property
    def reused(self) -> int:
        return sum(e.reused for e in self.entries)


def _checksum(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class BlockBank:
    """Distilled stage variants of one teacher under one set of settings.

    Not safe for concurrent use from several threads; several processes may share a bank
    folder (an entry is written whole, and two writers of one entry write the same thing).
    """

    def __init__(
        self, teacher: Teacher, *, settings: DistillSettings | None = None,
        folder: Path | None = None, device: str = "cpu", images: Path | None = None,
        context: Path | None = None,
    ) -> None:
        self.teacher = teacher
        self.settings = settings or DistillSettings()
        self.folder = (folder or project_home() / "banks") / teacher.teacher_id
        self.device = device
        self.images = images
        self.context_file = context
        self._teacher_documents = stage_documents(teacher.spec)

    @cached_property
    def context(self) -> torch.Tensor:
        """The conditioning ``[n, tokens, D]``: the user's file, else the teacher's own.

        Raises:
            ContextError: the file does not hold such a tensor, or the teacher ships none
                and no file is given.
        """
        return self.teacher.calibration_context(self.context_file)[0]

    @cached_property
    def data_id(self) -> str:
        """What the calibration data is made from (images and conditioning), as a digest."""
        return data_identity(self.images, self.context)

    # -- keys and files -------------------------------------------------------------------

    def key(self, variant: StageVariant) -> str:
        document = {"format": BANK_FORMAT, "teacher": self.teacher.teacher_id,
                    "settings": self.settings.model_dump(), "data": self.data_id,
                    "variant": variant.document}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, variant: StageVariant) -> Path:
        return self.folder / f"{variant.stage}-{self.key(variant)}.safetensors"

    def is_teacher_stage(self, variant: StageVariant) -> bool:
        """Whether the variant is the teacher's own stage (no entry needed)."""
        return self._teacher_documents.get(variant.stage) == variant.document

    def needed(self, variants: Iterable[StageVariant]) -> list[StageVariant]:
        return [v for v in variants if not self.is_teacher_stage(v)]

    def load(self, variant: StageVariant) -> dict[str, torch.Tensor]:
        """The entry's weights; :class:`BankError` if it is missing or damaged."""
        return self._read(variant)[0]

    def info(self, variant: StageVariant) -> EntryInfo:
        """How the entry was distilled (losses before and after, steps, seconds); a stage
        identical to the teacher's reports zero loss and no steps."""
        if self.is_teacher_stage(variant):
            return EntryInfo(variant.stage, variant.label, "teacher", reused=True)
        document = json.loads(self._read(variant)[1]["info"])
        return EntryInfo(**{**document, "reused": True})

    def _read(self, variant: StageVariant) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        path = self.path(variant)
        if not path.exists():
            raise BankError(f"block bank has no entry for stage {variant.stage} "
                            f"({variant.label}) at {path}: build the bank first")
        try:
            state = load_file(str(path))
            with path.open("rb") as stream:
                header_size = int.from_bytes(stream.read(8), "little")
                metadata = json.loads(stream.read(header_size)).get("__metadata__", {})
        except (SafetensorError, OSError, ValueError) as error:
            raise BankError(f"block bank entry {path} is damaged ({error}); delete it and the "
                            f"next build makes it again") from error
        if metadata.get("checksum") != _checksum(state) or "info" not in metadata:
            raise BankError(f"block bank entry {path} is damaged (checksum mismatch); delete "
                            f"it and the next build makes it again")
        return state, metadata

    def _save(self, variant: StageVariant, state: dict[str, torch.Tensor],
              info: EntryInfo) -> None:
        path = self.path(variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        metadata = {"checksum": _checksum(state), "info": json.dumps(info.to_dict()),
                    "variant": variant.document, "teacher": self.teacher.teacher_id,
                    "settings": self.settings.model_dump_json()}
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                                 suffix=".tmp")
        os.close(descriptor)
        try:
            save_file(state, temporary, metadata=metadata)
            os.replace(temporary, path)  # noqa: PTH105
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(temporary).unlink()
            raise

    # -- data -----------------------------------------------------------------------------

    @cached_property
    def data(self) -> CalibrationData:
        s = self.settings
        return calibration_data(self.teacher.model, samples=s.samples, holdout=s.holdout,
                                seed=s.data_seed, images=self.images, context=self.context)

    @cached_property
    def teacher_state(self) -> dict[str, torch.Tensor]:
        return self.teacher.model.state_dict()

    def teacher_trace(self, part: str) -> Trace:
        """The teacher U-Net's stage features on the ``distill`` or ``heldout`` part."""
        cache = self.__dict__.setdefault("_traces", {})
        if part not in cache:
            calibration = getattr(self.data, part)
            inputs = calibration.unet_inputs(slice(None))
            cache[part] = trace_batched(self.teacher.model.unet, self.teacher.spec, inputs)
        return cache[part]  # type: ignore[no-any-return]

    # -- building -------------------------------------------------------------------------

    def build(
        self, variants: Iterable[StageVariant], *,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> BuildReport:
        """Distil every variant that has no entry yet; ``on_progress("block bank", done,
        total)`` before the first entry and after each."""
        started = time.perf_counter()
        report = BuildReport()
        needed = self.needed(variants)
        for variant in needed:
            self.check(variant)
        if any(not self.path(v).exists() for v in needed):
            _ = self.data  # a bad image folder or context fails here, before any entry
        if on_progress is not None:
            on_progress("block bank", 0, len(needed))
        for variant in needed:
            if self.path(variant).exists():
                self.load(variant)  # a damaged entry is an error, not a silent rebuild
                info = EntryInfo(variant.stage, variant.label, self.key(variant), reused=True)
            else:
                info = self._distil(variant)
            report.entries.append(info)
            if on_progress is not None:
                on_progress("block bank", len(report.entries), len(needed))
        report.seconds = time.perf_counter() - started
        return report

    def _distil(self, variant: StageVariant) -> EntryInfo:
        # Narrower tensors start from the teacher's leading channels (width pruning).
        student = transplant(self.teacher_state, variant.spec, cut=True).model
        result: DistillResult
        if variant.stage in VAE_PARTS:
            result, state = distill_vae_part(variant.stage, student, self.teacher.model,
                                             self.data, self.settings, device=self.device)
        elif variant.stage == UNET_IO:
            traces = {part: self.teacher_trace(part) for part in ("distill", "heldout")}
            result, state = distill_unet_io(student, self.teacher.model, self.data, traces,
                                            self.settings, device=self.device)
        else:
            ref = next(r for r in unet_stages(variant.spec) if r.name == variant.stage)
            train, heldout = (self.stage_source(student, ref, part)
                              for part in ("distill", "heldout"))
            result = distill_stage(
                ref.module(student.unet), ref.kind, ref.index, train=train, heldout=heldout,
                settings=self.settings, teacher=self._splice_host(variant.spec),
            )
            state = result.state
        info = EntryInfo(
            variant.stage, variant.label, self.key(variant), reused=False,
            initial_loss=result.initial_loss, final_loss=result.final_loss,
            heldout_initial=result.heldout_initial, heldout_final=result.heldout_final,
            steps=result.steps, seconds=result.seconds,
        )
        self._save(variant, state, info)
        return info

    def _splice_host(self, spec: ArchSpec) -> SpecUNet | None:
        """For the output-level terms: the teacher along ``spec``'s path (the teacher's weights
        after the same surgery), on the distillation device, into which a stage is spliced."""
        if self.settings.output_weight == 0 and self.settings.task_weight == 0:
            return None
        dropped = len(self.teacher.spec.unet.levels) - len(spec.unet.levels)
        host_spec = prune(self.teacher.spec, drop_deepest_levels=dropped,
                          mid_block=spec.unet.mid_block)
        hosts = self.__dict__.setdefault("_splice_hosts", {})
        if host_spec.spec_id not in hosts:
            host = transplant(self.teacher_state, host_spec).model.unet
            hosts[host_spec.spec_id] = host.eval().requires_grad_(False).to(self.device)
        return hosts[host_spec.spec_id]  # type: ignore[no-any-return]

    def check(self, variant: StageVariant) -> None:
        """Refuse, before any work, a U-Net stage variant the bank cannot distil.

        Raises:
            BankError: the stage has another number of layers than the teacher's (its outputs
                are paired with the teacher's by position), it is fed by a mid block at another
                level, or output-level terms are asked of a stage narrower than the teacher's.
        """
        if variant.stage in (*VAE_PARTS, UNET_IO):
            return
        spec, teacher = variant.spec, self.teacher.spec
        ref = next(r for r in unet_stages(spec) if r.name == variant.stage)
        level, teacher_level = spec.unet.levels[ref.level], teacher.unet.levels[ref.level]
        side = "down" if ref.kind == "down" else "up"
        layers, teacher_layers = len(getattr(level, side)), len(getattr(teacher_level, side))
        where = f"stage {variant.stage} of spec {spec.spec_id}"
        if layers != teacher_layers:
            raise BankError(f"{where} has {layers} layers where the teacher's has "
                            f"{teacher_layers}: the bank distils stages that keep the teacher's "
                            "layers (score it with --mode surgery)")
        if fed_by(spec)[variant.stage] == "mid" != fed_by(teacher)[variant.stage]:
            raise BankError(f"{where} is fed by a mid block at another level than the "
                            "teacher's; the mid block is not a unit of the bank")
        narrower = any(a.channels != b.channels for a, b in zip(spec.unet.levels,
                                                                 teacher.unet.levels,
                                                                 strict=False))
        if self._splice_host(spec) is not None and narrower:
            raise BankError(f"{where}: output-level terms (output_weight, task_weight) need "
                            "the teacher's widths; this member is narrower")

    def stage_source(self, student: BuiltModel, ref: StageRef, part: str) -> StageBatchSource:
        """The teacher's features of stage ``ref`` on ``part`` along the student's path (the
        input the stage receives after surgery), cut to the student's widths."""
        calibration = getattr(self.data, part)
        teacher_trace = self.teacher_trace(part)
        probe = trace(student.unet, student.spec, *calibration.unet_inputs(slice(0, 1)))
        try:
            path = path_features(teacher_trace, self.teacher.spec, student.spec, ref.name)
        except ValueError as error:
            raise BankError(f"stage {ref.name} of spec {student.spec.spec_id}: {error}"
                            ) from error
        features = fit_features(path, probe.stages[ref.name])
        temb = teacher_trace.temb[:, : probe.temb.shape[1]]
        device = self.device
        return StageBatchSource(
            features=features.to(device), temb=temb.to(device),
            context=calibration.context.to(device),
            unet_inputs=tuple(t.to(device) for t in calibration.unet_inputs(slice(None))),
            teacher_output=teacher_trace.output.to(device), noise=calibration.noise.to(device),
        )

    # -- assembling -----------------------------------------------------------------------

    def units(self, spec: ArchSpec) -> list[StageVariant]:
        """The units of ``spec`` that come from bank entries (all but the teacher's own)."""
        return self.needed(stage_variants(spec).values())

    def origins(self, spec: ArchSpec, *, distilled: bool = True) -> Origins:
        """Where each tensor of the candidate comes from (teacher, a bank entry, untrained)."""
        units = [v.stage for v in self.units(spec)] if distilled else []
        return parameter_origins(self.teacher.spec, spec, units)

    def surgery(self, spec: ArchSpec) -> BuiltModel:
        """The candidate with teacher weights wherever a kept layer has them (no bank)."""
        return transplant(self.teacher_state, spec).model

    def assemble(self, spec: ArchSpec) -> BuiltModel:
        """The candidate built from the bank's entries (teacher weights elsewhere).

        Raises:
            BankError: a unit of ``spec`` has no entry, or a damaged one.
        """
        model = self.surgery(spec)
        state = model.state_dict()
        for variant in self.units(spec):
            load_unit(state, spec, variant.stage, self.load(variant))
        model.load_state_dict(state)
        return model
