"""Where every tensor of an assembled candidate comes from: the teacher, a bank entry, or nowhere.

A candidate is its teacher's weights transplanted by name (surgery), overwritten unit by unit
with the block bank's distilled entries: each U-Net stage, the U-Net's stem, time embedding and
head (one unit, :data:`UNET_IO`) and each VAE side. A tensor that neither the teacher gives
unchanged nor an entry covers is *untrained*: its value is a seeded initialisation, and a score
of such a candidate would measure noise. The count is computed from shapes alone (on PyTorch's
``meta`` device), so it is cheap at any scale, and the same unit-to-tensor map is what
:meth:`BlockBank.assemble` loads entries by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from nanosd_nas.search.distill._stages import unet_stages
from nanosd_nas.search.distill._vae import PART_MODULES
from nanosd_nas.search.distill._variants import (
    UNET_IO,
    UNET_IO_MODULES,
    VAE_PARTS,
    stage_documents,
)
from nanosd_nas.spaces import ArchSpec, build, transplant

TEACHER, UNTRAINED = "teacher", "untrained"


def unit_prefixes(spec: ArchSpec, unit: str) -> tuple[str, ...]:
    """The state-dict name prefixes (``unet.``/``vae.`` included) of one unit of ``spec``."""
    if unit == UNET_IO:
        return tuple(f"unet.{module}." for module in UNET_IO_MODULES)
    if unit in VAE_PARTS:
        return tuple(f"vae.{module}." for module in PART_MODULES[unit])
    for ref in unet_stages(spec):
        if ref.name == unit:
            blocks = "down_blocks" if ref.kind == "down" else "up_blocks"
            return (f"unet.{blocks}.{ref.index}.",)
    raise ValueError(f"{unit!r} is not a unit of spec {spec.spec_id}")


@dataclass(frozen=True)
class Origins:
    """Each tensor's origin (``teacher``, ``bank:<unit>`` or ``untrained``) and its size."""

    origin: dict[str, str]
    numel: dict[str, int]

    def count(self, origin: str) -> int:
        """Parameters (elements) of that origin; ``bank`` counts every unit's."""
        return sum(self.numel[name] for name, where in self.origin.items()
                   if where == origin or (origin == "bank" and where.startswith("bank:")))

    @property
    def untrained(self) -> int:
        return self.count(UNTRAINED)

    def untrained_names(self) -> list[str]:
        return [name for name, where in self.origin.items() if where == UNTRAINED]

    def summary(self) -> dict[str, int]:
        return {"teacher": self.count(TEACHER), "bank": self.count("bank"),
                "untrained": self.untrained}


def bank_units(teacher_spec: ArchSpec, spec: ArchSpec) -> list[str]:
    """The units of ``spec`` that need a bank entry: all but those identical to the teacher's
    (same tensors, fed by the same source)."""
    teacher = stage_documents(teacher_spec)
    return [name for name, document in stage_documents(spec).items()
            if teacher.get(name) != document]


def parameter_origins(teacher_spec: ArchSpec, spec: ArchSpec, bank_units: Iterable[str]
                      ) -> Origins:
    """Where each tensor of ``spec`` comes from, when ``bank_units`` come from bank entries
    and everything else from surgery on a teacher of ``teacher_spec``."""
    teacher_state = build(teacher_spec, device="meta").state_dict()
    result = transplant(teacher_state, spec, device="meta")
    state = result.model.state_dict()
    covered: dict[str, str] = {}
    for unit in bank_units:
        for prefix in unit_prefixes(spec, unit):
            covered |= {name: f"bank:{unit}" for name in state if name.startswith(prefix)}
    origin = {name: covered.get(name, TEACHER if name in result.copied else UNTRAINED)
              for name in state}
    return Origins(origin=origin, numel={name: t.numel() for name, t in state.items()})


def load_unit(model_state: dict[str, torch.Tensor], spec: ArchSpec, unit: str,
              entry: dict[str, torch.Tensor]) -> None:
    """Put a bank entry's tensors (named as in the unit's module) into ``model_state`` (named
    ``unet.…``/``vae.…``), checking that the entry covers the unit exactly."""
    prefixes = unit_prefixes(spec, unit)
    expected = {name for name in model_state if name.startswith(prefixes)}
    base = "unet." if prefixes[0].startswith("unet.") else "vae."
    if unit in VAE_PARTS or unit == UNET_IO:
        named = {base + name: tensor for name, tensor in entry.items()}
    else:
        named = {prefixes[0] + name: tensor for name, tensor in entry.items()}
    if set(named) != expected:
        missing, unexpected = sorted(expected - set(named)), sorted(set(named) - expected)
        raise ValueError(f"bank entry of {unit} does not fit spec {spec.spec_id}: missing "
                         f"{missing[:3]}, unexpected {unexpected[:3]}")
    for name, tensor in named.items():
        if tensor.shape != model_state[name].shape:
            raise ValueError(f"bank entry of {unit}: {name} has shape {list(tensor.shape)}, "
                             f"the candidate needs {list(model_state[name].shape)}")
        model_state[name] = tensor
