"""Values of a study's trials rescored for other devices (``study rescore``): kept in their own
table beside the trials' values, so that the study's own values, front and history never
change, and replaced whole, device by device."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import ColumnElement, delete, select

from nanosd_nas.search.store._models import DeviceRow, RescoredValueRow, TrialRow
from nanosd_nas.search.store._records import ObjectiveValue, RescoredValue, objective_values
from nanosd_nas.search.store._trials import TrialsMixin
from nanosd_nas.search.store._types import utcnow


def _to_rescored(row: RescoredValueRow) -> RescoredValue:
    return RescoredValue(trial_id=row.trial_id, number=row.trial.number, device=row.device.name,
                         name=row.name, value=row.value, provenance=row.provenance,
                         predictor_id=row.predictor_id, stored_at=row.stored_at)


class RescoredMixin(TrialsMixin):
    """Rescored values (see :class:`nanosd_nas.search.store.Store`)."""

    def replace_rescored(self, study: str, device: str,
                         values: Mapping[int, Mapping[str, ObjectiveValue]]) -> int:
        """Make ``values`` (by trial id, then by name) the values of ``study``'s trials on
        ``device``, in one transaction: whatever that device's values of the study were before
        goes, the study's own values and every other device's stay. Returns the values stored.

        Raises:
            StudyNotFound: no such study.
            UnknownDevice: ``device`` is not stored.
            ValueError: a trial id is not a complete trial of the study, or a value is not an
                :class:`ObjectiveValue`.
        """
        checked = {int(trial): objective_values(named) for trial, named in values.items()}
        with self._session(write=True) as session:
            study_id = self._study_row(session, study, lock=True).id
            device_id = self._device_id(session, device)
            if checked:
                found = set(session.scalars(select(TrialRow.id).where(
                    TrialRow.study_id == study_id, TrialRow.state == "complete",
                    TrialRow.id.in_(checked))))
                if set(checked) - found:
                    raise ValueError(f"trial ids {sorted(set(checked) - found)} are not "
                                     f"completed trials of study {study!r}")
            session.execute(delete(RescoredValueRow).where(
                RescoredValueRow.study_id == study_id, RescoredValueRow.device_id == device_id))
            now = utcnow()
            session.add_all(
                RescoredValueRow(study_id=study_id, trial_id=trial, device_id=device_id,
                                 name=name, value=float(value.value),
                                 provenance=value.provenance, predictor_id=value.predictor_id,
                                 stored_at=now)
                for trial, named in sorted(checked.items()) for name, value in named.items())
            return sum(len(named) for named in checked.values())

    def rescored_values(self, study: str, device: str | None = None) -> list[RescoredValue]:
        """The rescored values of ``study`` (only ``device``'s if given), by device name, trial
        number and value name."""
        with self._session() as session:
            where: list[ColumnElement[bool]] = [
                RescoredValueRow.study_id == self._study_row(session, study).id]
            if device is not None:
                where.append(RescoredValueRow.device_id == self._device_id(session, device))
            rows = session.scalars(
                select(RescoredValueRow).join(RescoredValueRow.trial)
                .join(RescoredValueRow.device).where(*where)
                .order_by(DeviceRow.name, TrialRow.number, RescoredValueRow.name))
            return [_to_rescored(row) for row in rows]

    def rescored_devices(self, study: str) -> list[str]:
        """The devices ``study`` was rescored for, by name."""
        with self._session() as session:
            study_id = self._study_row(session, study).id
            return list(session.scalars(
                select(DeviceRow.name).join(RescoredValueRow,
                                            RescoredValueRow.device_id == DeviceRow.id)
                .where(RescoredValueRow.study_id == study_id).distinct()
                .order_by(DeviceRow.name)))

