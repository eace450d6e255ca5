"""A study's Optuna study: in the service's database (RDB storage), its sampler, how a member's
choices are presented to it, its initial design, and what it is told of a trial."""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from nanosd_nas.search._encoding import encoding_of_trials
from nanosd_nas.search._samplers import initial_design, make_sampler, runner_seed
from nanosd_nas.search._study_config import StudyConfig
from nanosd_nas.search.store import Store, TrialRecord
from nanosd_nas.spaces import ArchSpec, Space, stage_layouts

#: The user attribute of an Optuna trial naming the runner that asked it (``HOST:PID``).
RUNNER_ATTR = "nas_runner"
#: User attributes of an Optuna trial that say which member it is, so that a plain Optuna
#: reader (optuna-dashboard) shows the architecture: its spec id, the attention layout of each
#: U-Net stage (``E1:TT E2:TR ...``) and its widths (U-Net levels, VAE encoder and decoder).
SPEC_ATTR, LAYOUT_ATTR, WIDTHS_ATTR = "nas_spec_id", "nas_layout", "nas_widths"
#: The user attribute of a complete Optuna trial with every stored value and its provenance
#: (``{name: {provenance: value}}``).
VALUES_ATTR = "nas_values"
#: The Optuna study's user attribute with the latency measured on the device for front members
#: after they were told (``{trial number: ms}``): a told trial's own attributes are final.
MEASURED_ATTR = "nas_measured_latency_ms"


class OptunaStudy:
    """The Optuna side of one stored study.

    Build it with :meth:`open`. Choices are presented in the study's encoding
    (:mod:`search._encoding`), or in the one its first trials were asked in (a study begun by
    an earlier build keeps it: Optuna refuses a parameter that changes its kind).
    Constraints are named as :meth:`StudyConfig.constraint_values` names them, but as
    ``NAME<=MAX`` / ``NAME>=MIN`` in a study begun by an earlier build that named them so (the
    GP sampler refuses trials whose constraint names differ).
    """

    def __init__(self, *, study: optuna.Study, config: StudyConfig, space: Space) -> None:
        self.study = study
        self.config = config
        self.space = space
        self.names = [d.name for d in space.dimensions]
        trials = study.get_trials(deepcopy=False)
        self.coding = encoding_of_trials(space, trials, config.encoding)
        self.encoding = self.coding.distributions
        self._bound_names = any(("<=" in key or ">=" in key)
                                for trial in trials for key in trial.constraints)

    @classmethod
    def open(cls, store: Store, name: str, config: StudyConfig, space: Space, *,
             runner_id: str = "") -> OptunaStudy:
        """The study's Optuna study (created on first use), its sampler seeded from the
        study's seed, the trials it already has and ``runner_id`` (:func:`runner_seed`): a
        seeded sampler rebuilt by a resumed run would otherwise replay the draws of the first,
        and runners starting together would ask the same members.

        The runner that creates the Optuna study (the storage lets exactly one do so) seeds
        from the study alone, so a fresh study run by one runner draws the same members every
        time; every other runner also mixes in its ``runner_id``."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        parallel = config.parallelism > 1
        storage = store.optuna_storage()
        try:
            study = optuna.create_study(
                study_name=name, storage=storage, directions=config.directions,
                sampler=make_sampler(config.sampler, runner_seed(config.seed, 0, ""),
                                     parallel=parallel))
            runner_id = ""  # this runner made the study: its draws follow from the seed
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(
                study_name=name, storage=storage,
                sampler=make_sampler(config.sampler, runner_seed(config.seed, 0, runner_id),
                                     parallel=parallel))
        if study.metric_names is None:  # a study begun by an earlier build has none yet
            with warnings.catch_warnings():  # experimental since Optuna 3.2, kept since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(list(config.objective_names))
        asked = len(study.get_trials(deepcopy=False))
        if asked:
            study.sampler = make_sampler(config.sampler,
                                         runner_seed(config.seed, asked, runner_id),
                                         parallel=parallel)
        return cls(study=study, config=config, space=space)

    # -- asking ---------------------------------------------------------------------------

    def ask(self, runner_id: str) -> optuna.Trial:
        """A new trial, named as ``runner_id``'s at once (should the runner die now)."""
        trial = self.study.ask(self.encoding)
        trial.set_user_attr(RUNNER_ATTR, runner_id)
        return trial

    @staticmethod
    def describe(trial: optuna.Trial, spec: ArchSpec) -> None:
        """Name the member ``trial`` asked for in its user attributes (see :data:`SPEC_ATTR`)."""
        trial.set_user_attr(SPEC_ATTR, spec.spec_id)
        trial.set_user_attr(LAYOUT_ATTR, " ".join(f"{stage}:{layout}" for stage, layout
                                                  in stage_layouts(spec).items()))
        trial.set_user_attr(WIDTHS_ATTR, {"unet": [level.channels for level in spec.unet.levels],
                                          "vae_encoder": list(spec.vae.encoder_channels),
                                          "vae_decoder": list(spec.vae.decoder_channels)})

    def choices(self, trial: optuna.Trial) -> tuple[int, ...]:
        """The member ``trial`` names, as the space's choice vector."""
        return self.coding.member(trial.params)

    def ask_again(self, params: Mapping[str, object]) -> None:
        """Queue ``params`` to be asked again."""
        self.study.enqueue_trial(dict(params))

    def seed_initial_design(self, store: Store) -> int:
        """Queue the study's initial design (once per study, whichever runner comes first);
        returns how many trials were queued."""
        if self.config.design == "none":
            return 0
        design = initial_design(self.space.cardinalities, self.config.n_trials,
                                self.config.seed)
        with store.exclusive(f"initial design of {self.study.study_name}"):
            if "initial_design" in self.study.user_attrs:
                return 0  # queued by an earlier runner
            asked = {self._member_or_none(t) for t in self.study.get_trials(deepcopy=False)}
            if not asked <= set(design):
                return 0  # a study begun before initial designs: it goes on as it was
            # Whatever a runner that died half-way through left queued is not queued twice.
            missing = [member for member in design if member not in asked]
            for member in missing:
                self.ask_again(self.coding.params(member))
            self.study.set_user_attr("initial_design", {"kind": self.config.design,
                                                        "trials": len(design)})
        return len(missing)

    def _member_or_none(self, trial: FrozenTrial) -> tuple[int, ...] | None:
        """The member ``trial`` names, or None for one without all its parameters (queued)."""
        try:
            return self.coding.member(trial.params)
        except KeyError:
            return None

    # -- telling --------------------------------------------------------------------------

    def constraints(self, values: Mapping[str, float]) -> dict[str, float]:
        """Optuna's constraint values of a trial's ``values`` (``<= 0`` is satisfied), under
        the names this study uses."""
        violations = self.config.constraint_values(values)
        if not self._bound_names:
            return violations
        renamed = {}
        for key, violation in violations.items():
            name, _, end = key.rpartition(".")
            bound = self.config.constraints[name]
            renamed[f"{name}<={bound.max:g}" if end == "max" else f"{name}>={bound.min:g}"] = (
                violation)
        return renamed

    def tell_complete(self, trial: optuna.Trial, stored: TrialRecord) -> None:
        """Tell Optuna a trial the store has completed, with the store's values."""
        plain = {v.name: float(v.value) for v in stored.values}
        plain.update({n: value for n in plain if (value := stored.value(n)) is not None})
        for key, value in self.constraints(plain).items():
            trial.set_constraint(key, value)
        trial.set_user_attr("nas_trial_id", stored.id)
        by_name: dict[str, dict[str, float]] = {}
        for kept in stored.values:
            by_name.setdefault(kept.name, {})[kept.provenance] = float(kept.value)
        trial.set_user_attr(VALUES_ATTR, by_name)
        self.study.tell(trial, [plain[n] for n in self.config.objective_names])

    def record_measured(self, latencies: Mapping[int, float]) -> None:
        """Keep the latency measured for told trials (by trial number) in the study's user
        attributes (:data:`MEASURED_ATTR`), beside any kept before."""
        kept = dict(self.study.user_attrs.get(MEASURED_ATTR, {}))
        kept.update({str(number): float(ms) for number, ms in latencies.items()})
        self.study.set_user_attr(MEASURED_ATTR, kept)

    def tell_failed(self, trial: optuna.Trial) -> bool:
        """Tell Optuna a trial failed; False if it was told already (another runner's
        recovery settled it first)."""
        try:
            self.study.tell(trial, state=TrialState.FAIL)
        except (ValueError, RuntimeError):
            return False
        return True

    def trial(self, frozen: FrozenTrial) -> optuna.Trial:
        """The live trial of ``frozen``, to tell."""
        return optuna.Trial(self.study, frozen._trial_id)

    def running(self) -> list[FrozenTrial]:
        """Trials Optuna handed out and was not told about yet."""
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
