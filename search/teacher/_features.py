"""The feature network of ground truth: a small classifier of the teacher's training classes.

Fréchet distance and KID need image features, and the usual Inception network is neither
shipped nor downloadable here; class accuracy needs a classifier of the teacher's classes. One
small network, trained in-project on the teacher's own data (see the training module), serves
both: :meth:`FeatureNet.forward` gives the features torchmetrics' ``FrechetInceptionDistance``
and ``KernelInceptionDistance`` take as a custom ``feature`` module, :meth:`FeatureNet.logits`
the class scores. Images are float ``[N, 3, S, S]`` in [0, 1], as those metrics pass them with
``normalize=True``; any size works (the network sees them resized to :data:`INPUT_SIZE`).

It is saved beside the teacher as ``features.safetensors`` (fp16), its class names and width in
the file's metadata; nothing in it is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional

#: The file name of the feature network beside a teacher's weights.
FEATURES_FILE = "features.safetensors"
#: The width of the features (kept below the few hundred samples a benchmark generates, so that
#: a Fréchet distance's covariance is estimated from more samples than it has dimensions).
NUM_FEATURES = 64
_WIDTHS = (32, 64, 128, 128)
#: The side the network sees (images are resized to it, antialiased).
INPUT_SIZE = 64


class FeatureNetError(ValueError):
    """A feature network file that is missing, unreadable or of the wrong shape."""


class FeatureNet(nn.Module):
    """A four-level convolutional classifier whose pooled penultimate layer is the feature.

    Attributes:
        classes: the class names, in the order of :meth:`logits`' columns.
        num_features: the feature width (torchmetrics reads this attribute).
    """

    def __init__(self, classes: list[str], num_features: int = NUM_FEATURES) -> None:
        super().__init__()
        self.classes = list(classes)
        self.num_features = num_features
        layers: list[nn.Module] = []
        c_prev = 3
        for width in _WIDTHS:
            layers += [nn.Conv2d(c_prev, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1, stride=2), nn.SiLU()]
            c_prev = width
        self.body = nn.Sequential(*layers)
        self.project = nn.Linear(c_prev, num_features)
        self.head = nn.Linear(num_features, len(self.classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``[N, num_features]`` of ``images`` in [0, 1]."""
        resized = functional.interpolate(images.float(), size=(INPUT_SIZE, INPUT_SIZE),
                                         mode="bilinear", antialias=True, align_corners=False)
        pooled = self.body(resized * 2 - 1).mean(dim=(2, 3))
        features: torch.Tensor = functional.silu(self.project(pooled))
        return features

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores ``[N, classes]`` of ``images`` in [0, 1]."""
        scores: torch.Tensor = self.head(self.forward(images))
        return scores


def save_features(net: FeatureNet, path: Path) -> None:
    """Write ``net`` as fp16 safetensors with its classes and width as metadata."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous()
               for k, v in net.state_dict().items()}
    metadata = {"classes": json.dumps(net.classes), "num_features": str(net.num_features)}
    save_file(tensors, str(path), metadata=metadata)


def load_features(path: Path, *, device: str = "cpu") -> FeatureNet:
    """The feature network saved at ``path``, float32, in eval mode with no gradients.

    Raises:
        FeatureNetError: the file is missing, unreadable or does not fit the network.
    """
    if not path.is_file():
        raise FeatureNetError(f"{path}: no feature network ({FEATURES_FILE} beside the teacher)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        classes = json.loads(metadata["classes"])
        net = FeatureNet(classes, int(metadata["num_features"]))
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except (OSError, SafetensorError, KeyError, ValueError, RuntimeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FeatureNetError(f"{path}: not a feature network ({first})") from None
    return net.to(device).eval().requires_grad_(False)
