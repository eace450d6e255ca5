"""Property-based fuzz of the parsers a user or a client feeds: study documents (text and
parsed), spec documents and space files. Whatever the input, each answers with its own error
(one line for the user), never another exception: no traceback reaches the user.

Inputs are random JSON-like documents and, more useful, valid documents with one field replaced
by a random value, so that the fuzz reaches the validators behind the first type check.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nanosd_nas import spaces
from nanosd_nas.search import StudyConfig, StudyConfigError
from nanosd_nas.search._study_document import parse_document

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12))
DOCUMENTS = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                         max_leaves=12)

STUDY = {
    "name": "fuzzed", "space": "nanosd", "scale": "mini", "device": "local-cpu",
    "pipeline": {"steps": 1},
    "objectives": [{"name": "fidelity", "direction": "maximize"},
                   {"name": "latency_ms", "direction": "minimize"}],
    "constraints": {"latency_ms": {"max": 40}}, "sampler": "tpe", "n_trials": 20,
    "parallelism": 2, "latency": {"source": "predictor", "verify_front": True},
    "accuracy": {"evaluator": "surgery", "teacher": "demo", "device": "auto",
                 "distill": {"steps": 10, "lr_schedule": "cosine", "holdout": 0.25}},
    "seed": 0,
}
SPEC = spaces.load_space("nanosd").spec((0, 1, 2, 3, 4, 5), "mini").to_dict()
SPACE = yaml.safe_load((Path(spaces.__file__).parent / "presets" / "nanosd.yaml").read_text())


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``document`` (dict keys and list indices)."""
    found = [prefix] if prefix else []
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return copy


def mutations(document: Any) -> st.SearchStrategy[Any]:
    """``document`` with one value (anywhere in it) replaced by a random document."""
    return st.tuples(st.sampled_from(paths(document)), DOCUMENTS).map(
        lambda pair: replaced(document, *pair))


@FUZZ
@given(st.one_of(DOCUMENTS, mutations(STUDY)))
def test_a_study_document_is_valid_or_one_study_error(document):
    try:
        config = StudyConfig.from_document(document, source="fuzz")
    except StudyConfigError as error:
        assert "\n" not in str(error) and str(error).startswith("fuzz")
    else:
        assert StudyConfig.from_document(config.to_document()) == config


@FUZZ
@given(st.one_of(st.text(max_size=200),
                 DOCUMENTS.map(lambda d: json.dumps(d)),
                 mutations(STUDY).map(lambda d: yaml.safe_dump(d, allow_unicode=True))))
def test_study_text_parses_or_is_one_study_error(text):
    try:
        parse_document(text, "fuzz")
    except StudyConfigError as error:
        assert "\n" not in str(error)


@FUZZ
@given(st.one_of(DOCUMENTS, mutations(SPEC)))
def test_a_spec_document_is_valid_or_one_spec_error(document):
    try:
        spec = spaces.ArchSpec.from_dict(document)
    except spaces.SpecError as error:
        assert "\n" not in str(error)
    else:
        assert spaces.ArchSpec.from_json(spec.to_json()) == spec


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(DOCUMENTS, mutations(SPACE)))
def test_a_space_file_loads_or_is_one_preset_error(tmp_path, document):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        space = spaces.load_space(str(path))
    except (spaces.PresetError, spaces.SpecError) as error:
        assert "\n" not in str(error)
    else:
        assert space.size >= 1
