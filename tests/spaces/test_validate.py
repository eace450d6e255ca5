"""Validation: one clear SpecError naming the bad field and its value, before anything is built."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from nanosd_nas import spaces
from nanosd_nas.spaces import ArchSpec, SpecError

Document = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Document], None]:
    """A mutation of a spec document: set the dotted ``path`` (list indices as numbers)."""

    def mutate(document: Document) -> None:
        *parents, last = path.split(".")
        node: Any = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


# (case, mutation, expected field, expected value)
CASES = [
    ("channels not divisible by norm groups", _set("unet.levels.1.channels", 650),
     "unet.levels[1].channels", 650),
    ("head dim not whole", _set("unet.levels.0.heads", 7), "unet.levels[0].heads", 7),
    ("empty encoder stage", _set("unet.levels.2.down", []), "unet.levels[2].down", []),
    ("empty decoder stage", _set("unet.levels.0.up", []), "unet.levels[0].up", []),
    ("unknown block kind", _set("unet.levels.2.up.1.block", "mbconv"),
     "unet.levels[2].up[1].block", "mbconv"),
    ("skips cannot match", _set("unet.levels.1.up", [{"block": "resnet"}] * 2),
     "unet.levels[1].up", "2 layers"),
    ("wrong schema version", _set("schema_version", 2), "schema_version", 2),
    ("unknown field", _set("unet.levels.0.kernel_size", 5), "unet.levels[0].kernel_size", 5),
    ("unknown top-level field", _set("pipeline", "x"), "pipeline", "x"),
    ("bad type", _set("latent_size", "large"), "latent_size", "large"),
    ("bad nested type", _set("unet.levels.3.channels", [1280]), "unet.levels[3].channels",
     [1280]),
    ("negative transformer depth", _set("unet.levels.0.down.0.transformer_depth", -1),
     "unet.levels[0].down[0].transformer_depth", -1),
    ("latent not divisible by downsamplings", _set("latent_size", 60), "latent_size", 60),
    ("vae width not divisible by norm groups", _set("vae.encoder_channels.1", 200),
     "vae.encoder_channels[1]", 200),
    ("vae decoder levels differ", _set("vae.decoder_channels", [128, 256, 512]),
     "vae.decoder_channels", [128, 256, 512]),
    ("no levels", _set("unet.levels", []), "unet.levels", []),
]


@pytest.mark.parametrize(("mutate", "field", "value"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_invalid_spec_names_field_and_value(
    sd15: ArchSpec, mutate: Callable[[Document], None], field: str, value: Any
) -> None:
    document = copy.deepcopy(sd15.to_dict())
    mutate(document)
    with pytest.raises(SpecError) as caught:
        ArchSpec.from_dict(document)
    error = caught.value
    assert error.field == field
    assert error.value == value
    assert field in str(error)
    assert repr(value) in str(error)
    assert "\n" not in str(error)


def test_group_norm_message_states_the_groups(sd15: ArchSpec) -> None:
    document = sd15.to_dict()
    document["unet"]["levels"][1]["channels"] = 650
    with pytest.raises(SpecError, match=r"group-norm groups \(32\)"):
        ArchSpec.from_dict(document)


def test_skip_mismatch_message_says_how_many_layers_are_needed(sd15: ArchSpec) -> None:
    document = sd15.to_dict()
    document["unet"]["levels"][1]["up"] = document["unet"]["levels"][1]["up"][:2]
    with pytest.raises(SpecError, match="needs 3 layers"):
        ArchSpec.from_dict(document)


def test_malformed_json_is_a_spec_error() -> None:
    with pytest.raises(SpecError) as caught:
        ArchSpec.from_json('{"unet": ')
    assert caught.value.field == "spec"
    assert "not valid JSON" in str(caught.value)


def test_spec_document_must_be_an_object() -> None:
    with pytest.raises(SpecError, match="JSON object"):
        ArchSpec.from_json("[1, 2]")


def test_spec_error_is_a_value_error() -> None:
    assert issubclass(SpecError, ValueError)


def test_mini_scale_of_a_valid_spec_is_valid(sd15: ArchSpec) -> None:
    mini = spaces.to_scale(sd15, "mini")
    for level in mini.unet.levels:
        assert level.channels % mini.unet.norm_groups == 0
        assert level.channels % level.heads == 0


def test_build_rejects_an_invalid_spec_constructed_directly(sd15: ArchSpec) -> None:
    document = sd15.to_dict()
    document["unet"]["levels"][0]["channels"] = 330
    unchecked = ArchSpec.model_validate(document)  # skips the semantic checks of from_dict
    with pytest.raises(SpecError) as caught:
        spaces.build(unchecked, device="meta")
    assert caught.value.field == "unet.levels[0].channels"
