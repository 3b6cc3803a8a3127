"""Synthetic traffic-camera frames: the embedded default that makes every notebook run offline.

A frame is drawn like a fixed roadside camera sees a road: a vanishing point, lanes that
converge, vehicles whose size follows the perspective, nearer vehicles hiding farther ones, the
camera name and time burned into the corner, and optionally night, rain or fog. Every vehicle
comes with its class, box and outline polygon, so the same frame illustrates classification,
detection and segmentation. The result is fully determined by the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from tcv_helpers.project import PROJECT_CLASSES

CONDITIONS = ("day", "night", "rain", "fog")
#: Vehicle classes drawn, with (width, length) relative to a lane's width at that depth.
VEHICLE_SHAPES: dict[str, tuple[float, float]] = {
    "car": (0.55, 0.75),
    "truck": (0.75, 1.6),
    "bus": (0.78, 1.9),
    "motorcycle": (0.22, 0.45),
}
CLASS_WEIGHTS = {"car": 0.7, "truck": 0.12, "bus": 0.06, "motorcycle": 0.12}
PALETTE = [
    (200, 30, 30),
    (30, 60, 160),
    (230, 230, 230),
    (20, 20, 20),
    (120, 120, 125),
    (210, 170, 40),
    (40, 120, 60),
    (150, 150, 160),
]


@dataclass(frozen=True)
class SyntheticFrame:
    """One frame and its ground truth.

    Attributes:
        image: The RGB frame.
        boxes: ``(N, 4)`` float array of ``x1, y1, x2, y2`` in pixels.
        class_ids: ``(N,)`` int array of ids into :data:`~tcv_helpers.project.PROJECT_CLASSES`.
        polygons: One outline per vehicle, ``(K, 2)`` arrays in pixels (the segmentation masks).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        camera: The camera name burned into the frame.
    """

    image: Image.Image
    boxes: np.ndarray
    class_ids: np.ndarray
    polygons: list[np.ndarray]
    condition: str
    camera: str

    @property
    def class_names(self) -> list[str]:
        """Class name of each vehicle."""
        return [PROJECT_CLASSES[i] for i in self.class_ids]


def _road_x(lanes: int, lane_pos: float, t: float, vx: float, width: int, spread: float) -> float:
    """x of a point at lane position ``lane_pos`` (0..lanes) and depth ``t`` (0 far, 1 near)."""
    half = spread * width / 2
    left = vx + (width / 2 - half - vx) * t
    return left + (2 * half * t) * lane_pos / lanes


def render_frame(
    *,
    seed: int,
    width: int = 640,
    height: int = 360,
    condition: str = "day",
    camera: str = "CAM 01",
    lanes: int = 4,
    vehicles: int = 8,
    start: datetime = datetime(2026, 5, 4, 8, 0, 0),
) -> SyntheticFrame:
    """Draws one synthetic traffic-camera frame.

    Args:
        seed: Determines the road geometry, vehicles, colours and time stamp.
        width: Frame width in pixels.
        height: Frame height in pixels.
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        camera: Camera name burned into the top-left corner.
        lanes: Number of lanes.
        vehicles: How many vehicles to try to place (overlapping placements are dropped).
        start: Time stamp of seed 0; each seed adds seconds.

    Returns:
        The frame with its boxes, classes and outlines.

    Raises:
        ValueError: On an unknown condition or a non-positive size, lane or vehicle count.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}.")
    if width < 64 or height < 64 or lanes < 1 or vehicles < 0:
        raise ValueError("width and height must be at least 64, lanes at least 1, vehicles >= 0.")
    rng = np.random.default_rng(seed)
    horizon = height * rng.uniform(0.28, 0.42)
    vx = width * rng.uniform(0.35, 0.65)
    spread = rng.uniform(1.1, 1.6)
    img = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(img)
    for y in range(int(horizon)):  # sky gradient
        k = y / max(horizon, 1)
        draw.line([(0, y), (width, y)], fill=(int(150 + 60 * k), int(185 + 40 * k), 235))
    grass = tuple(int(c) for c in rng.integers([60, 100, 50], [90, 140, 80]))
    draw.rectangle([0, horizon, width, height], fill=grass)
    for _ in range(int(rng.integers(3, 8))):  # buildings on the horizon
        bx, bw, bh = rng.uniform(0, width), rng.uniform(20, 80), rng.uniform(10, horizon * 0.8)
        shade = int(rng.integers(90, 170))
        draw.rectangle([bx, horizon - bh, bx + bw, horizon], fill=(shade, shade, shade + 10))

    def depth_y(t: float) -> float:
        return horizon + (height - horizon) * t

    road = [
        (_road_x(lanes, 0, 0.0, vx, width, spread), horizon),
        (_road_x(lanes, lanes, 0.0, vx, width, spread), horizon),
        (_road_x(lanes, lanes, 1.2, vx, width, spread), depth_y(1.2)),
        (_road_x(lanes, 0, 1.2, vx, width, spread), depth_y(1.2)),
    ]
    draw.polygon(road, fill=(85, 85, 90))
    for lane in range(1, lanes):  # dashed lane markings
        for t0 in np.arange(0.02, 1.2, 0.08):
            t1 = t0 + 0.035
            draw.line(
                [
                    (_road_x(lanes, lane, t0, vx, width, spread), depth_y(t0)),
                    (_road_x(lanes, lane, t1, vx, width, spread), depth_y(t1)),
                ],
                fill=(235, 235, 235),
                width=max(1, int(3 * t1)),
            )

    names = list(CLASS_WEIGHTS)
    probs = np.array([CLASS_WEIGHTS[n] for n in names])
    placed: list[tuple[float, int, str, float]] = []
    for _ in range(vehicles):
        t, lane = rng.uniform(0.12, 1.0), int(rng.integers(0, lanes))
        name = names[int(rng.choice(len(names), p=probs / probs.sum()))]
        if all(abs(t - pt) > 0.12 or pl != lane for pt, pl, _, _ in placed):
            placed.append((t, lane, name, rng.uniform(0.35, 0.65)))
    boxes, class_ids, polygons = [], [], []
    night = condition == "night"
    for t, lane, name, offset in sorted(placed):  # far to near: near vehicles occlude far ones
        lane_w = _road_x(lanes, lane + 1, t, vx, width, spread) - _road_x(
            lanes, lane, t, vx, width, spread
        )
        w_rel, l_rel = VEHICLE_SHAPES[name]
        w, h = lane_w * w_rel, lane_w * l_rel * 0.55
        cx = _road_x(lanes, lane + offset, t, vx, width, spread)
        bottom = depth_y(t)
        x1, y1, x2, y2 = cx - w / 2, bottom - h, cx + w / 2, bottom
        colour = PALETTE[int(rng.integers(len(PALETTE)))]
        body = np.array(
            [
                (x1, y2),
                (x1, y1 + 0.25 * h),
                (x1 + 0.12 * w, y1),
                (x2 - 0.12 * w, y1),
                (x2, y1 + 0.25 * h),
                (x2, y2),
            ]
        )
        draw.polygon([tuple(p) for p in body], fill=colour, outline=(25, 25, 25))
        glass = (40, 50, 70) if not night else (15, 15, 25)
        draw.rectangle([x1 + 0.15 * w, y1 + 0.08 * h, x2 - 0.15 * w, y1 + 0.35 * h], fill=glass)
        lamp = (255, 40, 30) if not night else (255, 90, 60)
        r = max(1.0, 0.08 * w)
        draw.ellipse([x1 + r * 0.5, y2 - 0.3 * h, x1 + 2.5 * r, y2 - 0.3 * h + 1.5 * r], fill=lamp)
        draw.ellipse([x2 - 2.5 * r, y2 - 0.3 * h, x2 - r * 0.5, y2 - 0.3 * h + 1.5 * r], fill=lamp)
        boxes.append([max(0.0, x1), max(0.0, y1), min(width, x2), min(height, y2)])
        class_ids.append(PROJECT_CLASSES.index(name))
        polygons.append(np.clip(body, 0, [width, height]))

    if condition == "night":
        arr = np.asarray(img, dtype=np.float32) * 0.25
        img = Image.fromarray(arr.astype(np.uint8))
        glow = ImageDraw.Draw(img)
        for x1, y1, x2, y2 in boxes:  # tail lights glow in the dark
            glow.ellipse(
                [x1, y2 - 0.4 * (y2 - y1), x1 + 0.25 * (x2 - x1), y2 - 0.1 * (y2 - y1)],
                fill=(255, 60, 40),
            )
            glow.ellipse(
                [x2 - 0.25 * (x2 - x1), y2 - 0.4 * (y2 - y1), x2, y2 - 0.1 * (y2 - y1)],
                fill=(255, 60, 40),
            )
    elif condition == "rain":
        rain = ImageDraw.Draw(img)
        for _ in range(width * height // 400):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            rain.line([(x, y), (x - 3, y + 12)], fill=(200, 200, 210), width=1)
        img = img.filter(ImageFilter.GaussianBlur(0.8))
    elif condition == "fog":
        arr = np.asarray(img, dtype=np.float32)
        fade = np.linspace(0.75, 0.25, height)[:, None, None]
        img = Image.fromarray((arr * (1 - fade) + 200 * fade).astype(np.uint8))

    stamp = start + timedelta(seconds=int(seed) * 7)
    label = f"{camera}  {stamp:%Y-%m-%d %H:%M:%S}"
    text = ImageDraw.Draw(img)
    text.rectangle([0, 0, 7 * len(label) + 8, 16], fill=(0, 0, 0))
    text.text((4, 2), label, fill=(255, 255, 255))
    return SyntheticFrame(
        image=img,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        class_ids=np.array(class_ids, dtype=np.int64),
        polygons=polygons,
        condition=condition,
        camera=camera,
    )
