"""Standalone block modules with the inputs they receive inside their model (PyTorch)."""

from __future__ import annotations

from typing import Any

import torch

from nanosd_nas.spaces import ArchSpec, Block, BuiltModel, build


class BlockCall(torch.nn.Module):
    """Calls a block module as its model does: the captured tensors (positional, then keyword)
    become the inputs; everything else (``None``, flags) is replayed as captured."""

    def __init__(
        self, block: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        super().__init__()
        self.block = block
        self.args = [None if isinstance(a, torch.Tensor) else a for a in args]
        self.tensor_args = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
        self.tensor_names = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
        self.fixed = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        self.inputs = tuple(
            [args[i].detach() for i in self.tensor_args]
            + [kwargs[k].detach() for k in self.tensor_names]
        )

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        args = list(self.args)
        for i, tensor in zip(self.tensor_args, tensors, strict=False):
            args[i] = tensor
        named = dict(zip(self.tensor_names, tensors[len(self.tensor_args):], strict=True))
        out = self.block(*args, **named, **self.fixed)
        result: torch.Tensor = out[0] if isinstance(out, tuple) else out
        return result


def _capture(model: BuiltModel, blocks: list[Block]) -> dict[tuple[str, str], tuple[Any, ...]]:
    roots = {"unet": model.unet, "vae_encoder": model.vae, "vae_decoder": model.vae}
    calls: dict[tuple[str, str], tuple[Any, ...]] = {}
    handles = []
    for block in blocks:
        key = (block.component, block.path)

        def hook(module: Any, args: Any, kwargs: Any, key: tuple[str, str] = key) -> None:
            calls.setdefault(key, (module, tuple(args), dict(kwargs)))

        module = roots[block.component].get_submodule(block.path)
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    inputs, components = model.example_inputs(), model.components()
    try:
        with torch.no_grad():
            for component in sorted({b.component for b in blocks}):
                components[component](*inputs[component])
    finally:
        for handle in handles:
            handle.remove()
    missing = [b.path for b in blocks if (b.component, b.path) not in calls]
    if missing:
        raise RuntimeError(f"blocks never ran in their model: {missing[:3]}")
    return calls


def block_calls(
    spec: ArchSpec, blocks: list[Block]
) -> list[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]:
    """For each block of ``spec``: a module computing it alone, and its inputs in the model."""
    calls = _capture(build(spec), blocks)
    out: list[tuple[torch.nn.Module, tuple[torch.Tensor, ...]]] = []
    for block in blocks:
        module, args, kwargs = calls[(block.component, block.path)]
        wrapper = BlockCall(module, args, kwargs).eval()
        out.append((wrapper, wrapper.inputs))
    return out
