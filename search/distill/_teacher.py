"""The teacher of distillation: SD 1.5 from a diffusers folder or a safetensors file, or the demo.

A teacher is always the ``sd15`` spec at one scale (``full`` or ``mini``), built by this project's
builder and loaded strictly; nothing is downloaded and nothing is unpickled. Its id hashes the
bytes of the weight files, so the same weights give the same id wherever they are stored.

A teacher may ship its text condition for calibration: ``context.safetensors`` at a diffusers
folder's root, or ``X.context.safetensors`` beside a single file ``X.safetensors`` (checked as
any context file is; not part of the teacher's id). The demo teacher's is synthetic, as its
weights are.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from nanosd_nas.search.distill._context import (
    CONTEXT_FILE,
    DEMO_PROMPTS,
    ContextError,
    context_classes,
    demo_context,
    load_context,
)
from nanosd_nas.spaces import (
    SCALES,
    ArchSpec,
    BuiltModel,
    NotExpressible,
    build,
    load_point,
    spec_from_diffusers,
    to_scale,
    unet_config,
    vae_config,
)

DEMO_TEACHER = "demo"
#: The trained mini teacher shipped with the package (see ``teacher train``).
TRAINED_TEACHER = "trained"
#: Where it lies: a diffusers folder inside the package.
TRAINED_FOLDER = Path(__file__).parent / "teachers" / "trained"
TRAINED_LABEL = ("trained teacher (shipped: SD-1.5 topology at mini scale, class-conditional, "
                 "trained by teacher train)")
DEMO_SEED = 0
DEMO_LABEL = "demo teacher (seeded SD-1.5 topology at mini scale; not a trained model)"
DEMO_CONTEXT_LABEL = (f"demo context (synthetic: {DEMO_PROMPTS} prompt-like rows, the first the "
                      "null prompt; not a text encoder's output)")
NO_CONTEXT = "none (the teacher ships no context file)"

_CHUNK = 1 << 20
_WEIGHTS = "diffusion_pytorch_model.safetensors"
_CLASSES = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL"}
#: Config entries a teacher may set freely: the latent and image size come from the scale.
_FREE_ENTRIES = frozenset({"sample_size"})
_LDM_UNET, _LDM_VAE = "model.diffusion_model.", "first_stage_model."

State = dict[str, torch.Tensor]


class TeacherError(ValueError):
    """A teacher reference that cannot be loaded: missing, not SD-1.5, wrong shapes, or corrupt."""


@dataclass(frozen=True, eq=False)
class Teacher:
    """A loaded SD-1.5 teacher, frozen (eval mode, no gradients).

    Attributes:
        teacher_id: ``demo-mini-seed0`` for the demo; ``sha256-<16 hex>`` of a checkpoint's weights.
        label: what every figure shows: the demo's description or the checkpoint's path.
        is_demo: whether this is the seeded demo teacher rather than trained weights.
        scale: ``full`` or ``mini``, the scale of the ``sd15`` spec its shapes match.
        spec: the ``sd15`` spec at :attr:`scale`.
        model: the U-Net and VAE with the teacher's weights.
        context: the text condition the teacher ships, float32 ``[n, tokens, D]``, or ``None``.
        context_label: where :attr:`context` came from (its file, the demo's synthetic one, or
            none).
        classes: the names of :attr:`context`'s rows after the first (the null prompt): a
            class-conditional teacher's classes, ``row 1`` ... where the file names none, the
            demo's ``prompt 1`` ...; empty without a context.
        path: the folder or file the weights were read from (``None`` for the demo).
    """

    teacher_id: str
    label: str
    is_demo: bool
    scale: str
    spec: ArchSpec
    model: BuiltModel
    context: torch.Tensor | None = None
    context_label: str = NO_CONTEXT
    classes: tuple[str, ...] = ()
    path: Path | None = None

    def calibration_context(self, context: Path | None = None) -> tuple[torch.Tensor, str]:
        """The text condition of calibration and where it came from: the context file
        ``context`` when given, else the teacher's own.

        Raises:
            ContextError: ``context`` is not a valid context file for this teacher, or none is
                given and the teacher ships none.
        """
        if context is not None:
            return load_context(context, self.spec), str(context)
        if self.context is None:
            raise ContextError(
                f"teacher {self.label} ships no context ({CONTEXT_FILE} beside its weights); "
                "give a context file: one safetensors tensor [n, tokens, "
                f"{self.spec.unet.cross_attention_dim}] of text-encoder outputs of n prompts, "
                "the null prompt among them")
        return self.context, self.context_label


def load_teacher(reference: str | Path, *, device: str = "cpu") -> Teacher:
    """Load the teacher named by ``reference``.

    Args:
        reference: ``"demo"``; ``"trained"`` (the shipped trained mini teacher); a diffusers
            folder with ``unet/`` and ``vae/`` (as ``save_pretrained`` writes them, sharded or
            not); or one ``.safetensors`` file named
            as :meth:`BuiltModel.state_dict` names weights or as an original SD checkpoint
            (``model.diffusion_model.*``, ``first_stage_model.*``). Its context, if it ships
            one, is read beside it (see the module's docstring).
        device: where the weights go; they are loaded as float32 whatever their stored type.

    Raises:
        TeacherError: the reference is missing, unreadable, not SD-1.5, or its weights do not fit.
        ContextError: the context it ships is unreadable or of the wrong shape or type.
    """
    if isinstance(reference, str) and reference == DEMO_TEACHER:  # Path("demo") is a folder
        spec = _sd15("mini")
        model = frozen(build(spec, seed=DEMO_SEED, device=device))
        return Teacher(teacher_id=f"demo-mini-seed{DEMO_SEED}", label=DEMO_LABEL, is_demo=True,
                       scale="mini", spec=spec, model=model,
                       context=demo_context(spec, seed=DEMO_SEED),
                       context_label=DEMO_CONTEXT_LABEL,
                       classes=tuple(f"prompt {i}" for i in range(1, DEMO_PROMPTS)))
    path = Path(reference)
    if isinstance(reference, str) and reference == TRAINED_TEACHER:
        path = TRAINED_FOLDER
        if not path.is_dir():
            raise TeacherError(f"the trained teacher is not in this installation ({path} is "
                               "missing); make one with teacher train and give its folder")
    if path.is_dir():
        scale, files, state = _read_folder(path)
    elif path.is_file():
        scale, state = _read_single_file(path)
        files = [path]
    else:
        raise TeacherError(
            f"teacher {str(reference)!r}: no such file or folder (give a diffusers folder with "
            f"unet/ and vae/, a .safetensors file, or {DEMO_TEACHER!r})"
        )
    spec = _sd15(scale)
    model = frozen(_assign(spec, state, device))
    shipped = (path / CONTEXT_FILE if path.is_dir()
               else path.with_name(f"{path.stem}.{CONTEXT_FILE}"))
    context = load_context(shipped, spec) if shipped.is_file() else None
    label = TRAINED_LABEL if path == TRAINED_FOLDER else str(path)
    return Teacher(teacher_id=_weights_id(files), label=label, is_demo=False, scale=scale,
                   spec=spec, model=model, context=context,
                   context_label=NO_CONTEXT if context is None else str(shipped),
                   classes=() if context is None else context_classes(shipped, len(context)),
                   path=path)


@cache
def _sd15(scale: str) -> ArchSpec:
    return to_scale(load_point("sd15"), scale)


def frozen(model: BuiltModel) -> BuiltModel:
    """``model`` in eval mode with no gradients (a teacher is never trained here)."""
    for module in (model.unet, model.vae):
        module.eval().requires_grad_(False)
    return model


def _assign(spec: ArchSpec, state: State, device: str) -> BuiltModel:
    # Built on `meta` and given the loaded tensors: a full-size teacher is never held twice.
    model = build(spec, device="meta")
    for prefix, module in (("unet", model.unet), ("vae", model.vae)):
        part = {
            name[len(prefix) + 1:]: tensor.to(device=device, dtype=torch.float32)
            for name, tensor in state.items() if name.startswith(prefix + ".")
        }
        module.load_state_dict(part, strict=True, assign=True)
        if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
            raise RuntimeError(f"the {prefix} build has tensors that no weight file sets")
    return model


def _weights_id(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in sorted(files):
        with file.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return f"sha256-{digest.hexdigest()[:16]}"


# -- diffusers folders -------------------------------------------------------------------------
def _read_folder(root: Path) -> tuple[str, list[Path], State]:
    configs = {part: _read_config(root, part) for part in _CLASSES}
    scale = _scale_of(root, configs)
    files: list[Path] = []
    state: State = {}
    for part in _CLASSES:
        for file in _weight_files(root / part):
            files.append(file)
            state |= {f"{part}.{name}": t for name, t in _read_safetensors(file).items()}
    problems = _mismatches(state, scale)
    if problems:
        raise TeacherError(f"{root}: weights do not fit SD-1.5 at {scale}: {_summary(problems)}")
    return scale, files, state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as error:
        raise TeacherError(f"{path}: cannot be read ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise TeacherError(f"{path}: malformed JSON ({error.msg}, line {error.lineno})") from None


def _read_config(root: Path, part: str) -> dict[str, Any]:
    if not (root / part).is_dir():
        raise TeacherError(
            f"{root}: no {part}/ folder; a diffusers teacher has unet/ and vae/, each with "
            "config.json and safetensors weights (as save_pretrained writes them)"
        )
    path = root / part / "config.json"
    config = _read_json(path)
    if not isinstance(config, dict):
        raise TeacherError(f"{path}: not a JSON object")
    found = config.get("_class_name", _CLASSES[part])
    if found != _CLASSES[part]:
        raise TeacherError(f"{path}: _class_name {found!r} is not {_CLASSES[part]!r}")
    return config


def _scale_of(root: Path, configs: dict[str, dict[str, Any]]) -> str:
    try:
        found = spec_from_diffusers(configs["unet"], configs["vae"])
    except (ValueError, TypeError, KeyError) as error:
        raise TeacherError(f"{root}: not an SD-1.5 config: {error}") from None
    for scale in SCALES:
        target = _sd15(scale)
        if found.model_copy(update={"latent_size": target.latent_size}) == target:
            return scale
    raise TeacherError(f"{root}: {_config_difference(found)}")


def _configs(spec: ArchSpec) -> dict[str, dict[str, Any]]:
    return {"unet": unet_config(spec), "vae": vae_config(spec)}


def _config_difference(found: ArchSpec) -> str:
    """The first config entry in which ``found`` differs from SD-1.5 at the closest scale."""
    try:
        have = _configs(found)
    except NotExpressible as error:
        return f"not SD-1.5: {error}"
    wanted = {scale: _configs(_sd15(scale)) for scale in SCALES}

    def differences(scale: str) -> list[tuple[str, str]]:
        return [(part, key) for part, config in have.items() for key, value in config.items()
                if key not in _FREE_ENTRIES and wanted[scale][part].get(key) != value]

    closest = min(SCALES, key=lambda scale: len(differences(scale)))
    if not differences(closest):  # a difference the diffusers configs cannot show
        return f"not SD-1.5 at any scale: {found.to_json()}"
    part, key = differences(closest)[0]
    value = have[part][key]
    options = " or ".join(f"{wanted[scale][part].get(key)!r} at {scale}" for scale in SCALES
                          if wanted[scale][part].get(key) != value)
    return f"{part}/config.json: {key} {value!r} is not SD-1.5's {options}"


def _weight_files(folder: Path) -> list[Path]:
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        index = _read_json(indexes[0])
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise TeacherError(f"{indexes[0]}: no weight_map naming the weight shards")
        return sorted({folder / name for name in weight_map.values()})
    files = sorted(folder.glob("*.safetensors"))
    if folder / _WEIGHTS in files:
        return [folder / _WEIGHTS]
    if len(files) == 1:
        return files
    if files:
        raise TeacherError(f"{folder}: several weight files ({', '.join(f.name for f in files)})")
    if any(folder.glob("*.bin")) or any(folder.glob("*.ckpt")) or any(folder.glob("*.pt")):
        raise TeacherError(
            f"{folder}: only pickled PyTorch weights (.bin/.ckpt/.pt); safetensors is required "
            "(nanosd-nas never unpickles): re-save with save_pretrained(safe_serialization=True)"
        )
    raise TeacherError(f"{folder}: no {_WEIGHTS}")


# -- single files ------------------------------------------------------------------------------
def _read_safetensors(path: Path) -> State:
    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise TeacherError(f"{path}: not a readable safetensors file ({error})") from None


def _read_single_file(path: Path) -> tuple[str, State]:
    if path.suffix != ".safetensors":
        raise TeacherError(
            f"{path}: not a .safetensors file; safetensors is required (nanosd-nas never unpickles)"
        )
    raw = _read_safetensors(path)
    if raw and all(name.startswith(("unet.", "vae.")) for name in raw):
        state = raw
    elif any(name.startswith(_LDM_UNET) for name in raw):
        state = _from_ldm(path, raw)
    else:
        found = f"first tensor {next(iter(raw))!r}" if raw else "no tensors"
        raise TeacherError(
            f"{path}: unknown weight layout ({found}); expected this project's unet./vae. names "
            f"or an original SD checkpoint's {_LDM_UNET}* and {_LDM_VAE}*"
        )
    closest = min(SCALES, key=lambda scale: len(_mismatches(state, scale)))
    problems = _mismatches(state, closest)
    if problems:
        raise TeacherError(
            f"{path}: not SD-1.5 weights at any scale (closest: {closest}): {_summary(problems)}"
        )
    return closest, state


def _from_ldm(path: Path, raw: State) -> State:
    """Rename an original (LDM/CompVis) SD checkpoint's U-Net and VAE with diffusers' converters."""
    # Imported here: the module costs seconds and only this layout needs it.
    from diffusers.loaders import single_file_utils as ldm

    if not any(name.startswith(_LDM_VAE) for name in raw):
        raise TeacherError(f"{path}: an original SD checkpoint without its VAE ({_LDM_VAE}*)")
    spec = _sd15("full")  # the converters read only the topology, the same at every scale
    unet_layout = {**unet_config(spec), "layers_per_block": len(spec.unet.levels[0].down)}
    try:
        unet = ldm.convert_ldm_unet_checkpoint(raw, unet_layout)
        vae = ldm.convert_ldm_vae_checkpoint(raw, vae_config(spec))
    except (KeyError, IndexError, AttributeError, RuntimeError) as error:
        raise TeacherError(f"{path}: cannot convert the original SD layout ({error!r})") from None
    return {f"{prefix}.{name}": tensor
            for prefix, converted in (("unet", unet), ("vae", vae))
            for name, tensor in converted.items() if tensor is not None}


# -- shapes ------------------------------------------------------------------------------------
@cache
def _expected_shapes(scale: str) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in build(_sd15(scale), device="meta")
            .state_dict().items()}


def _mismatches(state: State, scale: str) -> list[str]:
    """What keeps ``state`` from loading strictly into SD-1.5 at ``scale``, first tensor first."""
    expected = _expected_shapes(scale)
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"{name} is missing")
        elif tuple(state[name].shape) != shape:
            problems.append(f"{name} has shape {list(state[name].shape)}, SD-1.5 at {scale} "
                            f"needs {list(shape)}")
    problems += [f"{name} is not an SD-1.5 weight" for name in state if name not in expected]
    return problems


def _summary(problems: list[str]) -> str:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more
