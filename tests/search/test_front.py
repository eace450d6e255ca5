"""Pareto fronts and hypervolumes: hand-computed sets, mixed directions, brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nanosd_nas.search._front import (
    FrontTracker,
    hypervolume,
    pareto_mask,
    reference_point,
    study_reference,
)

MIN2 = ("minimize", "minimize")
MIN3 = ("minimize", "minimize", "minimize")

# Front (1,5), (2,3), (4,1); (3,4) is dominated by (2,3) and (5,5) by all. Against (6,6) the
# front covers x in [1,2) above 5 (1), [2,4) above 3 (6) and [4,6) above 1 (10): 17.
SQUARE = np.array([[1, 5], [3, 4], [2, 3], [5, 5], [4, 1]], dtype=float)
SQUARE_FRONT = [True, False, True, False, True]
SQUARE_HV = 17.0

# Front a=(1,2,3), b=(2,1,3), c=(3,3,1); d=(2,2,4) is dominated by a. Against (4,4,4):
# |A|=6, |B|=6, |C|=3, |AB|=4, |AC|=|BC|=|ABC|=1, so the union is 6+6+3-4-1-1+1 = 10.
CUBE = np.array([[1, 2, 3], [2, 1, 3], [2, 2, 4], [3, 3, 1]], dtype=float)
CUBE_FRONT = [True, True, False, True]
CUBE_HV = 10.0


def brute_mask(losses: np.ndarray) -> np.ndarray:
    n = len(losses)
    return np.array([not any(np.all(losses[j] <= losses[i]) and np.any(losses[j] < losses[i])
                             for j in range(n)) for i in range(n)])


def brute_hypervolume(losses: np.ndarray, reference: np.ndarray) -> float:
    """Sum of the grid cells (cut at every coordinate) whose lower corner a point dominates."""
    losses = np.minimum(losses, reference)
    axes = [np.unique(np.append(losses[:, k], reference[k])) for k in range(losses.shape[1])]
    volume = 0.0
    for cell in itertools.product(*(range(len(a) - 1) for a in axes)):
        corner = np.array([a[i] for a, i in zip(axes, cell, strict=True)])
        if np.any(np.all(losses <= corner, axis=1)):
            volume += float(np.prod([a[i + 1] - a[i] for a, i in zip(axes, cell, strict=True)]))
    return volume


def test_hand_made_2d_front_and_hypervolume():
    assert pareto_mask(SQUARE, MIN2).tolist() == SQUARE_FRONT
    assert hypervolume(SQUARE, MIN2, [6, 6]) == pytest.approx(SQUARE_HV)
    assert hypervolume(SQUARE[SQUARE_FRONT], MIN2, [6, 6]) == pytest.approx(SQUARE_HV)


def test_hand_made_3d_front_and_hypervolume():
    assert pareto_mask(CUBE, MIN3).tolist() == CUBE_FRONT
    assert hypervolume(CUBE, MIN3, [4, 4, 4]) == pytest.approx(CUBE_HV)


def test_maximised_objectives_mirror_minimised_ones():
    mixed = SQUARE * [-1, 1]
    directions = ("maximize", "minimize")
    assert pareto_mask(mixed, directions).tolist() == SQUARE_FRONT
    assert hypervolume(mixed, directions, [-6, 6]) == pytest.approx(SQUARE_HV)
    flipped = CUBE * [1, -1, 1]
    assert hypervolume(flipped, ("minimize", "maximize", "minimize"), [4, -4, 4]) == \
        pytest.approx(CUBE_HV)


def test_equal_points_are_all_kept_or_all_dropped():
    values = np.array([[1, 2], [1, 2], [2, 2], [2, 2], [0, 3]], dtype=float)
    assert pareto_mask(values, MIN2).tolist() == [True, True, False, False, True]
    assert hypervolume(values, MIN2, [3, 4]) == pytest.approx(hypervolume(
        values[[0, 4]], MIN2, [3, 4]))


def test_points_past_the_reference_add_nothing():
    assert hypervolume([[1, 1], [0, 9]], MIN2, [2, 2]) == pytest.approx(1.0)
    assert hypervolume(np.empty((0, 2)), MIN2, [2, 2]) == 0.0


def test_reference_point_is_worse_than_every_value_by_the_margin():
    values = np.array([[1.0, 10.0, 5.0], [3.0, 30.0, 5.0]])
    point = reference_point(values, ("minimize", "maximize", "minimize"), margin=0.5)
    assert point.tolist() == pytest.approx([4.0, 0.0, 7.5])  # flat range: margin x |value|
    with pytest.raises(ValueError, match="margin"):
        reference_point(values, ("minimize",) * 3, margin=0)


def test_the_study_reference_rule_places_each_kind_of_objective():
    names = ("fidelity", "latency_ms", "params_m", "clip_score", "macs_g", "vae_psnr_db")
    directions = ("maximize", "minimize", "minimize", "maximize", "minimize", "minimize")
    ranges = {"latency_ms": (50.0, 60.0), "params_m": (4.0, 6.0)}
    first = {"fidelity": 12.0, "clip_score": 0.25, "macs_g": 3.0, "vae_psnr_db": -4.0}
    point = study_reference(names, directions, ranges=ranges, first=first)
    # dB at 0; costs 10% beyond the space's worst; the rest a step beyond the first value
    # (a minimised dB objective too: 0 dB is a floor only when higher is better).
    assert point.tolist() == pytest.approx([0.0, 66.0, 6.6, -0.75, 6.0, 0.0])
    # A cost maximised: below its lowest value over the space; a zero worst moves by margin.
    assert study_reference(["params_m"], ["maximize"], ranges=ranges).tolist() == \
        pytest.approx([3.6])
    assert study_reference(["macs_g"], ["minimize"], ranges={"macs_g": (0.0, 0.0)}).tolist() \
        == pytest.approx([0.1])
    # Every value of the space within the ranges is strictly better than the point.
    assert hypervolume([[20.0, 50.0, 4.0]], ("maximize", "minimize", "minimize"),
                       point[:3]) == pytest.approx(20.0 * 16.0 * 2.6)
    # 0 dB, unless the space is known to score that low.
    decibels = {"fidelity": (-2.0, 30.0)}
    assert study_reference(["fidelity"], ["maximize"], ranges=decibels).tolist() == \
        pytest.approx([-2.2])
    assert study_reference(["fidelity"], ["maximize"], ranges={"fidelity": (9.0, 30.0)}) \
        .tolist() == [0.0]
    with pytest.raises(ValueError, match="'clip_score' has no range"):
        study_reference(["clip_score"], ["maximize"], ranges={})
    with pytest.raises(ValueError, match="2 directions"):
        study_reference(["fidelity"], MIN2, ranges={})


@pytest.mark.parametrize(("bad", "message"), [
    ({"values": [[1.0, 2.0]], "directions": ("minimize",)}, "do not match 1 objectives"),
    ({"values": [[1.0, float("nan")]], "directions": MIN2}, "row 0"),
    ({"values": [[1.0, 2.0]], "directions": ("minimise", "minimize")}, "'minimise'"),
])
def test_bad_input_names_the_problem(bad, message):
    with pytest.raises(ValueError, match=message):
        pareto_mask(**bad)


@pytest.mark.parametrize("seed", range(12))
def test_front_and_hypervolume_equal_brute_force_on_random_sets(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed % 3
    directions = tuple(rng.choice(["minimize", "maximize"], size=k))
    values = rng.integers(0, 6, size=(int(rng.integers(1, 14)), k)).astype(float)  # ties
    losses = values * [1 if d == "minimize" else -1 for d in directions]
    assert pareto_mask(values, directions).tolist() == brute_mask(losses).tolist()
    reference = reference_point(values, directions, margin=0.2)
    signs = np.array([1 if d == "minimize" else -1 for d in directions])
    assert hypervolume(values, directions, reference) == pytest.approx(
        brute_hypervolume(losses, reference * signs))


@pytest.mark.parametrize("seed", range(4))
def test_the_front_is_the_one_optuna_reports(seed):
    """One front definition: a study's best trials are the rows pareto_mask keeps (ties too)."""
    import optuna

    rng = np.random.default_rng(seed)
    directions = ("maximize", "minimize", "minimize")[:2 + seed % 2]
    values = rng.integers(0, 5, size=(40, len(directions))).astype(float)
    study = optuna.create_study(directions=list(directions))
    for row in values:
        study.add_trial(optuna.trial.create_trial(values=row.tolist(), params={},
                                                  distributions={}))
    best = {t.number for t in study.best_trials}
    assert best == set(np.flatnonzero(pareto_mask(values, directions)).tolist())


def test_tracker_keeps_infeasible_trials_off_the_front():
    tracker = FrontTracker(MIN2, reference=[6, 6])
    updates = [tracker.add(v) for v in SQUARE[:3]]
    assert [u.on_front for u in updates] == [True, True, True]  # (3,4) until (2,3) lands
    assert updates[-1].front == (0, 2)
    before = updates[-1].hypervolume
    blocked = tracker.add([0, 0], feasible=False, key=99)
    assert not blocked.on_front and blocked.front == (0, 2)
    assert blocked.hypervolume == before and (blocked.n_seen, blocked.n_feasible) == (4, 3)
    for v in SQUARE[3:]:
        last = tracker.add(v)
    assert tracker.front == [0, 2, 5] and last.front == (0, 2, 5)
    assert last.hypervolume == pytest.approx(SQUARE_HV)
    history = tracker.history()
    assert len(history) == 6 and history == sorted(history)
    assert tracker.front_values.tolist() == SQUARE[[0, 2, 4]].tolist()


def test_tracker_uses_the_keys_it_is_given():
    tracker = FrontTracker(MIN3, reference=[4, 4, 4])
    for number, v in zip((10, 11, 12, 13), CUBE, strict=True):
        tracker.add(v, key=number)
    assert tracker.front == [10, 11, 13]
    assert tracker.history()[-1] == pytest.approx(CUBE_HV)


def test_tracker_without_a_reference_rebases_its_history_on_the_latest_one():
    tracker = FrontTracker(MIN2, margin=0.1)
    assert tracker.reference is None and tracker.add([9, 9], feasible=False).hypervolume == 0
    for v in SQUARE:
        tracker.add(v)
    reference = tracker.reference
    assert reference.tolist() == pytest.approx(reference_point(SQUARE, MIN2, 0.1).tolist())
    history = tracker.history()
    assert history[0] == 0.0  # the infeasible first report
    expected = [hypervolume(SQUARE[:n], MIN2, reference) for n in range(1, 6)]
    assert history[1:] == pytest.approx(expected)
