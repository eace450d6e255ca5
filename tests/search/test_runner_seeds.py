"""Runners of one study that start together draw different members, while one runner's draws
follow from the study's seed."""

from __future__ import annotations

from nanosd_nas.search import StudyConfig
from nanosd_nas.search.run import OptunaStudy
from nanosd_nas.search.store import Store


def _config(name: str, sampler: str) -> StudyConfig:
    return StudyConfig.from_document({"name": name, "space": "nanosd", "scale": "mini",
                                      "objectives": [{"name": "params_m",
                                                      "direction": "minimize"}],
                                      "sampler": sampler, "seed": 7, "parallelism": 2,
                                      "initial_design": "none"})


def _draws(study: OptunaStudy, runner_id: str, n: int = 4) -> list[tuple[int, ...]]:
    return [study.choices(study.ask(runner_id)) for _ in range(n)]


def test_runners_starting_together_draw_apart_and_one_runner_repeats_itself(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'nas.db'}", upgrade=True) as store:
        for sampler in ("random", "tpe"):
            config = _config(f"together-{sampler}", sampler)
            space = config.load_space()
            # Both open the study before either asks: the same study, the same trials so far.
            first, second = (OptunaStudy.open(store, config.name, config, space, runner_id=r)
                             for r in ("host-a:101", "host-b:101"))
            drawn = {"host-a:101": _draws(first, "host-a:101"),
                     "host-b:101": _draws(second, "host-b:101")}
            assert drawn["host-a:101"] != drawn["host-b:101"], sampler
            again = _config(f"alone-{sampler}", sampler)
            alone = OptunaStudy.open(store, again.name, again, space, runner_id="host-a:101")
            assert _draws(alone, "host-a:101") == drawn["host-a:101"], sampler
            # The runner that makes a study draws from its seed alone, whichever process it is.
            other = _config(f"other-{sampler}", sampler)
            elsewhere = OptunaStudy.open(store, other.name, other, space, runner_id="host-c:7")
            assert _draws(elsewhere, "host-c:7") == drawn["host-a:101"], sampler
