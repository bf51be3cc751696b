"""Planning headroom driven by the deadlines the service actually missed.

The predictor's corrections (per-lane fits, the lateness of rounds against their promise)
cover the error of work already committed. What they cannot see is the error of the queue
behind it: a job planned at full accuracy three rounds back is hit by every stall of the
rounds ahead of it, by arrivals with earlier deadlines and, on a loaded host, by the time
its request and answer spend outside the scheduler. A policy that runs the queue at its
predicted edge (as `mosel` does, to keep accuracy high) then turns such noise straight
into misses.

`MissFeedback` closes the loop on the outcome itself: every job the service settles is on
time or missed (answered after its deadline less the reply margin, expired while queued,
judged hopeless by a plan, refused as unreachable at admission), and the headroom the plans keep
in hand moves by

    h <- clamp(h + step * (missed - target) / (1 - target), 0, cap)

the stochastic-approximation update of a quantile: it rests where a fraction `target` of
jobs miss (a miss raises h by `step`, an on-time job lowers it by step * target /
(1 - target)). On top, h decays with time constant `decay_s`: plans degrade every job
whose deadline is nearer than h, even on an idle service, so once the load falls they
must stop paying for a burst that has passed even while few jobs arrive; h is capped for
the same reason.
"""

from __future__ import annotations

import math

# Defaults: aim at half a percent of jobs missing; one miss buys 2 ms; at most 50 ms (a
# fraction of the tens of ms of slack interactive deadlines leave); forget within seconds.
DEFAULT_MISS_TARGET = 0.005
DEFAULT_HEADROOM_STEP_S = 0.002
DEFAULT_HEADROOM_CAP_S = 0.05
DEFAULT_HEADROOM_DECAY_S = 5.0


class MissFeedback:
    """Headroom (seconds) that plans keep before each deadline, from observed misses.
    `step_s` = 0 turns it off (headroom stays 0)."""

    def __init__(self, target: float = DEFAULT_MISS_TARGET, step_s: float = DEFAULT_HEADROOM_STEP_S,
                 cap_s: float = DEFAULT_HEADROOM_CAP_S, decay_s: float = DEFAULT_HEADROOM_DECAY_S):
        self.target = self.step_s = self.cap_s = self.decay_s = self.headroom_s = 0.0
        self.set(target=target, step_s=step_s, cap_s=cap_s, decay_s=decay_s)
        self.observed = 0
        self.missed = 0
        self._last: float | None = None

    def set(self, **settings: float) -> None:
        """Change settings (target, step_s, cap_s, decay_s), validated; what was learned stays."""
        for name, value in settings.items():
            value = float(value)
            if name == "target":
                ok = 0.0 < value < 1.0
            elif name in ("step_s", "cap_s"):
                ok = value >= 0.0
            elif name == "decay_s":
                ok = value > 0.0
            else:
                raise ValueError(f"no miss feedback setting {name!r}")
            if not ok:
                raise ValueError(f"miss feedback {name} out of range: {value}")
            setattr(self, name, value)
        self.headroom_s = min(self.headroom_s, self.cap_s) if self.step_s else 0.0

    def observe(self, now: float, missed: int, on_time: int = 0) -> None:
        """Record `missed` and `on_time` settled jobs at time `now` (seconds, the clock the
        policy plans with)."""
        if missed < 0 or on_time < 0:
            raise ValueError("job counts must be >= 0")
        self.observed += missed + on_time
        self.missed += missed
        if not self.step_s:
            return
        self._decay(now)
        up = self.step_s * missed
        down = self.step_s * on_time * self.target / (1.0 - self.target)
        self.headroom_s = min(self.cap_s, max(0.0, self.headroom_s + up - down))

    def current(self, now: float) -> float:
        """The headroom at `now` (decayed since the last observation)."""
        self._decay(now)
        return self.headroom_s

    def peek(self, now: float) -> float:
        """The headroom at `now` without touching the state (for readers on other threads)."""
        h, last = self.headroom_s, self._last
        return h * math.exp(-(now - last) / self.decay_s) if last is not None and now > last else h

    def _decay(self, now: float) -> None:
        self.headroom_s = self.peek(now)
        if self._last is None or now > self._last:
            self._last = now
