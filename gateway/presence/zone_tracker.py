"""Which zone each identity is in, from sightings (identity, receiver, RSSI, instant): sans-IO.

Fed :meth:`ZoneTracker.sight` for every advertisement (already reduced to an identity: an
enrolled tag's name or a pseudonym) and :meth:`ZoneTracker.tick` on a timer; both return the
:class:`ZoneChange` s they decided, with the instants they happened at. No clock is read: the
caller passes monotonic seconds.

The steps follow the field's practice (research/ble.md, "Presence and dwell"):

1. **Smoothing** per identity and receiver: the strongest RSSI per ``bin_s`` bin; a bin further
   than ``spike_clamp_db`` from the running value is clamped to it (one reflection does not
   move a tag); then an exponential moving average with weight ``ema_alpha``.
2. **Zones** are receivers with an RSSI threshold; a zone's signal is the best smoothed value
   of its receivers heard within the identity's no-sighting timeout.
3. **Enter** when a zone's signal stays at or above its threshold for ``enter_hold_s``; the
   visit starts when it first got there. **Exit** when the signal stays below the threshold by
   ``exit_margin_db`` for ``exit_hold_s``, or nothing was heard for the no-sighting timeout:
   ``clamp(gone_factor * longest advert gap + gone_extra_s, gone_min_s, gone_max_s)``, learned
   per identity. The visit ends at its last sighting at or above the threshold (the margin
   only keeps a wavering tag from leaving; it does not lengthen the visit).
4. **Switch** to another zone only when its signal beats the current zone's by
   ``switch_margin_db`` for ``switch_hold_s``.

What a visit is worth (merging short gaps, dropping short visits) is :mod:`.sessions`' job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["PresenceSettings", "ZoneChange", "ZoneSpec", "ZoneTracker"]


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """The presence logic's tuning; defaults meet the accuracy goals of
    ``bench/presence_accuracy.py`` (two zones 3 m apart, one receiver each)."""

    bin_s: float = 1.0
    ema_alpha: float = 0.7  # on 1 s maxima: the bins already smooth, the EMA must not lag
    spike_clamp_db: float = 10.0
    enter_hold_s: float = 2.0
    exit_margin_db: float = 6.0
    exit_hold_s: float = 3.0
    switch_margin_db: float = 4.0
    switch_hold_s: float = 3.0
    gone_factor: float = 3.0
    gone_extra_s: float = 5.0
    gone_min_s: float = 10.0
    gone_max_s: float = 60.0
    max_identities: int = 20_000  # beyond: the longest unseen are forgotten

    def __post_init__(self) -> None:
        if not 0 < self.ema_alpha <= 1:
            raise ValueError("ema_alpha must be in (0, 1]")
        if self.bin_s <= 0 or self.gone_min_s <= 0 or self.gone_max_s < self.gone_min_s:
            raise ValueError("bin_s and gone_min_s must be positive, gone_max_s >= gone_min_s")
        numbers = (
            self.spike_clamp_db,
            self.enter_hold_s,
            self.exit_margin_db,
            self.exit_hold_s,
            self.switch_margin_db,
            self.switch_hold_s,
            self.gone_factor,
            self.gone_extra_s,
        )
        if any(number < 0 for number in numbers):
            raise ValueError("presence holds, margins and factors cannot be negative")
        if self.max_identities < 1:
            raise ValueError("max_identities must be at least 1")


@dataclass(frozen=True, slots=True)
class ZoneSpec:
    """A zone: the receivers that cover it and the smoothed RSSI that counts as inside."""

    name: str
    receivers: tuple[str, ...]
    enter_rssi: float


@dataclass(frozen=True, slots=True)
class ZoneChange:
    """``identity`` entered (``entered``) or left a zone. For an exit ``started`` is when the
    visit began and ``at`` its last sighting in the zone; for an entry both are the start."""

    identity: str
    zone: str
    entered: bool
    started: float
    at: float
    sightings: int = 0

    @property
    def dwell_s(self) -> float:
        return max(0.0, self.at - self.started)


@dataclass(slots=True)
class _Track:
    """One identity as heard by one receiver."""

    smoothed: float | None = None
    bin_start: float = 0.0
    bin_max: float | None = None
    last_seen: float = 0.0
    bins: int = 0  # bins with a sighting: one alone (a reflection) does not count


@dataclass(slots=True)
class _Candidate:
    zone: str
    since: float


@dataclass(slots=True)
class _Identity:
    tracks: dict[str, _Track] = field(default_factory=dict)
    last_seen: float = 0.0
    longest_gap: float = 0.0
    zone: str | None = None
    started: float = 0.0
    last_in_zone: float = 0.0
    sightings: int = 0
    below_since: float | None = None
    candidate: _Candidate | None = None


class ZoneTracker:
    """Zone presence of every identity heard (see the module docstring)."""

    def __init__(self, zones: Iterable[ZoneSpec], settings: PresenceSettings | None = None) -> None:
        self.settings = settings or PresenceSettings()
        self.zones: dict[str, ZoneSpec] = {}
        self._zone_of: dict[str, list[str]] = {}
        for zone in zones:
            if zone.name in self.zones:
                raise ValueError(f"zone {zone.name!r} is defined twice")
            self.zones[zone.name] = zone
            for receiver in zone.receivers:
                self._zone_of.setdefault(receiver, []).append(zone.name)
        self._identities: dict[str, _Identity] = {}

    # --- inputs ---------------------------------------------------------------------------

    def sight(self, identity: str, receiver: str, rssi: float, now: float) -> list[ZoneChange]:
        """One advertisement of ``identity`` heard by ``receiver``; receivers of no zone are
        ignored."""
        if receiver not in self._zone_of:
            return []
        state = self._identities.get(identity)
        if state is None:
            if len(self._identities) >= self.settings.max_identities:
                self._forget_oldest()
            state = self._identities[identity] = _Identity(last_seen=now)
        else:
            gap = now - state.last_seen
            if gap > state.longest_gap:
                state.longest_gap = gap
            else:  # let a long-ago gap fade, so a beacon that sped up is timed out sooner
                state.longest_gap = 0.98 * state.longest_gap + 0.02 * gap
            state.last_seen = max(state.last_seen, now)
        track = state.tracks.get(receiver)
        if track is None:
            track = state.tracks[receiver] = _Track(bin_start=now)
        self._smooth(track, float(rssi), now)
        track.last_seen = now
        return self._decide(identity, state, now, heard_by=receiver)

    def tick(self, now: float) -> list[ZoneChange]:
        """Time passed: exits of identities gone silent, holds that matured."""
        changes: list[ZoneChange] = []
        forget: list[str] = []
        for identity, state in self._identities.items():
            changes.extend(self._decide(identity, state, now, heard_by=None))
            if state.zone is None and now - state.last_seen > self._gone_after(state):
                forget.append(identity)
        for identity in forget:
            del self._identities[identity]
        return changes

    def close(self) -> list[ZoneChange]:
        """Every open visit ends now (at its last sighting): the service is stopping."""
        changes = [
            self._exit(identity, state)
            for identity, state in self._identities.items()
            if state.zone is not None
        ]
        self._identities.clear()
        return changes

    # --- views ----------------------------------------------------------------------------

    def occupancy(self) -> dict[str, int]:
        """Identities in each zone now."""
        counts = dict.fromkeys(self.zones, 0)
        for state in self._identities.values():
            if state.zone is not None:
                counts[state.zone] += 1
        return counts

    def present(self) -> Mapping[str, tuple[str, float, float]]:
        """Identity → (zone, visit start, last sighting inside) for everyone in a zone now."""
        return {
            identity: (state.zone, state.started, state.last_in_zone)
            for identity, state in self._identities.items()
            if state.zone is not None
        }

    def __len__(self) -> int:
        return len(self._identities)

    # --- the steps ------------------------------------------------------------------------

    def _smooth(self, track: _Track, rssi: float, now: float) -> None:
        self._roll(track, now)
        if track.bin_max is None:
            track.bins += 1
            track.bin_max = rssi
        else:
            track.bin_max = max(track.bin_max, rssi)
        if track.smoothed is None:  # the first bin shows at once: entries are not delayed
            track.smoothed = rssi

    def _roll(self, track: _Track, now: float) -> None:
        """Close ``track``'s bin if ``bin_s`` has passed since it opened; the next opens now."""
        if track.bin_max is not None and now - track.bin_start >= self.settings.bin_s:
            self._close_bin(track)
            track.bin_start = now

    def _close_bin(self, track: _Track) -> None:
        settings = self.settings
        value = track.bin_max
        track.bin_max = None
        if value is None:
            return
        if track.smoothed is None:
            track.smoothed = value
            return
        clamp = settings.spike_clamp_db
        value = min(max(value, track.smoothed - clamp), track.smoothed + clamp)
        track.smoothed += settings.ema_alpha * (value - track.smoothed)

    def _gone_after(self, state: _Identity) -> float:
        settings = self.settings
        learned = settings.gone_factor * state.longest_gap + settings.gone_extra_s
        return min(max(learned, settings.gone_min_s), settings.gone_max_s)

    def _signals(self, state: _Identity, now: float) -> dict[str, float]:
        """Each zone's best smoothed RSSI over its receivers that heard the identity in more
        than one bin and recently (within twice its longest advert gap, at least two bins)."""
        recent = min(self._gone_after(state), max(2 * self.settings.bin_s, 2 * state.longest_gap))
        signals: dict[str, float] = {}
        for receiver, track in state.tracks.items():
            self._roll(track, now)  # a bin that ended without a later sighting counts too
            if track.smoothed is None or track.bins < 2 or now - track.last_seen > recent:
                continue
            for zone in self._zone_of[receiver]:
                if track.smoothed > signals.get(zone, float("-inf")):
                    signals[zone] = track.smoothed
        return signals

    def _decide(
        self, identity: str, state: _Identity, now: float, *, heard_by: str | None
    ) -> list[ZoneChange]:
        """What changes now; ``heard_by``: the receiver whose sighting this is (None: a tick)."""
        settings = self.settings
        signals = self._signals(state, now)
        qualified = {
            zone: signal
            for zone, signal in signals.items()
            if signal >= self.zones[zone].enter_rssi
        }
        best = max(qualified, key=qualified.__getitem__) if qualified else None
        if state.zone is None:
            return self._maybe_enter(identity, state, best, now)
        current = state.zone
        enter_rssi = self.zones[current].enter_rssi
        inside = signals.get(current)
        if inside is not None and inside >= enter_rssi - settings.exit_margin_db:
            state.below_since = None
            # The visit lasts while its own receivers hear it truly inside.
            if inside >= enter_rssi and heard_by in self.zones[current].receivers:
                state.last_in_zone = now
                state.sightings += 1
        elif state.below_since is None:
            state.below_since = now
        gone = now - state.last_seen > self._gone_after(state)
        weak_for_long = (
            state.below_since is not None and now - state.below_since >= settings.exit_hold_s
        )
        if gone or weak_for_long:
            state.candidate = None
            exit_change = self._exit(identity, state)
            return [exit_change, *self._maybe_enter(identity, state, best, now)]
        # A switch needs a clearly better zone for long enough.
        if best is not None and best != current:
            margin = qualified[best] - (inside if inside is not None else float("-inf"))
            if margin >= settings.switch_margin_db:
                if state.candidate is None or state.candidate.zone != best:
                    state.candidate = _Candidate(best, now)
                elif now - state.candidate.since >= settings.switch_hold_s:
                    since = state.candidate.since
                    state.last_in_zone = min(state.last_in_zone, since)
                    exit_change = self._exit(identity, state)
                    return [exit_change, self._enter(identity, state, best, since, now)]
                return []
        state.candidate = None
        return []

    def _maybe_enter(
        self, identity: str, state: _Identity, best: str | None, now: float
    ) -> list[ZoneChange]:
        if best is None:
            state.candidate = None
            return []
        if state.candidate is None or state.candidate.zone != best:
            state.candidate = _Candidate(best, now)
        if now - state.candidate.since >= self.settings.enter_hold_s:
            return [self._enter(identity, state, best, state.candidate.since, now)]
        return []

    def _enter(
        self, identity: str, state: _Identity, zone: str, since: float, now: float
    ) -> ZoneChange:
        state.zone, state.started, state.last_in_zone = zone, since, now
        state.sightings, state.below_since, state.candidate = 1, None, None
        return ZoneChange(identity, zone, entered=True, started=since, at=since)

    def _exit(self, identity: str, state: _Identity) -> ZoneChange:
        assert state.zone is not None
        change = ZoneChange(
            identity,
            state.zone,
            entered=False,
            started=state.started,
            at=max(state.started, state.last_in_zone),
            sightings=state.sightings,
        )
        state.zone, state.below_since = None, None
        return change

    def _forget_oldest(self) -> None:
        oldest = min(self._identities, key=lambda name: self._identities[name].last_seen)
        del self._identities[oldest]
