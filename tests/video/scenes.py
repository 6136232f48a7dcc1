"""Synthetic street scenes and the picture faults a city camera shows, as numpy frames.

No downloaded media: a scene is drawn with OpenCV (sky gradient, buildings with windows, a textured
road, cars that move, an on-screen clock like every CCTV camera has) plus sensor noise, and each
fault is a transformation of it. Everything is seeded, so a clip is the same on every run.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]


class Segment(enum.StrEnum):
    """What a stretch of a test clip shows."""

    MOVING = "moving"
    FROZEN = "frozen"
    BLACK = "black"
    BLURRED = "blurred"
    COVERED = "covered"
    OVEREXPOSED = "overexposed"
    COLOUR_CAST = "colour_cast"
    NOISE = "noise"


class Scene:
    """A street at one resolution; `frame(i)` is the picture at frame number ``i``."""

    def __init__(self, width: int = 640, height: int = 360, seed: int = 7) -> None:
        self.width, self.height = width, height
        self.rng = np.random.default_rng(seed)
        self.background = self._background()
        self._noise = [self._sensor_noise() for _ in range(8)]

    def _background(self) -> Frame:
        w, h = self.width, self.height
        rng = self.rng
        img = np.zeros((h, w, 3), np.uint8)
        sky = np.linspace(200, 150, h // 3, dtype=np.float32)[:, None]
        img[: h // 3] = np.stack([sky + 20, sky + 5, sky - 10], axis=-1).astype(np.uint8)
        # Buildings with rows of windows: edges and texture at every scale.
        x = 0
        while x < w:
            bw = int(rng.integers(w // 12, w // 5))
            top = int(rng.integers(h // 8, h // 3))
            colour = tuple(int(c) for c in rng.integers(60, 170, 3))
            cv2.rectangle(img, (x, top), (x + bw, int(h * 0.62)), colour, -1)
            step = max(4, w // 80)
            for wy in range(top + step, int(h * 0.6) - step, 2 * step):
                for wx in range(x + step, x + bw - step, 2 * step):
                    lit = int(rng.integers(30, 230))
                    cv2.rectangle(
                        img, (wx, wy), (wx + step - 1, wy + step - 1), (lit, lit, lit // 2 + 60), -1
                    )
            x += bw + int(rng.integers(0, w // 40 + 1))
        # Road with asphalt texture and lane marks.
        road = rng.normal(90, 12, (h - int(h * 0.62), w)).astype(np.float32)
        road = cv2.GaussianBlur(road, (0, 0), max(0.6, w / 1280))
        img[int(h * 0.62) :] = np.clip(road, 0, 255).astype(np.uint8)[..., None]
        for lx in range(0, w, w // 8):
            cv2.rectangle(
                img,
                (lx, int(h * 0.8)),
                (lx + w // 16, int(h * 0.8) + max(2, h // 90)),
                (230, 230, 230),
                -1,
            )
        return img

    def _sensor_noise(self) -> NDArray[np.int16]:
        return self.rng.normal(0, 2.0, (self.height, self.width, 3)).astype(np.int16)

    def frame(self, i: int) -> Frame:
        """The live picture at frame ``i``: cars move, the clock ticks, the sensor is noisy."""
        w, h = self.width, self.height
        img = self.background.copy()
        for lane, (speed, colour) in enumerate(
            ((9, (30, 30, 200)), (-6, (200, 80, 20)), (13, (40, 160, 40)))
        ):
            cw, ch = w // 10, h // 14
            cx = (i * speed * w // 640 + lane * w // 3) % (w + cw) - cw
            cy = int(h * 0.66) + lane * (h // 10)
            cv2.rectangle(img, (cx, cy), (cx + cw, cy + ch), colour, -1)
            cv2.rectangle(
                img, (cx + cw // 5, cy - ch // 2), (cx + cw * 3 // 4, cy), (20, 20, 20), -1
            )
        scale = h / 720
        text = f"2025-06-01 08:{(i // 1500) % 60:02d}:{(i // 25) % 60:02d}.{i % 25:02d}  CAM"
        cv2.putText(
            img,
            text,
            (int(20 * scale), int(50 * scale)),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.2 * scale,
            (255, 255, 255),
            max(1, int(2 * scale)),
        )
        noisy = img.astype(np.int16) + self._noise[i % len(self._noise)]
        return np.clip(noisy, 0, 255).astype(np.uint8)

    def faulty(self, segment: Segment, i: int) -> Frame:
        """Frame ``i`` as a camera with the fault ``segment`` shows it."""
        if segment is Segment.FROZEN:
            return self.frame(0)  # the encoder repeats the picture it froze on
        live = self.frame(i)
        return fault(live, segment, self.rng)

    def clip(self, segments: list[tuple[Segment, int]]) -> Iterator[Frame]:
        """Frames of a clip made of ``(segment, frame count)`` stretches, numbered continuously."""
        n = 0
        for segment, count in segments:
            for _ in range(count):
                yield self.faulty(segment, n) if segment is not Segment.MOVING else self.frame(n)
                n += 1


def fault(live: Frame, segment: Segment, rng: np.random.Generator) -> Frame:
    """``live`` with the picture fault ``segment`` applied (frozen is about time: unchanged here)."""
    make = _FAULTS.get(segment)
    return live if make is None else make(live, rng)


def _black(live: Frame, rng: np.random.Generator) -> Frame:
    dark = live.astype(np.float32) * 0.04 + rng.normal(4, 1.5, live.shape)
    return np.clip(dark, 0, 255).astype(np.uint8)


def _blurred(live: Frame, rng: np.random.Generator) -> Frame:
    return cv2.GaussianBlur(live, (0, 0), 4.0 * live.shape[1] / 640)  # type: ignore[return-value]


def _covered(live: Frame, rng: np.random.Generator) -> Frame:
    # A bag over the lens: a dim, nearly uniform surface over most of the picture.
    h, w = live.shape[:2]
    covered = live.copy()
    cover = np.full((h, w, 3), (52, 58, 61), np.float32) + rng.normal(0, 0.8, (h, w, 3))
    covered[h // 6 :] = np.clip(cover[h // 6 :], 0, 255).astype(np.uint8)
    return covered


def _overexposed(live: Frame, rng: np.random.Generator) -> Frame:
    return np.clip(live.astype(np.float32) * 0.25 + 215, 0, 255).astype(np.uint8)


def _colour_cast(live: Frame, rng: np.random.Generator) -> Frame:
    gain = np.array([0.45, 0.8, 1.25], np.float32)  # B, G, R: a failing IR-cut filter's red
    return np.clip(live.astype(np.float32) * gain + (0, 10, 45), 0, 255).astype(np.uint8)


def _noise(live: Frame, rng: np.random.Generator) -> Frame:
    return np.clip(live.astype(np.float32) + rng.normal(0, 22, live.shape), 0, 255).astype(np.uint8)


_FAULTS: dict[Segment, Callable[[Frame, np.random.Generator], Frame]] = {
    Segment.BLACK: _black,
    Segment.BLURRED: _blurred,
    Segment.COVERED: _covered,
    Segment.OVEREXPOSED: _overexposed,
    Segment.COLOUR_CAST: _colour_cast,
    Segment.NOISE: _noise,
}
