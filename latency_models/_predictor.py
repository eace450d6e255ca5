"""The learned latency predictor of one device, for one space at one scale.

Per component (U-Net, VAE encoder, VAE decoder), a bootstrap ensemble of ridge regressions maps
the block-table features (block sum, per-kind sums and counts, parameters, MACs) to the measured
latency, fitted for relative error. The ensemble's spread says where the predictor is least sure,
which is where calibration measures next. Pipeline latency = VAE encoder + steps x U-Net + VAE
decoder.

Saved as a folder: ``predictor.json`` (metadata: device fingerprint, space, scale, statistic,
features, training set, held-out metrics), ``model.safetensors`` (the coefficients) and
``block_table.json``. No pickle anywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nanosd_nas.latency_models._features import FEATURES, SpaceFeatures, spec_features
from nanosd_nas.latency_models._files import project_home, write_json_atomic
from nanosd_nas.latency_models._table import BlockLatencyTable
from nanosd_nas.spaces import COMPONENTS, ArchSpec, Space, decompose

ARTIFACT_VERSION = 1
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
        cls, x: np.ndarray, y: np.ndarray, *, members: int = 16, seed: int = 0
    ) -> RidgeEnsemble:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        z = (x - mean) / scale
        alpha = cls._choose_alpha(z, y, seed)
        rng = np.random.default_rng(seed)
        coefs, intercepts = [], []
        for member in range(members):
            rows = np.arange(len(y)) if member == 0 else rng.integers(0, len(y), len(y))
            coef, intercept = cls._solve(z[rows], y[rows], alpha)
            coefs.append(coef)
            intercepts.append(intercept)
        return cls(mean=mean, scale=scale, coef=np.array(coefs), intercept=np.array(intercepts),
                   alpha=alpha)

    @classmethod
    def _choose_alpha(cls, z: np.ndarray, y: np.ndarray, seed: int) -> float:
        """The ridge penalty with the lowest 5-fold cross-validated relative error."""
        if len(y) < 10:
            return 1e-2
        folds = np.random.default_rng(seed).permutation(len(y)) % 5
        best, best_error = _ALPHAS[0], np.inf
        for alpha in _ALPHAS:
            errors = []
            for fold in range(5):
                train, test = folds != fold, folds == fold
                coef, intercept = cls._solve(z[train], y[train], alpha)
                errors.append(((z[test] @ coef + intercept) / y[test] - 1.0) ** 2)
            error = float(np.mean(np.concatenate(errors)))
            if error < best_error:
                best, best_error = alpha, error
        return best

    def predict_members(self, x: np.ndarray) -> np.ndarray:
        """Predictions of every member, shape ``(n, members)``."""
        return ((x - self.mean) / self.scale) @ self.coef.T + self.intercept

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
        return pipeline_latency(self.mean, steps)


def pipeline_latency(per_component: Any, steps: int) -> Any:
    """VAE encoder + ``steps`` x U-Net + VAE decoder (numbers or arrays per component)."""
    return per_component["vae_encoder"] + steps * per_component["unet"] + \
        per_component["vae_decoder"]


class LatencyPredictor:
    """Predicts a device's latency for any member of one space at one scale (or any spec
    whose blocks are all in the block table)."""

    def __init__(self, *, table: BlockLatencyTable, models: dict[str, RidgeEnsemble],
                 metadata: dict[str, Any]) -> None:
        self.table = table
        self.models = models
        self.metadata = metadata
        self._space_features: SpaceFeatures | None = None

    @property
    def device(self) -> str:
        return str(self.metadata["device"])

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
        if (space.name, space.digest) != (self.metadata["space"],
                                           self.metadata.get("space_digest", space.digest)):
            raise ValueError(f"this predictor is for space {self.metadata['space']!r} as it "
                             "was when calibrated, not for this one; calibrate again")
        if self._space_features is None or self._space_features.space is not space:
            self._space_features = SpaceFeatures(space, self.metadata["scale"], self.table.latency)
        return self._space_features

    def predict_choices(self, space: Space, choices: np.ndarray) -> Prediction:
        """Vectorised prediction of a batch of choice vectors of ``space``."""
        return self.predict_features(self.space_features(space).features(choices))

    # -- artifact ---------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the artifact; the metadata file goes last, so a folder without it is
        incomplete and ignored."""
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        # Without its metadata a folder is incomplete: a reader never pairs old and new files.
        (folder / "predictor.json").unlink(missing_ok=True)
        tensors: dict[str, np.ndarray] = {}
        for component, model in self.models.items():
            tensors.update(model.tensors(component))
        tmp = folder / "model.safetensors.tmp"
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in tensors.items()},
                  str(tmp), metadata={"artifact_version": str(ARTIFACT_VERSION)})
        tmp.replace(folder / "model.safetensors")
        self.table.save(folder / "block_table.json")
        write_json_atomic(folder / "predictor.json", {**self.metadata,
                                                      "artifact_version": ARTIFACT_VERSION,
                                                      "features": list(FEATURES)})

    @classmethod
    def load(cls, folder: Path) -> LatencyPredictor:
        from safetensors.numpy import load_file

        metadata_path = folder / "predictor.json"
        if not metadata_path.exists():
            raise FileNotFoundError(f"no predictor in {folder}")
        metadata = json.loads(metadata_path.read_text())
        if metadata.get("artifact_version") != ARTIFACT_VERSION:
            raise ValueError(f"{metadata_path}: artifact version "
                             f"{metadata.get('artifact_version')!r}, this build reads "
                             f"{ARTIFACT_VERSION}; calibrate again")
        if metadata.get("features") != list(FEATURES):
            raise ValueError(f"{metadata_path}: features differ from this build's; calibrate again")
        tensors = load_file(str(folder / "model.safetensors"))
        models = {c: RidgeEnsemble.from_tensors(tensors, c) for c in COMPONENTS}
        table = BlockLatencyTable.load(folder / "block_table.json")
        return cls(table=table, models=models, metadata=metadata)


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
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(_ranks(np.asarray(a)), _ranks(np.asarray(b)))[0, 1])


class PredictorNotFound(LookupError):
    """The device has no predictor for that space and scale; the message says how to make one."""


def predictor_folder(device: str, space: Space, scale: str, *,
                     home: Path | str | None = None) -> Path:
    """Where the predictor of ``device`` for ``space`` at ``scale`` lives in the project home;
    keyed by the space's digest too, so an edited or same-named user space gets its own."""
    return project_home(home) / "predictors" / device / f"{space.name}-{space.digest}-{scale}"


def load_predictor(device: str, space: Space, scale: str, *,
                   home: Path | str | None = None) -> LatencyPredictor:
    folder = predictor_folder(device, space, scale, home=home)
    if not (folder / "predictor.json").exists():
        raise PredictorNotFound(
            f"device {device!r} has no predictor for space {space.name!r} at scale {scale!r}; "
            f"run 'nanosd-nas device calibrate {device} --space {space.name} --scale {scale}'"
        )
    return LatencyPredictor.load(folder)


def device_predictors(device: str, *, home: Path | str | None = None) -> list[LatencyPredictor]:
    """Every complete predictor of ``device``."""
    root = project_home(home) / "predictors" / device
    folders = sorted(p for p in root.iterdir() if (p / "predictor.json").exists()) \
        if root.is_dir() else []
    return [LatencyPredictor.load(folder) for folder in folders]
