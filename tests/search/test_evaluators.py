"""Choosing an evaluator from a study's ``accuracy`` section: built-in or a user's own."""

from __future__ import annotations

import pytest

from nanosd_nas.search.evaluators import (
    AccuracyConfig,
    BankEvaluator,
    EvaluatorError,
    make_evaluator,
)
from nanosd_nas.spaces import load_space


@pytest.fixture(scope="module")
def smallest_and_largest():
    space = load_space("nanosd")
    return [space.spec(c, "mini") for c in space.extremes()]


def test_builtin_names_give_the_bank_evaluator_in_either_mode(tmp_path):
    distill = make_evaluator(AccuracyConfig(evaluator="distill", distill={"steps": 3}),
                             bank_folder=tmp_path)
    surgery = make_evaluator(AccuracyConfig(evaluator="surgery"), bank_folder=tmp_path)
    assert isinstance(distill, BankEvaluator) and distill.distilled
    assert distill.settings.steps == 3
    assert isinstance(surgery, BankEvaluator) and not surgery.distilled


def test_a_function_reference_scores_candidates(smallest_and_largest):
    evaluator = make_evaluator(AccuracyConfig(evaluator="evaluator_plugin:transformer_share"))
    small, large = (evaluator.evaluate(s).objectives["fidelity"] for s in smallest_and_largest)
    assert small == 0.0 and large == 1.0
    both = make_evaluator(AccuracyConfig(evaluator="evaluator_plugin:two_objectives"))
    assert both.evaluate(smallest_and_largest[1]).objectives == {"fidelity": 1.0,
                                                                 "task_score": 0.5}


def test_a_class_reference_is_made_with_the_study_options(smallest_and_largest):
    evaluator = make_evaluator(AccuracyConfig(evaluator="evaluator_plugin:WidthScore",
                                              options={"factor": 2.0}))
    assert evaluator.evaluate(smallest_and_largest[0]).objectives["fidelity"] == 64.0
    with pytest.raises(EvaluatorError, match="does not take options"):
        make_evaluator(AccuracyConfig(evaluator="evaluator_plugin:WidthScore",
                                      options={"scale": 2.0}))


@pytest.mark.parametrize(("reference", "message"), [
    ("no_such_module_here:score", "does not import: ModuleNotFoundError"),
    ("evaluator_plugin:missing", "has no 'missing'"),
    ("evaluator_plugin:NOT_CALLABLE", "not an AccuracyEvaluator subclass or a function"),
    ("just-a-name", "neither distill nor surgery nor a 'package.module:name'"),
])
def test_a_reference_that_does_not_resolve_says_why(reference, message):
    with pytest.raises(EvaluatorError, match=message):
        make_evaluator(AccuracyConfig(evaluator=reference))


def test_a_score_that_is_not_a_number_is_an_error(smallest_and_largest):
    evaluator = make_evaluator(AccuracyConfig(evaluator="evaluator_plugin:not_a_number"))
    with pytest.raises(EvaluatorError, match="not a finite number"):
        evaluator.evaluate(smallest_and_largest[0])


def test_unknown_fields_of_the_accuracy_section_are_refused():
    with pytest.raises(ValueError, match="teacher_path"):
        AccuracyConfig.model_validate({"evaluator": "distill", "teacher_path": "x"})
