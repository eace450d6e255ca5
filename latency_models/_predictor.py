"""The learned latency predictor of one device, for one space at one scale.

Per component (U-Net, VAE encoder, VAE decoder), a bootstrap ensemble of ridge regressions maps
the block-table features (block sum, per-kind sums and counts, parameters, MACs) to the measured
latency, fitted for relative error. The ensemble's spread says where the predictor is least sure,
which is where calibration measures next. Pipeline latency = VAE encoder + steps x U-Net + VAE
decoder.

Stored whole as a :class:`PredictorArtifact`: ``predictor.json`` (metadata: identity with the
device fingerprint, features, training set, held-out metrics), ``model.safetensors`` (the
coefficients) and ``block_table.json``; a file store writes them as a folder, a database keeps
them in a row. No pickle anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanosd_nas.latency_models._features import FEATURES, SpaceFeatures, spec_features
from nanosd_nas.latency_models._files import write_bytes_atomic, write_json_atomic
from nanosd_nas.latency_models._records import (
    DamagedArtifact,
    LatencyInputError,
    PredictorIdentity,
)
from nanosd_nas.latency_models._table import BlockLatencyTable
from nanosd_nas.spaces import COMPONENTS, ArchSpec, Space, decompose

ARTIFACT_VERSION = 1
METADATA_FILE, MODEL_FILE, TABLE_FILE = "predictor.json", "model.safetensors", "block_table.json"
_ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass
class RidgeEnsemble:
    """Bootstrap ensemble of weighted ridge regressions on standardised features."""

    mean: np.ndarray  # (F,)
    scale: np.ndarray  # (F,)
    coef: np.ndarray  # (members, F)
    intercept: np.ndarray  # (members,)
    alpha: float

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
        # Weights 1/y^2 make the squared error relative; the intercept is not penalised.
        w = 1.0 / np.maximum(y, 1e-9)
        design = np.hstack([x, np.ones((len(x), 1))]) * w[:, None]
        target = y * w
        penalty = np.diag([alpha] * x.shape[1] + [0.0])
        solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
        return solution[:-1], float(solution[-1])

    @classmethod
    def fit(
        cls, x: np.ndarray, y: np.ndarray, *, members: int = 16, seed: int = 0,
        subsets: Sequence[Sequence[int]] = (),
    ) -> RidgeEnsemble:
        """Fit on features ``x`` (n, F) and latencies ``y`` with all columns, or with the one
        of ``subsets`` (lists of columns) that cross-validates best with its penalty (the
        other columns' coefficients stay zero)."""
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        candidates = [list(s) for s in subsets] or [list(range(x.shape[1]))]
        columns, alpha = cls._choose(z, y, seed, candidates)
        rng = np.random.default_rng(seed)
        coefs, intercepts = [], []
        for member in range(members):
            rows = np.arange(len(y)) if member == 0 else rng.integers(0, len(y), len(y))
            coef = np.zeros(x.shape[1])
            coef[columns], intercept = cls._solve(z[rows][:, columns], y[rows], alpha)
            coefs.append(coef)
            intercepts.append(intercept)
        return cls(mean=mean, scale=scale, coef=np.array(coefs), intercept=np.array(intercepts),
                   alpha=alpha)

    @classmethod
    def _choose(cls, z: np.ndarray, y: np.ndarray, seed: int,
                candidates: list[list[int]]) -> tuple[list[int], float]:
        """The columns and ridge penalty with the lowest 5-fold cross-validated relative
        error (the first candidate and a fixed penalty below 10 members)."""
        if len(y) < 10:
            return candidates[0], 1e-2
        folds = np.random.default_rng(seed).permutation(len(y)) % 5
        best, best_error = (candidates[0], _ALPHAS[0]), np.inf
        for columns in candidates:
            for alpha in _ALPHAS:
                errors = []
                for fold in range(5):
                    train, test = folds != fold, folds == fold
                    coef, intercept = cls._solve(z[train][:, columns], y[train], alpha)
                    errors.append(((z[test][:, columns] @ coef + intercept) / y[test] - 1.0)
                                  ** 2)
                error = float(np.mean(np.concatenate(errors)))
                if error < best_error:
                    best, best_error = (columns, alpha), error
        return best

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Predictions of every member, shape ``(n, members)``."""
        predicted: np.ndarray = ((x - self.mean) / self.scale) @ self.coef.T + self.intercept
        return predicted

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.mean": self.mean, f"{prefix}.scale": self.scale,
                f"{prefix}.coef": self.coef, f"{prefix}.intercept": self.intercept,
                f"{prefix}.alpha": np.array([self.alpha])}

    @classmethod
    def from_tensors(cls, tensors: dict[str, np.ndarray], prefix: str) -> RidgeEnsemble:
        return cls(mean=tensors[f"{prefix}.mean"], scale=tensors[f"{prefix}.scale"],
                   coef=tensors[f"{prefix}.coef"], intercept=tensors[f"{prefix}.intercept"],
                   alpha=float(tensors[f"{prefix}.alpha"][0]))


@dataclass
class Prediction:
    """Predicted latency (ms) per component for a batch, with the ensemble's spread."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]

    def pipeline(self, steps: int) -> np.ndarray:
        """VAE encoder + ``steps`` x U-Net + VAE decoder."""
        total: np.ndarray = pipeline_latency(self.mean, steps)
        return total


def pipeline_latency(per_component: Any, steps: int) -> Any:
    """VAE encoder + ``steps`` x U-Net + VAE decoder (numbers or arrays per component)."""
    return per_component["vae_encoder"] + steps * per_component["unet"] + \
        per_component["vae_decoder"]


class LatencyPredictor:
    """Predicts a device's latency for any member of one space at one scale (or any spec
    whose blocks are all in the block table).

    Args:
        table: the device's block latency table.
        models: one ridge ensemble per component.
        metadata: the artifact's metadata document; its identity fields (see
            :class:`PredictorIdentity`) are checked here and read through :attr:`identity`.
    """

    def __init__(self, *, table: BlockLatencyTable, models: dict[str, RidgeEnsemble],
                 metadata: dict[str, Any]) -> None:
        self.table = table
        self.models = models
        self.metadata = metadata
        self.identity  # noqa: B018 - refuse a predictor without an identity at once
        self._space_features: SpaceFeatures | None = None

    @property
    def identity(self) -> PredictorIdentity:
        """What this predictor is (device, space, scale, statistic, fingerprint, held-out
        accuracy), read from its metadata."""
        return PredictorIdentity.from_metadata(self.metadata, location="this predictor")

    @property
    def device(self) -> str:
        return self.identity.device

    def predict_features(self, features: dict[str, np.ndarray]) -> Prediction:
        mean, std = {}, {}
        for component in COMPONENTS:
            members = self.models[component].predict_members(features[component])
            mean[component], std[component] = members.mean(axis=1), members.std(axis=1)
        return Prediction(mean=mean, std=std)

    def predict_specs(self, specs: list[ArchSpec]) -> Prediction:
        """Predict any specs whose blocks are in the table (``KeyError`` naming one if not)."""
        rows = [spec_features(decompose(spec), self.table.latency) for spec in specs]
        return self.predict_features({c: np.array([r[c] for r in rows]) for c in COMPONENTS})

    def space_features(self, space: Space) -> SpaceFeatures:
        identity = self.identity
        if (space.name, space.digest) != (identity.space, identity.space_digest):
            raise LatencyInputError(f"this predictor is for space {identity.space!r} as it was "
                                    "when calibrated, not for this one; calibrate again")
        if self._space_features is None or self._space_features.space is not space:
            self._space_features = SpaceFeatures(space, identity.scale, self.table.latency)
        return self._space_features

    def predict_choices(self, space: Space, choices: np.ndarray) -> Prediction:
        """Vectorised prediction of a batch of choice vectors of ``space``."""
        return self.predict_features(self.space_features(space).features(choices))

    # -- artifact ---------------------------------------------------------------------------
    def to_artifact(self) -> PredictorArtifact:
        """The whole predictor as a store keeps it: metadata, block table, model bytes."""
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {}
        for component, model in self.models.items():
            tensors.update(model.tensors(component))
        model_bytes = save({k: np.ascontiguousarray(v, dtype=np.float64)
                            for k, v in tensors.items()},
                           metadata={"artifact_version": str(ARTIFACT_VERSION)})
        return PredictorArtifact(
            metadata={**self.metadata, "artifact_version": ARTIFACT_VERSION,
                      "features": list(FEATURES)},
            block_table=self.table.to_dict(), model=model_bytes)

    @classmethod
    def from_artifact(cls, artifact: PredictorArtifact, *, location: str) -> LatencyPredictor:
        """The predictor an artifact holds, whole.

        Raises:
            DamagedArtifact: the artifact is not one this build reads (another version, other
                features, a missing or unreadable part), naming ``location``.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load

        metadata = artifact.metadata
        if metadata.get("artifact_version") != ARTIFACT_VERSION:
            raise DamagedArtifact(f"predictor at {location} has artifact version "
                                  f"{metadata.get('artifact_version')!r}, this build reads "
                                  f"{ARTIFACT_VERSION}; calibrate again")
        if metadata.get("features") != list(FEATURES):
            raise DamagedArtifact(f"predictor at {location} was fitted on other features than "
                                  "this build's; calibrate again")
        PredictorIdentity.from_metadata(metadata, location=location)
        try:
            tensors = load(artifact.model)
            models = {c: RidgeEnsemble.from_tensors(tensors, c) for c in COMPONENTS}
            table = BlockLatencyTable.from_dict(artifact.block_table)
        except (SafetensorError, KeyError, TypeError, ValueError, IndexError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DamagedArtifact(f"predictor at {location} is damaged: {reason[:200]}") from None
        return cls(table=table, models=models, metadata=dict(metadata))

    def save(self, folder: Path) -> None:
        """Write the artifact into ``folder`` (see :func:`write_artifact`)."""
        write_artifact(folder, self.to_artifact())

    @classmethod
    def load(cls, folder: Path) -> LatencyPredictor:
        """The predictor saved in ``folder``; ``FileNotFoundError`` if there is none,
        :class:`DamagedArtifact` if it cannot be read back whole."""
        return cls.from_artifact(read_artifact(folder), location=str(folder))


@dataclass(frozen=True)
class PredictorArtifact:
    """A predictor as stored, in portable formats only (JSON and safetensors, never pickle).

    Attributes:
        metadata: ``predictor.json``: identity, plan, training set, held-out metrics, features.
        block_table: ``block_table.json``: the device's block latency table.
        model: ``model.safetensors``: the ridge ensembles' coefficients.
    """

    metadata: dict[str, Any]
    block_table: dict[str, Any]
    model: bytes


def write_artifact(folder: Path, artifact: PredictorArtifact) -> None:
    """Write ``artifact`` as three files; each is replaced whole, and the metadata goes last
    (removed first), so a folder without ``predictor.json`` is incomplete and a reader never
    pairs an old model with new metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METADATA_FILE).unlink(missing_ok=True)
    write_bytes_atomic(folder / MODEL_FILE, artifact.model)
    write_json_atomic(folder / TABLE_FILE, artifact.block_table)
    write_json_atomic(folder / METADATA_FILE, artifact.metadata)


def read_artifact(folder: Path) -> PredictorArtifact:
    """The artifact saved in ``folder``.

    Raises:
        FileNotFoundError: ``folder`` holds no complete predictor (no ``predictor.json``).
        DamagedArtifact: a file is missing or unreadable, naming the folder.
    """
    metadata_path = folder / METADATA_FILE
    if not metadata_path.is_file():
        raise FileNotFoundError(f"no predictor in {folder}")
    try:
        metadata = json.loads(metadata_path.read_text(encoding="utf-8"))
        table = json.loads((folder / TABLE_FILE).read_text(encoding="utf-8"))
        model = (folder / MODEL_FILE).read_bytes()
    except (OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedArtifact(f"predictor at {folder} is damaged: {reason[:200]}") from None
    if not isinstance(metadata, dict) or not isinstance(table, dict):
        raise DamagedArtifact(f"predictor at {folder} is damaged: its JSON files are not "
                              "objects")
    return PredictorArtifact(metadata=metadata, block_table=table, model=model)


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float | None]:
    """Held-out accuracy: share within +-5% and +-10%, Spearman rank correlation, RMSPE."""
    relative = predicted / measured - 1.0
    rho = spearman(predicted, measured)  # undefined (None) when a side is constant
    return {
        "within_5pct": float(np.mean(np.abs(relative) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(relative) <= 0.10)),
        "spearman": None if np.isnan(rho) else rho,
        "rmspe": float(np.sqrt(np.mean(relative**2))),
        "n": len(measured),
    }


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks, with tied values sharing their mean rank."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="mergesort")] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    mean_ranks: np.ndarray = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    return mean_ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])
