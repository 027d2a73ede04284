"""What each label shows, which driver reaches it and its panel — as its ESL driver last
reported — kept in memory for the stages (the job store persists it in ``label_shown``).

A label's *panel* is the model its driver reported, or the configured default when its driver
reports none; a label no driver has heard has none (its content waits for it). A panel, once
known, stays known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.clock import isoformat_utc
from gateway.drivers.contracts import LabelModel, LabelReport, LabelReportKind

__all__ = ["Shown", "ShownLabels", "model_text"]


def model_text(model: LabelModel) -> str:
    """A panel as the job tables write it: ``296x128:bwr``."""
    return f"{model.width}x{model.height}:{model.palette.value}"


@dataclass(slots=True)
class Shown:
    """One label as its driver last reported it (``label_shown``'s columns)."""

    content_hash: str | None
    evidence: str
    at: str
    device: str | None
    model: str | None

    def row(self) -> tuple[str | None, str, str, str | None, str | None]:
        """The columns after the label."""
        return (self.content_hash, self.evidence, self.at, self.device, self.model)


class ShownLabels:
    """The labels drivers have reported, by label id."""

    def __init__(self, default_model: str) -> None:
        self.default_model = default_model
        self._shown: dict[str, Shown] = {}

    def load(self, shown: Mapping[str, Shown]) -> None:
        self._shown = dict(shown)

    def get(self, label: str) -> Shown | None:
        return self._shown.get(label)

    def __contains__(self, label: object) -> bool:
        return label in self._shown

    def panel(self, label: str) -> str | None:
        """The panel the label's content is drawn for: the model its driver reported, the
        configured default when its driver reports none; None while no driver heard it."""
        shown = self._shown.get(label)
        if shown is None:
            return None
        return shown.model or self.default_model

    def note(self, device: str, report: LabelReport, now: str) -> bool:
        """Keep what the label shows and who reaches it; True when that changed."""
        label = report.label_id
        current = self._shown.get(label)
        model = model_text(report.model) if report.model is not None else None
        if current is None:
            current = Shown(None, "", now, None, None)
            self._shown[label] = current
            changed = True
        else:
            changed = False
        if current.device != device:
            current.device, changed = device, True
        if model is not None and current.model != model:
            current.model, changed = model, True
        # CONFIRMED and SEEN tell what the label shows; FAILED names what it did not get.
        if (
            report.kind is not LabelReportKind.FAILED
            and report.content_hash != current.content_hash
        ):
            current.content_hash = report.content_hash
            current.evidence = report.evidence or report.kind.value
            current.at = isoformat_utc(report.observed_at)
            changed = True
        return changed

    def name_panel(self, label: str, device: str, panel: str, now: str) -> Shown:
        """The ESL system named the label's panel (refusing content drawn for another): that
        is the label's model from now on."""
        shown = self._shown.get(label)
        if shown is None:
            shown = self._shown[label] = Shown(None, "", now, device, None)
        shown.model = panel
        return shown
