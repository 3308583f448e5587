"""Rendering: one continuous-time scene drawn at any time `t` as a microscope view, in one clinic's look.

`render(proc, times, size, rng, clinic=None)` draws a planned `Procedure` (in the clinic it was recorded in, or in
another one: the scene and its labels stay the same, only the microscope and the instrument looks change).
"""

import math
from typing import NamedTuple

import numpy as np

from .scene import _RED_REFLEX, CATARACTS, Clinic, Procedure, Segment, _clinic, instruments_at


class _Patch(NamedTuple):
    """A mask that is zero outside `img[rows, cols]`: only that window is computed and blended (exactly the pixels a
    full-frame mask would change, for a fraction of the work)."""

    alpha: np.ndarray
    rows: slice
    cols: slice


class _Canvas:
    """Per (procedure, frame size, clinic) precomputed coordinates, static layers and the clinic's look."""

    def __init__(self, proc: Procedure, size: int, clinic: Clinic | str | None = None):
        eye = proc.eye
        self.size = size
        self.clinic = _clinic(proc.clinic if clinic is None else clinic)
        self.looks = {key: self.clinic.instrument_look(key) for key in proc.angles}
        # The microscope: this clinic's colour cast and gain times the video's own; vignetting darkens the corners.
        self.cast = np.asarray(eye["cast"], np.float32) * np.asarray(self.clinic.cast, np.float32)
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.X, self.Y = np.meshgrid(coords, coords)
        self.cx, self.cy = eye["cx"], eye["cy"]
        self.iris_r = eye["iris_r"]
        self.pupil_r = eye["iris_r"] * eye["pupil_ratio"]
        dx, dy = self.X - self.cx, self.Y - self.cy
        self.R = np.sqrt(dx * dx + dy * dy)
        self.TH = np.arctan2(-dy, dx)
        px = 2.0 / size
        self.px = px
        iris_mask = _soft(self.iris_r - self.R, px)
        self.pupil_mask = _soft(self.pupil_r - self.R, px)[..., None]
        rows, cols = np.flatnonzero(self.pupil_mask.any(axis=(1, 2))), np.flatnonzero(self.pupil_mask.any(axis=(0, 2)))
        self.pupil_window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)) if rows.size else (
            slice(0, 0), slice(0, 0))
        a = eye["vessels"]
        vessels = np.maximum(0, np.sin(5 * self.TH + a[0] + 4 * self.R) * np.sin(3 * self.TH + a[1] - 6 * self.R)) ** 6
        sclera = np.array(eye["sclera"], np.float32) * (1 - 0.35 * self.R ** 2)[..., None]
        sclera = sclera - (vessels * 55)[..., None] * np.array((0.4, 1.0, 1.0), np.float32)
        stria = 0.82 + 0.18 * np.sin(36 * self.TH + 3 * a[2]) * np.sin(7 * self.TH + a[3])
        iris = np.array(eye["iris"], np.float32) * (stria * (0.75 + 0.35 * self.R / self.iris_r))[..., None]
        limbus = np.exp(-((self.R - self.iris_r) / (1.5 * px)) ** 2)[..., None]
        base = sclera * (1 - iris_mask[..., None]) + iris * iris_mask[..., None]
        self.base = (base * (1 - 0.55 * limbus)).astype(np.float32)
        lens = np.broadcast_to(np.array(CATARACTS[proc.cataract]["lens"], np.float32), (size, size, 3)).copy()
        rel = self.R / self.pupil_r
        if proc.cataract == "cortical":
            spokes = (np.maximum(0, np.sin(8 * self.TH + a[0])) ** 4 * np.clip(rel - 0.25, 0, 1))[..., None]
            lens += spokes * (np.array((235, 235, 225), np.float32) - lens)
        elif proc.cataract == "psc":
            plaque = _soft(0.45 - rel, px / self.pupil_r)[..., None]
            lens += 0.8 * plaque * (np.array((230, 220, 190), np.float32) - lens)
        lens *= (1.05 - 0.25 * np.clip(rel, 0, 1) ** 2)[..., None]
        self.lens = lens.astype(np.float32)
        self.vignette = None
        if self.clinic.vignetting:
            corner = (self.X * self.X + self.Y * self.Y) / 2  # 1 in the corners, 0.5 at the edge middles
            self.vignette = (1 - self.clinic.vignetting * corner)[..., None].astype(np.float32)

    def point(self, angle: float, radius: float) -> tuple[float, float]:
        return self.cx + radius * math.cos(angle), self.cy - radius * math.sin(angle)

    def window(self, x0, x1, y0, y1) -> tuple[slice, slice]:
        """The rows and columns of every pixel whose centre lies in [x0, x1] x [y0, y1], with a pixel to spare."""
        def span(lo, hi):
            first = max(0, math.floor((lo + 1) * self.size / 2 - 0.5) - 1)
            return slice(first, max(first, min(self.size, math.ceil((hi + 1) * self.size / 2 - 0.5) + 2)))

        return span(y0, y1), span(x0, x1)

    def around(self, x, y, r) -> tuple[slice, slice]:
        return self.window(x - r, x + r, y - r, y + r)

    def segment(self, x0, y0, x1, y1, half_width) -> _Patch:
        """A capsule of `half_width` around the segment (x0, y0)-(x1, y1)."""
        m = half_width + self.px  # the mask is zero beyond half_width + px / 2
        rows, cols = self.window(min(x0, x1) - m, max(x0, x1) + m, min(y0, y1) - m, max(y0, y1) + m)
        vx, vy = x1 - x0, y1 - y0
        px, py = self.X[rows, cols] - x0, self.Y[rows, cols] - y0
        h = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-9), 0, 1)
        d = np.hypot(px - h * vx, py - h * vy)
        return _Patch(_soft(half_width - d, self.px), rows, cols)

    def disk(self, x, y, r) -> _Patch:
        rows, cols = self.around(x, y, r + self.px)
        return _Patch(_soft(r - np.hypot(self.X[rows, cols] - x, self.Y[rows, cols] - y), self.px), rows, cols)

    def fill(self, radius, softness: float = 1.0) -> _Patch:
        """A disk of `radius` around the eye centre with a `softness`-pixel ramp."""
        rows, cols = self.around(self.cx, self.cy, radius + softness * self.px)
        return _Patch(_soft(radius - self.R[rows, cols], softness * self.px), rows, cols)

    def arc(self, radius, half_width, a0, a1) -> _Patch:
        """A ring of `radius` around the eye centre, between angles a0 and a1 (counter-clockwise, a1 > a0)."""
        rows, cols = self.around(self.cx, self.cy, radius + half_width + self.px)
        ring = _soft(half_width - np.abs(self.R[rows, cols] - radius), self.px)
        inside = np.mod(self.TH[rows, cols] - a0, 2 * np.pi) <= (a1 - a0)
        return _Patch(ring * inside, rows, cols)


def _soft(signed_distance, px):
    """Antialiased mask: 1 inside (positive distance), 0 outside, a one-pixel ramp."""
    return np.clip(signed_distance / px + 0.5, 0, 1).astype(np.float32)


def _blend(img, alpha, colour, opacity=1.0):
    """Blend `colour` into `img` in place with the mask `alpha` (a full-frame array or a `_Patch`) times `opacity`."""
    if isinstance(alpha, _Patch):
        img, alpha = img[alpha.rows, alpha.cols], alpha.alpha  # a view: blending it changes img
        if not alpha.size:
            return
    img += (alpha * opacity)[..., None] * (np.asarray(colour, np.float32) - img)


def _clearance(proc: Procedure, t: float) -> float:
    """How much of the cataract is gone at `t` (0 before phacoemulsification, 1 after it)."""
    for seg in proc.segments:
        if seg.phase == 4:
            return float(np.clip((t - seg.start) / (seg.end - seg.start), 0, 1))
    return 0.0


def _tip(c: _Canvas, proc: Procedure, seg: Segment, key: str, t: float, progress: float) -> tuple[float, float]:
    angle, p = proc.angles[key], seg.params
    pr, ir = c.pupil_r, c.iris_r
    if key != seg.main:  # a secondary instrument waits near the pupil margin
        return c.point(angle + 0.25 * math.sin(0.8 * t + p["offset"]), 0.75 * pr)
    if key == "knife":
        depth = 0.5 + 0.5 * math.sin(2 * np.pi * 0.6 * p["omega"] * t + p["offset"])
        return c.point(angle, ir * (1.08 - 0.32 * depth))
    if key == "cannula":
        w = 2 * np.pi * 0.25 * p["omega"] * t + p["offset"]
        return c.cx + 0.35 * pr * math.cos(w), c.cy + 0.35 * pr * math.sin(w)
    if key == "forceps":
        return c.point(p["phi0"] + 2 * np.pi * progress + 0.15 * math.sin(3 * t), 0.75 * pr)
    if key == "phaco":
        reach = 0.12 * pr * (1 + 0.6 * math.sin(2 * np.pi * 2.0 * t + p["offset"]))
        return c.point(angle, reach)
    if key == "ia":
        return c.point(angle + np.pi + 1.0 * math.sin(2 * np.pi * 0.35 * p["omega"] * t + p["offset"]), 0.7 * pr)
    # injector: advances into the pupil, then withdraws
    depth = min(1.0, progress * 2.2) if progress < 0.7 else max(0.0, 1 - (progress - 0.7) / 0.3)
    return c.point(angle, pr * (1.3 - 0.9 * depth))


def _draw_instrument(img, c: _Canvas, key: str, angle: float, tip: tuple[float, float], t: float):
    """A shaft from the tip toward the frame edge, widening into the instrument's body (handpiece, syringe, handle),
    in the clinic's colour and widths for this instrument type (`Clinic.instrument_look`)."""
    colour, width, body = c.looks[key]
    hw, body = width / 2, body / 2
    tx, ty = tip
    dx, dy = math.cos(angle), -math.sin(angle)
    reach = 0.28 if key == "knife" else 0.5  # length of the thin part, from the tip to the body
    bx, by = tx + reach * dx, ty + reach * dy
    ex, ey = tx + 3 * dx, ty + 3 * dy
    shade = np.asarray(colour, np.float32) * 0.72
    _blend(img, c.segment(bx, by, ex, ey, body), shade)
    _blend(img, c.segment(bx + 0.06 * dx, by + 0.06 * dy, ex, ey, body * 0.55), colour, 0.6)
    if key == "forceps":
        opening = 0.1 + 0.06 * math.sin(4 * t)
        for side in (-1, 1):
            a = angle + side * opening
            jx, jy = tx + reach * math.cos(a), ty - reach * math.sin(a)
            _blend(img, c.segment(tx, ty, jx, jy, hw), colour)
    elif key == "knife":
        _blend(img, c.segment(tx, ty, bx, by, hw * 1.5), colour)
    else:
        _blend(img, c.segment(tx, ty, bx, by, hw), colour)
        if key == "phaco":
            _blend(img, c.disk(tx, ty, hw * 0.7), (255, 255, 200))
        elif key == "injector":
            _blend(img, c.disk(tx, ty, hw * 1.1), colour)


def _draw_phase(img, c: _Canvas, proc: Procedure, seg: Segment, t: float, progress: float, rng):
    p, pr = seg.params, c.pupil_r
    if seg.phase == 1:  # a white slit grows at the limbus where the knife enters
        angle = proc.angles["knife"]
        half = 0.15 + 0.35 * progress
        _blend(img, c.arc(c.iris_r, 1.6 * c.px, angle - half, angle + half), (252, 246, 240))
        x, y = c.point(angle - half, c.iris_r * 1.08)
        _blend(img, c.disk(x, y, 2.5 * c.px), (120, 20, 24), 0.8)
    elif seg.phase == 2:  # a translucent cyan gel spreads from the centre
        radius = pr * (0.55 + 1.05 * progress)
        gel = c.fill(radius, 3)
        _blend(img, gel, (118, 222, 236), 0.5)
    elif seg.phase == 3:  # the rhexis arc grows around the pupil, its inside slightly lighter
        _blend(img, c.fill(0.75 * pr), (250, 250, 245), 0.2)
        a0 = p["phi0"]
        _blend(img, c.arc(0.75 * pr, 1.1 * c.px, a0, a0 + max(0.6, 2 * np.pi * progress)), (252, 252, 250), 0.95)
    elif seg.phase == 4:  # a pulsing bright nucleus and fragments
        radius = pr * (0.5 + 0.15 * math.sin(2 * np.pi * 1.5 * t + p["offset"])) * (1 - 0.4 * progress)
        _blend(img, c.fill(radius, 2), (255, 238, 160), 0.85)
        for _ in range(10):
            r, a = pr * math.sqrt(rng.random()) * 0.95, rng.random() * 2 * np.pi
            x, y = c.point(a, r)
            _blend(img, c.disk(x, y, 1.2 * c.px), (250, 226, 150), 0.9)
    elif seg.phase == 5:  # a fading ring of cortex and particles orbiting toward the aspiration port
        _blend(img, c.arc(0.86 * pr, 1.6 * c.px, -np.pi, np.pi), (238, 232, 214), 0.8 * (1 - progress) + 0.1)
        for k in range(6):
            a = p["phi0"] + k * np.pi / 3 + 2 * np.pi * 0.5 * t
            x, y = c.point(a, pr * (0.75 - 0.35 * ((t * 0.7 + k / 6) % 1)))
            _blend(img, c.disk(x, y, 1.3 * c.px), (245, 245, 235), 0.9)
    elif seg.phase == 6:  # the IOL: an optic ring and two haptics that unfold and rotate
        shown = float(np.clip(progress * 2.5, 0.25, 1))
        rot = p["phi0"] + np.pi * progress
        _blend(img, c.fill(0.8 * pr), (210, 226, 240), 0.25 * shown)
        _blend(img, c.arc(0.8 * pr, 1.1 * c.px, -np.pi, np.pi), (176, 214, 246), shown)
        for base in (rot, rot + np.pi):
            _blend(img, c.arc(1.3 * pr, 0.9 * c.px, base, base + 1.3 * shown), (186, 230, 252), shown)


def render_frame(proc: Procedure, canvas: _Canvas, t: float, rng: np.random.Generator) -> np.ndarray:
    """The frame of `proc` at time `t` seconds: uint8 (size, size, 3)."""
    c, eye = canvas, proc.eye
    img = c.base.copy()
    clear = _clearance(proc, t)
    rows, cols = c.pupil_window  # the pupil mask is zero outside it
    inner, lens = img[rows, cols], c.lens[rows, cols]
    pupil = lens + clear * (_RED_REFLEX - lens)
    inner += c.pupil_mask[rows, cols] * (pupil - inner)
    seg = next((s for s in proc.segments if s.start <= t < s.end), None)
    if seg is None and t >= proc.segments[-1].end:
        seg = proc.segments[-1]
    if seg is not None:
        progress = float(np.clip((t - seg.start) / (seg.end - seg.start), 0, 1))
        _draw_phase(img, c, proc, seg, t, progress, rng)
        present = instruments_at(proc, t)
        for key in sorted(present, key=lambda k: k == seg.main):  # the main instrument on top
            tx, ty = _tip(c, proc, seg, key, t, progress)
            tremor = eye["tremor"]
            tip = (tx + tremor * float(rng.standard_normal()), ty + tremor * float(rng.standard_normal()))
            _draw_instrument(img, c, key, proc.angles[key], tip, t)
    gain = eye["gain"] * c.clinic.gain * (1 + 0.04 * math.sin(2 * np.pi * 0.4 * t + eye["flicker"]))
    img *= gain * c.cast
    if c.vignette is not None:
        img *= c.vignette
    img += rng.standard_normal(img.shape, dtype=np.float32) * 3.0
    return np.clip(img, 0, 255).astype(np.uint8)


def render(proc: Procedure, times, size: int, rng: np.random.Generator,
           clinic: Clinic | str | None = None) -> np.ndarray:
    """The frames of `proc` at `times` (seconds): uint8 (len(times), size, size, 3), in `clinic`'s look (default: the
    clinic the procedure was recorded in, `proc.clinic`). The scene, and so every label, does not depend on `clinic`."""
    canvas = _Canvas(proc, size, clinic)
    return np.stack([render_frame(proc, canvas, float(t), rng) for t in times])


def _frame_times(start: float, fps: float, n: int) -> np.ndarray:
    return start + np.arange(n) / fps

