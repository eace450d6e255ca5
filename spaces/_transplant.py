"""Transplant teacher weights into a student (the weight half of network surgery).

Layer correspondence (NanoSD, BK-SDM): encoder stages match by level; decoder stages match from
the output end (a student that dropped the deepest level keeps the teacher's shallower decoder
stages); inside a stage, layer ``j`` takes teacher layer ``j``, except that the last decoder layer
of a stage that lost layers takes the teacher's last one, whose skip connection it shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from nanosd_nas.spaces._builder import BuiltModel, build
from nanosd_nas.spaces._spec import ArchSpec

_UP_LAYER = re.compile(r"^unet\.up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$")
_UP_OTHER = re.compile(r"^unet\.up_blocks\.(\d+)\.(.+)$")


@dataclass
class TransplantResult:
    """A student built with its teacher's weights wherever a kept layer has a counterpart.

    Attributes:
        model: the student, in eval mode.
        copied: student parameter name -> teacher parameter name it was copied from.
        cut: student parameter name -> the larger teacher parameter whose leading entries on
            every axis it took (only with ``cut=True``).
        fresh: student parameters with no teacher counterpart to take (seeded init).
    """

    model: BuiltModel
    copied: dict[str, str] = field(default_factory=dict)
    cut: dict[str, str] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)


def _teacher_layout(teacher: Mapping[str, torch.Tensor]) -> tuple[int, dict[int, int]]:
    """Number of teacher decoder stages, and resnets per teacher decoder stage."""
    resnets: dict[int, set[int]] = {}
    for name in teacher:
        match = _UP_LAYER.match(name)
        if match and match.group(2) == "resnets":
            resnets.setdefault(int(match.group(1)), set()).add(int(match.group(3)))
    stages = {int(m.group(1)) for name in teacher if (m := _UP_OTHER.match(name))}
    return (max(stages) + 1 if stages else 0), {u: max(js) + 1 for u, js in resnets.items()}


def _teacher_name(name: str, student: ArchSpec, t_stages: int, t_resnets: dict[int, int]) -> str:
    offset = t_stages - len(student.unet.levels)
    match = _UP_LAYER.match(name)
    if match:
        u, kind, j, rest = int(match.group(1)), match.group(2), int(match.group(3)), match.group(4)
        s_layers = len(student.unet.levels[len(student.unet.levels) - 1 - u].up)
        t_layers = t_resnets.get(u + offset, s_layers)
        tj = t_layers - 1 if j == s_layers - 1 else j
        return f"unet.up_blocks.{u + offset}.{kind}.{tj}.{rest}"
    match = _UP_OTHER.match(name)
    if match:
        return f"unet.up_blocks.{int(match.group(1)) + offset}.{match.group(2)}"
    return name


def _covers(teacher: torch.Tensor, student: torch.Tensor) -> bool:
    return teacher.ndim == student.ndim and all(
        t >= n for t, n in zip(teacher.shape, student.shape, strict=True))


def transplant(
    teacher_state_dict: Mapping[str, torch.Tensor], student_spec: ArchSpec, *, seed: int = 0,
    device: str | torch.device = "cpu", cut: bool = False,
) -> TransplantResult:
    """Build ``student_spec`` and copy into every kept layer its teacher layer's weights.

    Args:
        teacher_state_dict: the teacher's weights as :meth:`BuiltModel.state_dict` names them
            (``unet.``/``vae.`` prefixes with diffusers' parameter names).
        student_spec: the student to build.
        seed: seed of the initial weights of parameters that have no teacher counterpart.
        device: where the student is built; ``meta`` (with a ``meta`` teacher) finds which
            tensors have a counterpart without allocating any.
        cut: a narrower tensor takes the leading entries of its larger teacher counterpart on
            every axis (structured width pruning: the same channels on every axis of a level,
            so residual paths stay aligned) instead of a fresh initialisation; a start for
            training, not weights to use untrained.
    """
    if not any(name.startswith(("unet.", "vae.")) for name in teacher_state_dict):
        raise ValueError(
            "teacher weights must be named 'unet.<name>' / 'vae.<name>' (as "
            "BuiltModel.state_dict() names them); prefix a bare diffusers state dict first"
        )
    student = build(student_spec, seed=seed, device=device)
    state = student.state_dict()
    t_stages, t_resnets = _teacher_layout(teacher_state_dict)
    result = TransplantResult(model=student)
    for name, tensor in state.items():
        source = _teacher_name(name, student_spec, t_stages, t_resnets)
        teacher_tensor = teacher_state_dict.get(source)
        if teacher_tensor is not None and teacher_tensor.shape == tensor.shape:
            state[name] = teacher_tensor.detach().clone()
            result.copied[name] = source
        elif cut and teacher_tensor is not None and _covers(teacher_tensor, tensor):
            leading = tuple(slice(0, n) for n in tensor.shape)
            state[name] = teacher_tensor[leading].detach().clone()
            result.cut[name] = source
        else:
            result.fresh.append(name)
    student.load_state_dict(state)
    return result
