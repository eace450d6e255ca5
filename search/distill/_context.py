"""The text condition of calibration: the user's context file, a teacher's own, or the demo's.

A context file is a safetensors file holding one tensor (any name; where it holds several, the one
named ``context``) shaped ``[n, tokens, cross_attention_dim]`` in float16, bfloat16 or float32:
the text encoder's outputs of ``n`` prompts that the user computed, the null prompt among them.
It is checked against the teacher's spec and read as float32; nothing in it is unpickled.

The demo teacher has no text encoder (its weights are seeded, not trained), so its context is
synthetic as well: prompt-like rows laid out as a CLIP text encoder's outputs are, so that the
condition has the structure of real prompts (a shared start token, shared padding, a null
prompt) rather than being noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch.nn import functional

from nanosd_nas.spaces import ArchSpec

#: The name of a teacher's own context: at a diffusers folder's root, or ``X.context.safetensors``
#: beside a single-file teacher ``X.safetensors``.
CONTEXT_FILE = "context.safetensors"
#: The tensor picked from a context file that holds several.
CONTEXT_TENSOR = "context"
#: The metadata entry of a context file that names its rows after the first (a JSON list).
CLASSES_ENTRY = "classes"
_FLOATS = (torch.float16, torch.bfloat16, torch.float32)

#: How many prompts the demo's synthetic context holds (the first is the null prompt).
DEMO_PROMPTS = 8
#: The size of the demo's seeded token table.
_DEMO_VOCABULARY = 48
_DEMO_WORDS = (3, 12)  # a prompt's word count, from (inclusive) to (exclusive)


class ContextError(ValueError):
    """A context file that cannot serve as the text condition: unreadable, or of the wrong
    shape or type for the teacher."""


def _expected(dim: int) -> str:
    return (f"expected one float16, bfloat16 or float32 tensor shaped [n, tokens, {dim}] "
            f"(n prompts >= 1, tokens >= 1, {dim} the teacher's cross_attention_dim)")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def load_context(path: Path, spec: ArchSpec) -> torch.Tensor:
    """The text condition in ``path``, checked against ``spec``, as float32 ``[n, tokens, D]``.

    Raises:
        ContextError: the file is missing or unreadable, holds no tensor or several without one
            named ``context``, or its tensor is not a float ``[n, tokens, D]`` with ``D`` the
            spec's ``cross_attention_dim`` and finite values.
    """
    path = Path(path)
    dim = spec.unet.cross_attention_dim
    expected = _expected(dim)
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "no such file"
        raise ContextError(f"context {path}: {kind}; {expected}")
    try:
        with safe_open(path, framework="pt") as stream:
            names = sorted(stream.keys())
            name = _pick(path, names, expected)
            tensor = stream.get_tensor(name)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise ContextError(f"context {path}: not a readable safetensors file "
                           f"({_one_line(error)}); {expected}") from None
    dtype = str(tensor.dtype).removeprefix("torch.")
    found = f"tensor {name!r} is {dtype} shaped {list(tensor.shape)}"
    if (tensor.dtype not in _FLOATS or tensor.ndim != 3 or tensor.shape[2] != dim
            or tensor.shape[0] < 1 or tensor.shape[1] < 1):
        raise ContextError(f"context {path}: {found}; {expected}")
    context = tensor.to(torch.float32).contiguous()
    if not bool(torch.isfinite(context).all()):
        raise ContextError(f"context {path}: {found} holds NaN or infinite values")
    return context


def context_classes(path: Path, rows: int) -> tuple[str, ...]:
    """The names of the rows of the context file at ``path`` after the first (the null prompt):
    the JSON list in its ``classes`` metadata entry when it holds ``rows - 1`` distinct names,
    else ``row 1`` ... ``row rows-1``. A class-conditional teacher (as ``teacher train`` makes
    one) names its classes so; a user's file of prompts need not.
    """
    fallback = tuple(f"row {i}" for i in range(1, rows))
    try:
        with safe_open(path, framework="pt") as stream:
            names = json.loads((stream.metadata() or {}).get(CLASSES_ENTRY, "null"))
    except (SafetensorError, OSError, RuntimeError, ValueError):
        return fallback
    if (not isinstance(names, list) or len(names) != rows - 1 or len(set(names)) != len(names)
            or not all(isinstance(n, str) and n for n in names)):
        return fallback
    return tuple(names)


def _pick(path: Path, names: list[str], expected: str) -> str:
    if len(names) == 1:
        return names[0]
    if CONTEXT_TENSOR in names:
        return CONTEXT_TENSOR
    found = "no tensor" if not names else (
        f"{len(names)} tensors ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}) "
        f"and none named {CONTEXT_TENSOR!r}")
    raise ContextError(f"context {path}: {found}; {expected}")


def demo_context(spec: ArchSpec, *, seed: int = 0, prompts: int = DEMO_PROMPTS) -> torch.Tensor:
    """The demo teacher's text condition, ``[prompts, context_length, cross_attention_dim]``.

    Synthetic, like the demo teacher itself (seeded weights, not a trained model): no text
    encoder computed it. Each row is laid out as a CLIP text encoder's output is: a start token,
    a few word tokens (a seeded vocabulary table plus a position embedding), an end token, then
    the same padding token up to the context length, each token layer-normalised as CLIP's final
    layer norm leaves it. Row 0 is the null prompt (start, end, padding); the others hold 3 to 11
    words each, so prompts differ from one another but share their start token and padding with
    the null prompt. The same ``spec`` and ``seed`` give the same tensor.
    """
    if prompts < 1:
        raise ValueError(f"prompts={prompts} must be at least 1")
    length, dim = spec.unet.context_length, spec.unet.cross_attention_dim
    generator = torch.Generator().manual_seed(seed)
    vocabulary = torch.randn((_DEMO_VOCABULARY, dim), generator=generator)
    start, end, padding = torch.randn((3, dim), generator=generator)
    position = 0.5 * torch.randn((length, dim), generator=generator)
    rows = []
    for prompt in range(prompts):
        words = 0 if prompt == 0 else int(torch.randint(*_DEMO_WORDS, (1,), generator=generator))
        words = min(words, max(length - 2, 0))
        tokens = torch.randint(0, _DEMO_VOCABULARY, (words,), generator=generator)
        row = padding.expand(length, dim).clone()
        row[0] = start
        row[1:1 + words] = vocabulary[tokens] + position[1:1 + words]
        if words + 1 < length:
            row[words + 1] = end + position[words + 1]
        rows.append(row)
    return functional.layer_norm(torch.stack(rows), (dim,))
