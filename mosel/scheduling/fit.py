"""The online correction of profiled batch times (docs/architecture.md, "The scheduler"):
`LinearFit` learns measured ~ overhead_s + scale * profiled from the batches a lane (or the
round's finishing step) has run. The fixed part is what a profile cannot see (gRPC calls,
(de)serialisation); it dominates small batches on a live stack."""

from __future__ import annotations

import math


class LinearFit:
    """measured ~ overhead_s + scale * profiled, least squares with exponential forgetting
    (weight 1 - ewma per sample), so the fixed part and the scale separate as soon as
    batches of different sizes have been seen. With a single size the excess over the
    profile is taken as fixed cost (a shortfall as a scale below 1)."""

    def __init__(self, ewma: float = 0.2, bounds: tuple[float, float] = (0.5, 4.0)):
        if not 0.0 < ewma <= 1.0:
            raise ValueError(f"ewma must be in (0, 1], got {ewma}")
        self.ewma = float(ewma)
        self.bounds = bounds
        self.overhead_s = 0.0
        self.scale = 1.0
        self.samples = 0
        self._abs_log_error = 0.0  # EWMA of |log(measured / predicted)|, predicted before the update
        self._sums = [0.0] * 5  # weight, profiled, measured, profiled^2, profiled*measured

    def __call__(self, profiled_s: float) -> float:
        return self.overhead_s + self.scale * profiled_s

    def update(self, profiled_s: float, measured_s: float) -> None:
        if not (profiled_s >= 0 and measured_s >= 0 and math.isfinite(measured_s) and math.isfinite(profiled_s)):
            return
        keep = 1.0 - self.ewma
        predicted = self(profiled_s)
        if predicted > 0 and measured_s > 0 and self.samples:
            err = abs(math.log(measured_s / predicted))
            self._abs_log_error = keep * self._abs_log_error + self.ewma * err
        f = self._sums
        f[0] = keep * f[0] + 1.0
        f[1] = keep * f[1] + profiled_s
        f[2] = keep * f[2] + measured_s
        f[3] = keep * f[3] + profiled_s * profiled_s
        f[4] = keep * f[4] + profiled_s * measured_s
        self.samples += 1
        w, sp, sm, spp, spm = f
        lo, hi = self.bounds
        if sp <= 1e-12 * max(sm, 1e-30):  # nothing profiled (e.g. no head profile): all overhead
            self.scale, self.overhead_s = 1.0, sm / w
            return
        spread = w * spp - sp * sp
        if spread > 1e-6 * w * spp:
            self.scale = min(hi, max(lo, (w * spm - sp * sm) / spread))
            self.overhead_s = max(0.0, (sm - self.scale * sp) / w)
        elif sm >= sp:  # one batch size seen: what the profile misses is taken as fixed cost
            self.scale, self.overhead_s = 1.0, (sm - sp) / w
        else:
            self.scale, self.overhead_s = max(lo, sm / sp), 0.0

    @property
    def noise(self) -> float:
        """Spread of measured around predicted: sigma of the log error, from its mean
        absolute value (x sqrt(pi / 2), exact for a normal error)."""
        return 1.2533 * self._abs_log_error

    def copy_from(self, other: "LinearFit") -> None:
        self.overhead_s, self.scale, self.samples = other.overhead_s, other.scale, other.samples
        self._sums, self._abs_log_error = list(other._sums), other._abs_log_error

    def to_dict(self) -> dict:
        return {"overhead_ms": self.overhead_s * 1e3, "scale": self.scale, "noise": self.noise, "samples": self.samples}
