"""How a member's choices are presented to a sampler: ordinal, categorical, or one keep/drop
bit per transformer layer; a study keeps the encoding its first trials were asked in."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution

from nanosd_nas.search import StudyConfig, StudyConfigError
from nanosd_nas.search._encoding import (
    DEFAULT_ENCODING,
    ENCODINGS,
    Encoding,
    EncodingError,
    encoding_of_trials,
)
from nanosd_nas.spaces import load_space

SCALED = load_space("nanosd-scaled")


@pytest.mark.parametrize("name", ENCODINGS)
def test_every_member_round_trips(name):
    coding = Encoding(SCALED, name)
    for member in [*SCALED.extremes(), *SCALED.sample(50, seed=1)]:
        params = coding.params(member)
        assert set(params) == set(coding.distributions)
        assert all(coding.distributions[k]._contains(v) for k, v in params.items())
        assert coding.member(params) == tuple(member)


def test_binary_is_one_bit_per_transformer_layer_and_ordinal_elsewhere():
    coding = Encoding(SCALED, "binary")
    dists = coding.distributions
    assert [k for k in dists if k.startswith("D3")] == ["D3.0", "D3.1", "D3.2"]
    assert all(isinstance(dists[k], IntDistribution) and (dists[k].low, dists[k].high) == (0, 1)
               for k in dists if "." in k)
    assert (dists["W2"].low, dists["W2"].high) == (0, 2) and "VAE-enc-layers" in dists
    d3 = [d.name for d in SCALED.dimensions].index("D3")
    member = list(SCALED.extremes()[0])
    member[d3] = SCALED.dimensions[d3].choices.index("TTR")  # index 3
    params = coding.params(member)
    assert [params[f"D3.{j}"] for j in range(3)] == [1, 1, 0]  # T T R: layers 0, 1 kept
    member[d3] = SCALED.dimensions[d3].choices.index("RRT")  # index 4: one bit from TTR's...
    assert [coding.params(member)[f"D3.{j}"] for j in range(3)] == [0, 0, 1]


def test_categorical_has_no_order_and_ordinal_has_one():
    categorical = Encoding(SCALED, "categorical").distributions
    ordinal = Encoding(SCALED, "ordinal").distributions
    assert all(isinstance(d, CategoricalDistribution) for d in categorical.values())
    assert all(isinstance(d, IntDistribution) for d in ordinal.values())
    assert list(ordinal) == [d.name for d in SCALED.dimensions]


def test_a_study_keeps_the_encoding_of_its_first_trials():
    for name in ENCODINGS:
        coding = Encoding(SCALED, name)
        study = optuna.create_study()
        study.tell(study.ask(coding.distributions), 1.0)
        for chosen in ENCODINGS:
            assert encoding_of_trials(SCALED, study.trials, chosen).name == name
    assert encoding_of_trials(SCALED, [], "categorical").name == "categorical"
    assert StudyConfig.from_document({"name": "s", "space": "nanosd"}).encoding == (
        DEFAULT_ENCODING)


def test_unknown_encoding_is_refused():
    with pytest.raises(EncodingError, match="'gray' does not exist; choose from ordinal"):
        Encoding(SCALED, "gray")
    with pytest.raises(StudyConfigError, match="encoding"):
        StudyConfig.from_document({"name": "s", "space": "nanosd", "encoding": "gray"})
    assert StudyConfig.from_document({"name": "s", "space": "nanosd",
                                      "encoding": "binary"}).encoding == "binary"


def test_rows_decode_to_members_without_listing_the_space():
    from nanosd_nas.search._search_tables import decode_rows, member_rows

    for start in np.random.default_rng(0).integers(0, SCALED.size - 5, 20):
        start = int(start)
        members = decode_rows(SCALED, start, start + 5)
        assert member_rows(SCALED, members).tolist() == list(range(start, start + 5))
    assert decode_rows(SCALED, 0, 1)[0].tolist() == list(SCALED.extremes()[0])
    assert decode_rows(SCALED, SCALED.size - 1, SCALED.size)[0].tolist() == list(
        SCALED.extremes()[1])
