"""Picture diagnosis: frames (numpy arrays) in, findings out. Pure functions, no I/O, no state.

Every measure is taken on the picture as an operator sees it on the video wall: the frame is first
scaled (area averaging) to `ANALYSIS_WIDTH` pixels wide, so a 1080p frame costs about what a 360p one
does, and one set of thresholds means the same for cameras of any resolution. `measure` turns one
frame into a few numbers (`FrameStats`); `diagnose` turns the numbers of a few frames of one camera
into findings, with the camera's thresholds. Only `measure` touches pixels.

The measures:

- **black / overexposed**: the luma histogram (mean, 5th and 95th percentile, share of saturated
  pixels);
- **blurred**: variance of the Laplacian (the classic focus measure of Pech-Pacheco et al., 2000);
- **covered**: the largest connected uniform region, on a 16x9 grid of tiles whose luma spread is
  below ``uniform_std`` (a lens cap, a bag, paint or a wall in front of the lens);
- **colour cast**: mean chroma distance ``D`` of the CIELAB a*/b* means from neutral, and its ratio to
  the chroma spread ``M`` (the cast factor of Xu et al.: a cast is a strong shift of every pixel
  the same way, not a colourful scene);
- **noise**: Immerkaer's noise estimator (1996), the Laplacian-difference kernel, with the median of
  its absolute response so edges do not count as noise;
- **frozen**: two tests, both needed. *Still*: between consecutive frames almost no pixel changes
  by more than `CHANGE_LEVELS`. *Unchanged*: the picture is the one of the previous check (minutes
  earlier), cell by cell on a 32x18 `signature`. Frame-to-frame difference alone cannot tell a
  frozen H.264 stream from a live still scene: an encoder whose input froze keeps refining the same
  picture (measured: mean differences of 0.7 levels just after each keyframe, 0.01 later), while
  the same encoder smooths a live still scene's sensor noise down to 0.1-0.2 levels. Minutes apart,
  a live scene has moved, its light has shifted or its on-screen clock has ticked; a frozen one has
  not. On the first check there is no previous picture and stillness alone decides; the patrol's
  debounce then needs a second check, which has one.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

ANALYSIS_WIDTH = 640
"""Width (pixels) every frame is scaled to before it is measured."""

TILES = (9, 16)
"""Rows and columns of the grid of tiles the uniform-region measure uses (16:9 pictures)."""

SIGNATURE = (32, 18)
"""Width and height of the picture kept from a check, to compare the next check with."""

CHANGE_LEVELS = 12
"""A pixel differing by more than this between two frames has changed (noise and codec refinement stay below)."""

_COARSE = (160, 90)  # width, height of the picture the tiles and colours are measured on
_NOISE_CROP = (320, 180)  # width, height of the native-resolution crop noise is measured on
_LEVELS = np.arange(256, dtype=np.float64)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
# The kernel's response to unit-variance Gaussian noise has standard deviation 6 (sqrt of 36), and
# the median of |N(0, s)| is 0.6745 s.
_NOISE_SCALE = 1.0 / (6.0 * 0.6745)

Frame = NDArray[np.uint8]


def as_frame(array: object) -> Frame:
    """An OpenCV result as the 8-bit picture it is (OpenCV's stubs type every result loosely)."""
    return cast(Frame, array)


class FindingKind(enum.StrEnum):
    """What is wrong with a camera's picture (or its stream)."""

    SIGNAL_LOST = "signal_lost"  # cannot open, or no frame in time, or the stream stalled
    FROZEN = "frozen"
    BLACK = "black"
    OVEREXPOSED = "overexposed"
    BLURRED = "blurred"
    COVERED = "covered"
    COLOUR_CAST = "colour_cast"
    NOISE = "noise"


class Thresholds(BaseModel):
    """Where each measure turns into a finding; a camera overrides any of them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    black_luma: float = Field(28, ge=0, le=255, title="Mean luma below this: black picture")
    overexposed_luma: float = Field(
        228, ge=0, le=255, title="Mean luma above this: overexposed picture"
    )
    saturated_share: float = Field(
        0.6, gt=0, le=1, title="Share of saturated pixels above this: overexposed picture"
    )
    blur_laplacian: float = Field(
        45,
        ge=0,
        title="Variance of the Laplacian below this: blurred",
        description="Measured at the analysis width (640 px); scenes with little texture (a "
        "car park at night, open water) sit lower: raise or lower it per camera",
    )
    uniform_std: float = Field(
        3.5, ge=0, title="A tile whose luma spread is below this is uniform (luma levels)"
    )
    covered_share: float = Field(
        0.6,
        gt=0,
        le=1,
        title="Largest uniform region above this share of the picture: covered",
    )
    cast_distance: float = Field(
        16, ge=0, title="Mean a*/b* distance from neutral above this (with the ratio): colour cast"
    )
    cast_ratio: float = Field(
        1.4, ge=0, title="Cast distance over chroma spread above this (with the distance)"
    )
    noise_sigma: float = Field(
        7.0, gt=0, title="Estimated noise standard deviation above this: noisy (luma levels)"
    )
    still_share: float = Field(
        0.005,
        ge=0,
        le=1,
        title="Share of pixels changing between consecutive frames below this: the picture is still",
    )
    frozen_diff: float = Field(
        6.0,
        ge=0,
        title="Largest change of a signature cell since the previous check below this: frozen",
        description="Luma levels, on a 32x18 picture; 0 turns the frozen check off (e.g. a camera "
        "on a scene with nothing that ever moves and no on-screen clock)",
    )
    off: tuple[FindingKind, ...] = Field((), title="Findings not to report for this camera")


@dataclass(frozen=True, slots=True)
class FrameStats:
    """The measures of one frame, taken at the analysis width."""

    luma_mean: float
    luma_p05: float
    luma_p95: float
    saturated: float  # share of pixels at 250 or above
    laplacian_var: float
    tile_std: NDArray[np.float32]  # TILES-shaped luma spread per tile
    cast_distance: float
    cast_ratio: float
    noise_sigma: float
    gray: Frame  # the analysis-size luma picture, for frame-to-frame differences


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a camera's picture.

    ``score`` is 0.5 when the measure just crosses its threshold and 1.0 at the measure's limit (a
    fully black picture, a whole picture uniform); ``value`` and ``threshold`` are the measure and
    the line it crossed, so a person can see how far past it the camera is.
    """

    kind: FindingKind
    score: float
    value: float
    threshold: float
    detail: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The findings on a few frames of one camera, and the measures they came from."""

    findings: tuple[Finding, ...]
    frames: int
    luma_mean: float
    laplacian_var: float
    covered_share: float
    cast_distance: float
    noise_sigma: float
    frame_diff: float | None  # the largest consecutive mean difference; None with one frame
    changed_share: float | None  # the largest share of changed pixels between consecutive frames
    since_previous: float | None  # the largest signature cell change since the previous check
    signature: Frame  # this check's picture in SIGNATURE size, for the next check

    def kinds(self) -> frozenset[FindingKind]:
        """The kinds of finding present."""
        return frozenset(f.kind for f in self.findings)


def fit_width(frame: Frame, width: int = ANALYSIS_WIDTH) -> Frame:
    """``frame`` scaled down to ``width`` pixels wide (height in proportion); smaller ones as they are.

    Bilinear scaling by a factor below four averages 2x2 of every block, which is enough averaging
    for these measures and costs ~1 ms for 1080p, against ~7 ms for OpenCV's area averaging by three
    (it has a fast path only for exact factors of two, used here for the halvings of larger frames).
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    h, w = frame.shape[:2]
    while w >= 4 * width:
        w, h = w // 2, h // 2
        frame = as_frame(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA))
    if w > width:
        height = max(1, round(h * width / w))
        frame = as_frame(cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR))
    return frame


def measure(frame: Frame) -> FrameStats:
    """Measure one BGR (or grey) frame.

    Args:
        frame: ``uint8`` array, ``(h, w, 3)`` BGR as OpenCV decodes it, or ``(h, w)`` grey.
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    colour = frame.ndim == 3
    small = fit_width(frame)
    gray = as_frame(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)) if colour else small
    lap = cv2.Laplacian(gray, cv2.CV_16S, ksize=1)
    lap_std = float(cv2.meanStdDev(lap)[1][0, 0])
    # Exposure, tiles and colour are statistics of regions: a 160x90 picture is plenty, and cheap.
    coarse = fit_width(small, _COARSE[0])
    coarse_gray = as_frame(cv2.cvtColor(coarse, cv2.COLOR_BGR2GRAY)) if colour else coarse
    hist = cv2.calcHist([coarse_gray], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist)
    n = float(cdf[-1])
    distance, ratio = _cast(coarse) if colour else (0.0, 0.0)
    return FrameStats(
        luma_mean=float(hist @ _LEVELS) / n,
        luma_p05=float(np.searchsorted(cdf, 0.05 * n)),
        luma_p95=float(np.searchsorted(cdf, 0.95 * n)),
        saturated=float(hist[250:].sum()) / n,
        laplacian_var=lap_std * lap_std,
        tile_std=_tile_std(coarse_gray),
        cast_distance=distance,
        cast_ratio=ratio,
        noise_sigma=_noise_sigma(_centre(frame)),
        gray=gray,
    )


def _centre(frame: Frame) -> Frame:
    """The central `_NOISE_CROP` of the frame at its own resolution, in grey.

    Noise is a property of the sensor's pixels: averaging them down would hide it, so it is measured
    on native pixels, and a crop keeps that cheap at any resolution.
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    h, w = frame.shape[:2]
    cw, ch = min(w, _NOISE_CROP[0]), min(h, _NOISE_CROP[1])
    x, y = (w - cw) // 2, (h - ch) // 2
    crop = frame[y : y + ch, x : x + cw]
    return as_frame(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)) if crop.ndim == 3 else crop


def _tile_std(gray: Frame) -> NDArray[np.float32]:
    """Standard deviation of luma within each tile of a `TILES` grid (mean of squares minus square of mean)."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    g = gray.astype(np.float32)
    size = (TILES[1], TILES[0])
    mean = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    mean_sq = cv2.resize(g * g, size, interpolation=cv2.INTER_AREA)
    return np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))


def _cast(bgr: Frame) -> tuple[float, float]:
    """Colour cast: distance of the mean a*/b* from neutral, and that distance over the spread."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab)  # 8-bit Lab: a* and b* are offset by 128
    mean, std = cv2.meanStdDev(lab)
    da, db = float(mean[1, 0]) - 128.0, float(mean[2, 0]) - 128.0
    distance = math.hypot(da, db)
    spread = math.hypot(float(std[1, 0]), float(std[2, 0]))
    return distance, distance / max(spread, 1.0)


def _noise_sigma(gray: Frame) -> float:
    """Immerkaer's estimate of the noise standard deviation, from the median absolute response."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    response = cv2.filter2D(gray, cv2.CV_16S, _IMMERKAER, borderType=cv2.BORDER_REFLECT)
    magnitude = cv2.convertScaleAbs(response)  # |response|, saturated at 255
    hist = cv2.calcHist([magnitude], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist)
    median = float(np.searchsorted(cdf, 0.5 * cdf[-1]))
    return median * _NOISE_SCALE


def frame_difference(a: Frame, b: Frame) -> tuple[float, float]:
    """Mean absolute difference of two analysis-size luma pictures, and the share of changed pixels.

    Pictures of different sizes (the stream changed resolution) count as entirely different.
    """
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    if a.shape != b.shape:
        return math.inf, 1.0
    diff = cv2.absdiff(a, b)
    changed = cv2.countNonZero(cv2.threshold(diff, CHANGE_LEVELS, 255, cv2.THRESH_BINARY)[1])
    return float(cv2.mean(diff)[0]), changed / diff.size


def signature(gray: Frame) -> Frame:
    """A picture's `SIGNATURE`-sized luma (area averages: codec noise cancels out)."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    return as_frame(cv2.resize(gray, SIGNATURE, interpolation=cv2.INTER_AREA))


def signature_change(a: Frame, b: Frame | None) -> float | None:
    """The largest cell change between two signatures; None without a previous one."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    if b is None or a.shape != b.shape:
        return None
    return float(cv2.absdiff(a, b).max())


def largest_uniform_share(tile_std: NDArray[np.float32], uniform_std: float) -> float:
    """Share of the picture covered by the largest 4-connected region of uniform tiles."""
    import cv2  # noqa: PLC0415 - lazy: OpenCV is 17 MB resident

    mask = (tile_std < uniform_std).astype(np.uint8)
    if not mask.any():
        return 0.0
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    return float(stats[1:count, cv2.CC_STAT_AREA].max()) / mask.size


def _past(value: float, threshold: float, limit: float) -> float:
    """0.5 at the threshold, rising to 1.0 at the limit (either side of the threshold)."""
    span = limit - threshold
    if span == 0:
        return 1.0
    return 0.5 + 0.5 * min(max((value - threshold) / span, 0.0), 1.0)


def diagnose(
    stats: Sequence[FrameStats], thresholds: Thresholds, previous: Frame | None = None
) -> Diagnosis:
    """Findings on the frames of one camera check (in the order they were grabbed).

    ``previous`` is the `signature` of the camera's previous check, if any (for frozen).

    Each measure is the median over the frames, so one glitched frame does not make a finding.
    A black or overexposed picture also has no detail and no colour, so it is reported alone (not
    also as covered, blurred, noisy or cast); a covered picture is not also reported blurred. Frozen
    is judged only on a picture with content: a black, washed-out or covered picture does not move
    even when the stream is live, so it says nothing about the stream.

    Raises:
        ValueError: ``stats`` is empty.
    """
    if not stats:
        msg = "diagnose needs at least one frame"
        raise ValueError(msg)
    t = thresholds

    def med(values: Sequence[float]) -> float:
        return float(np.median(np.asarray(values, dtype=np.float64)))

    luma = med([s.luma_mean for s in stats])
    p95 = med([s.luma_p95 for s in stats])
    saturated = med([s.saturated for s in stats])
    lap = med([s.laplacian_var for s in stats])
    covered = med([largest_uniform_share(s.tile_std, t.uniform_std) for s in stats])
    cast_d = med([s.cast_distance for s in stats])
    cast_r = med([s.cast_ratio for s in stats])
    noise = med([s.noise_sigma for s in stats])
    diffs = [frame_difference(a.gray, b.gray) for a, b in itertools.pairwise(stats)]
    frame_diff = max(d for d, _ in diffs) if diffs else None
    changed = max(c for _, c in diffs) if diffs else None
    sig = signature(stats[-1].gray)
    since = signature_change(sig, previous)

    found: list[Finding] = []
    exposure = False
    if luma < t.black_luma and p95 < 2 * t.black_luma:
        exposure = True
        found.append(
            Finding(
                FindingKind.BLACK,
                _past(luma, t.black_luma, 0),
                luma,
                t.black_luma,
                f"picture is black: mean luma {luma:.0f} below {t.black_luma:g}",
            )
        )
    elif luma > t.overexposed_luma or saturated > t.saturated_share:
        exposure = True
        by_share = saturated > t.saturated_share and luma <= t.overexposed_luma
        value, line, limit = (
            (saturated, t.saturated_share, 1.0) if by_share else (luma, t.overexposed_luma, 255.0)
        )
        found.append(
            Finding(
                FindingKind.OVEREXPOSED,
                _past(value, line, limit),
                value,
                line,
                f"picture is overexposed: mean luma {luma:.0f}, {saturated:.0%} of pixels saturated",
            )
        )
    if not exposure:
        found.extend(_detail_findings(t, covered, lap, cast_d, cast_r, noise))
    blank = exposure or covered > t.covered_share
    if not blank and t.frozen_diff > 0:
        frozen = _frozen(t, len(stats), changed, since)
        if frozen is not None:
            found.append(frozen)
    kept = tuple(f for f in found if f.kind not in t.off)
    return Diagnosis(
        findings=kept,
        frames=len(stats),
        luma_mean=luma,
        laplacian_var=lap,
        covered_share=covered,
        cast_distance=cast_d,
        noise_sigma=noise,
        frame_diff=frame_diff,
        changed_share=changed,
        since_previous=since,
        signature=sig,
    )


def _frozen(
    t: Thresholds, frames: int, changed: float | None, since: float | None
) -> Finding | None:
    """Frozen: still within the check, and (when known) unchanged since the previous check."""
    if changed is None or changed >= t.still_share:
        return None
    if since is None:
        return Finding(
            FindingKind.FROZEN,
            _past(changed, t.still_share, 0),
            changed,
            t.still_share,
            f"picture is still: {changed:.2%} of pixels changed over {frames} frames",
        )
    if since >= t.frozen_diff:
        return None
    return Finding(
        FindingKind.FROZEN,
        _past(since, t.frozen_diff, 0),
        since,
        t.frozen_diff,
        f"picture is frozen: still over {frames} frames and unchanged since the previous check "
        f"(largest change {since:.0f} levels)",
    )


def _detail_findings(
    t: Thresholds, covered: float, lap: float, cast_d: float, cast_r: float, noise: float
) -> list[Finding]:
    """Covered or blurred, colour cast and noise, on a picture that is neither black nor white."""
    found: list[Finding] = []
    if covered > t.covered_share:
        found.append(
            Finding(
                FindingKind.COVERED,
                _past(covered, t.covered_share, 1.0),
                covered,
                t.covered_share,
                f"lens looks covered: a uniform region fills {covered:.0%} of the picture",
            )
        )
    elif lap < t.blur_laplacian:
        found.append(
            Finding(
                FindingKind.BLURRED,
                _past(lap, t.blur_laplacian, 0),
                lap,
                t.blur_laplacian,
                f"picture is blurred: Laplacian variance {lap:.0f} below {t.blur_laplacian:g}",
            )
        )
    if cast_d > t.cast_distance and cast_r > t.cast_ratio:
        found.append(
            Finding(
                FindingKind.COLOUR_CAST,
                _past(cast_d, t.cast_distance, 4 * t.cast_distance),
                cast_d,
                t.cast_distance,
                f"colour cast: chroma {cast_d:.0f} from neutral ({cast_r:.1f}x its spread)",
            )
        )
    if noise > t.noise_sigma:
        found.append(
            Finding(
                FindingKind.NOISE,
                _past(noise, t.noise_sigma, 4 * t.noise_sigma),
                noise,
                t.noise_sigma,
                f"picture is noisy: noise of {noise:.1f} levels above {t.noise_sigma:g}",
            )
        )
    return found
