"""The embedded synthetic traffic-camera dataset: what makes every notebook run offline.

Frames are drawn the way a fixed roadside camera sees a road. Each camera has its own road
geometry (vanishing point, horizon, lane count, width), background and palette, kept for all of
its frames; vehicles (car, truck, bus, motorcycle) have plausible shapes, sizes that follow the
perspective, and hide each other; half the lanes carry traffic towards the camera (headlights),
half away from it (tail lights). Conditions are day, night, rain and fog; the camera name and
time are burned into the corner, and JPEG artefacts come from saving at a varying quality.

Every labelled vehicle also has an instance mask: the outline of its visible pixels, written as
YOLO segmentation labels in a dataset of its own (``segment/`` inside the generated folder, the
same frames), so that detection and segmentation train on the same pictures.

Besides single frames it makes short **sequences** of one camera with vehicles moving along their
lanes and their track ids: the ground truth for counting (notebook 10).

Everything is determined by the seed.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tcv_helpers.data.dataset import write_data_yaml
from tcv_helpers.data.labels import MANIFEST_COLUMNS
from tcv_helpers.io import atomic_write_bytes, atomic_write_text
from tcv_helpers.project import PROJECT_CLASSES

CONDITIONS = ("day", "night", "rain", "fog")
#: Share of frames per condition in a generated dataset.
CONDITION_WEIGHTS = {"day": 0.55, "night": 0.2, "rain": 0.15, "fog": 0.1}
#: Vehicle classes drawn: (width, length) relative to the lane width at that depth, and weight.
VEHICLES: dict[str, tuple[float, float, float]] = {
    "car": (0.58, 0.8, 0.68),
    "truck": (0.78, 1.5, 0.12),
    "bus": (0.8, 1.8, 0.07),
    "motorcycle": (0.24, 0.5, 0.13),
}
SYNTH_CLASSES = tuple(VEHICLES)
PALETTE = (
    (200, 30, 30), (30, 60, 160), (225, 225, 225), (25, 25, 25), (120, 120, 125),
    (210, 170, 40), (40, 120, 60), (150, 150, 160), (90, 40, 20), (240, 120, 20),
)  # fmt: skip
#: Depth range (0 = horizon, 1 = bottom of the frame) where vehicles are labelled.
MIN_DEPTH, MAX_DEPTH = 0.22, 1.05
#: A vehicle less visible than this (occluded or cut by the frame) is not labelled.
MIN_VISIBLE = 0.3
#: In sequences, the least distance between vehicles in a lane, in units of 1 / depth.
FOLLOW_GAP = 0.6
#: A crossing is ground truth when the vehicle is labelled within this many seconds before and
#: after it: one made out of sight (off-screen, or hidden behind another vehicle) is not.
VISIBLE_CROSSING_S = 0.5
#: Boxes smaller than this many pixels (at the generated size) are not labelled.
MIN_BOX_PX = 6
#: Most distance, in pixels, between a segmentation outline and the visible pixels' boundary
#: it simplifies (``cv2.approxPolyDP``'s epsilon): a few vertices per vehicle, not a staircase.
OUTLINE_TOLERANCE = 0.75
#: The folder, inside a generated dataset, of its segmentation dataset (own ``data.yaml``,
#: ``images/`` and ``labels/``: Ultralytics finds labels by replacing ``/images/`` with
#: ``/labels/`` in an image's path, so detection and segmentation labels need their own roots).
SEGMENT_DIR = "segment"
#: Version of what :func:`generate_dataset` writes; a set of an older version found in a
#: workspace is generated again (2: the ``segment/`` dataset of instance masks was added).
DATASET_LAYOUT = 2
SPLITS = ("train", "val", "test")
#: Sky (top, horizon) and ground colours a camera's scene is drawn from.
SKIES = (
    ((100, 150, 220), (215, 225, 240)), ((150, 155, 165), (205, 205, 210)),
    ((70, 90, 160), (240, 180, 120)), ((120, 170, 230), (235, 240, 245)),
)  # fmt: skip
GROUNDS = ((80, 115, 60), (120, 120, 115), (150, 130, 95), (60, 90, 55), (170, 165, 150))
START = datetime(2026, 5, 4, 6, 0, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Camera:
    """A synthetic fixed camera: its road geometry and look, the same for all its frames.

    Attributes:
        camera_id: Identifier used in file names and the manifest (``cam-00``).
        name: Burned into the frame (``CAM 00 RIVER RD``).
        seed: Seed of the camera's geometry and background.
        width: Frame width in pixels.
        height: Frame height in pixels.
        horizon: y of the horizon in pixels.
        vanish_x: x of the vanishing point in pixels.
        spread: Road width at the bottom of the frame, relative to the frame width.
        lanes: Number of lanes; the left half carries traffic away from the camera.
        roll: Camera roll in degrees (a mounted camera is rarely level).
    """

    camera_id: str
    name: str
    seed: int
    width: int
    height: int
    horizon: float
    vanish_x: float
    spread: float
    lanes: int
    roll: float = 0.0

    def lane_x(self, lane_pos: float, depth: float) -> float:
        """x of a point at ``lane_pos`` (0 = left road edge, ``lanes`` = right) and ``depth``."""
        half = self.spread * self.width / 2
        left = self.vanish_x + (self.width / 2 - half - self.vanish_x) * depth
        return left + 2 * half * depth * lane_pos / self.lanes

    def depth_y(self, depth: float) -> float:
        """y of a depth (0 = horizon, 1 = bottom of the frame)."""
        return self.horizon + (self.height - self.horizon) * depth

    def approaching(self, lane: int) -> bool:
        """True for lanes whose traffic drives towards the camera (the right half)."""
        return lane >= self.lanes // 2

    def counting_line(self, depth: float = 0.6) -> tuple[tuple[float, float], tuple[float, float]]:
        """A line across the whole road at ``depth``, in pixels: where vehicles are counted."""
        y = self.depth_y(depth)
        return (self.lane_x(0, depth), y), (self.lane_x(self.lanes, depth), y)


def make_camera(index: int, *, seed: int = 0, width: int = 640, height: int = 360) -> Camera:
    """The ``index``-th synthetic camera of a dataset with ``seed``.

    Raises:
        ValueError: If the size is below 64 pixels or the index is negative.
    """
    if width < 64 or height < 64 or index < 0:
        raise ValueError("width and height must be at least 64 and index not negative.")
    rng = np.random.default_rng([seed, index, 7919])
    streets = ("RIVER RD", "MAIN ST", "I-5 N", "HWY 101", "5TH AVE", "PORT BLVD", "AIRPORT RD")
    return Camera(
        camera_id=f"cam-{index:02d}",
        name=f"CAM {index:02d} {streets[int(rng.integers(len(streets)))]}",
        seed=int(rng.integers(2**31)),
        width=width,
        height=height,
        horizon=float(height * rng.uniform(0.22, 0.4)),
        vanish_x=float(width * rng.uniform(0.3, 0.7)),
        spread=float(rng.uniform(1.1, 1.7)),
        lanes=int(rng.choice([2, 3, 4, 4, 5, 6])),
        roll=float(rng.uniform(-7, 7)),
    )


@lru_cache(maxsize=64)
def _background(camera: Camera) -> Image.Image:
    """The static scene of a camera: sky, ground, buildings, road and lane markings."""
    rng = np.random.default_rng(camera.seed)
    w, h, horizon = camera.width, camera.height, int(camera.horizon)
    sky_top, sky_low = SKIES[int(rng.integers(len(SKIES)))]
    sky = np.linspace(np.array(sky_top) + rng.integers(-15, 16, 3), sky_low, max(horizon, 1))
    ground = np.array(GROUNDS[int(rng.integers(len(GROUNDS)))], dtype=float) + rng.integers(
        -15, 16, 3
    )
    arr = np.empty((h, w, 3), dtype=np.float32)
    arr[:horizon] = sky[:, None, :]
    arr[horizon:] = ground
    arr[horizon:] += rng.normal(0, 6, (h - horizon, w, 1))  # ground texture
    shade = np.linspace(1.0, rng.uniform(0.55, 1.0), w)  # light falls off across the view
    arr *= shade[None, :, None] if rng.random() < 0.5 else shade[None, ::-1, None]
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 14))):  # buildings and trees on the horizon
        bx, bw = rng.uniform(-20, w), rng.uniform(15, 140)
        bh = rng.uniform(8, max(horizon * 0.95, 10))
        grey = int(rng.integers(50, 200))
        tint = (grey, grey, grey + 12) if rng.random() < 0.7 else (30, grey // 2 + 40, 30)
        draw.rectangle([bx, horizon - bh, bx + bw, horizon], fill=tint)
    side = -1 if rng.random() < 0.5 else camera.lanes + 1  # a sidewalk or hard shoulder on one side
    kerb = [
        (camera.lane_x(min(side, 0), 0), horizon), (camera.lane_x(max(side, camera.lanes), 0), horizon),
        (camera.lane_x(max(side, camera.lanes), 1.3), camera.depth_y(1.3)),
        (camera.lane_x(min(side, 0), 1.3), camera.depth_y(1.3)),
    ]  # fmt: skip
    draw.polygon(kerb, fill=tuple(int(v) for v in rng.integers(120, 190, 3)))
    for _ in range(int(rng.integers(1, 5))):  # lamp posts and sign gantries near the camera
        px, top = rng.uniform(0, w), rng.uniform(0, horizon)
        draw.rectangle([px, top, px + rng.uniform(3, 12), h], fill=(60, 60, 65))
    road_grey = int(rng.integers(70, 105))
    road = [
        (camera.lane_x(0, 0), horizon),
        (camera.lane_x(camera.lanes, 0), horizon),
        (camera.lane_x(camera.lanes, 1.3), camera.depth_y(1.3)),
        (camera.lane_x(0, 1.3), camera.depth_y(1.3)),
    ]
    draw.polygon(road, fill=(road_grey, road_grey, road_grey + 4))
    for edge in (0, camera.lanes):
        draw.line(
            [(camera.lane_x(edge, 0), horizon), (camera.lane_x(edge, 1.3), camera.depth_y(1.3))],
            fill=(230, 230, 230),
            width=2,
        )
    middle = camera.lanes // 2
    for lane in range(1, camera.lanes):
        colour = (235, 200, 40) if lane == middle else (235, 235, 235)
        if lane == middle:  # solid centre line between the two directions
            draw.line(
                [
                    (camera.lane_x(lane, 0), horizon),
                    (camera.lane_x(lane, 1.3), camera.depth_y(1.3)),
                ],
                fill=colour,
                width=2,
            )
            continue
        for t0 in np.arange(0.02, 1.3, 0.09):
            t1 = t0 + 0.04
            draw.line(
                [
                    (camera.lane_x(lane, t0), camera.depth_y(t0)),
                    (camera.lane_x(lane, t1), camera.depth_y(t1)),
                ],
                fill=colour,
                width=max(1, int(3 * t1)),
            )
    return img


@dataclass(frozen=True)
class Vehicle:
    """One vehicle on the road.

    Attributes:
        class_name: ``car``, ``truck``, ``bus`` or ``motorcycle``.
        lane: Lane index.
        depth: Position along the road (0 = horizon, 1 = bottom of the frame).
        offset: Position across the lane (0-1).
        colour: Body colour.
        track_id: Identity across the frames of a sequence.
    """

    class_name: str
    lane: int
    depth: float
    offset: float
    colour: tuple[int, int, int]
    track_id: int = 0


@dataclass(frozen=True)
class SyntheticFrame:
    """One frame and its ground truth.

    Attributes:
        image: The RGB frame.
        boxes: ``(N, 4)`` float array of ``x1, y1, x2, y2`` in pixels (visible extent).
        class_ids: ``(N,)`` int array of ids into :data:`~tcv_helpers.project.PROJECT_CLASSES`.
        polygons: One outline per labelled vehicle, ``(K, 2)`` arrays in pixels: the whole
            body, also where a nearer vehicle hides it.
        track_ids: ``(N,)`` track ids (meaningful in sequences).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        camera: The camera name burned into the frame.
        timestamp: The time burned into the frame.
        segments: One polygon per labelled vehicle, ``(K, 2)`` arrays in pixels, around its
            *visible* pixels (what nearer vehicles and the frame edge leave): its instance mask,
            whose bounding box is the vehicle's box to within a pixel. Parts cut apart by a nearer vehicle are
            joined by zero-width bridges, since a YOLO segmentation label is one polygon.
    """

    image: Image.Image
    boxes: np.ndarray
    class_ids: np.ndarray
    polygons: list[np.ndarray]
    track_ids: np.ndarray
    condition: str
    camera: str
    timestamp: datetime = START
    segments: list[np.ndarray] = field(default_factory=list)

    @property
    def class_names(self) -> list[str]:
        """Class name of each labelled vehicle."""
        return [PROJECT_CLASSES[i] for i in self.class_ids]


def random_vehicles(camera: Camera, rng: np.random.Generator, count: int) -> list[Vehicle]:
    """Places up to ``count`` vehicles on the camera's lanes without overlapping in one lane."""
    names = list(VEHICLES)
    weights = np.array([VEHICLES[n][2] for n in names])
    placed: list[Vehicle] = []
    for track in range(count):
        depth = float(rng.uniform(MIN_DEPTH, MAX_DEPTH))
        lane = int(rng.integers(camera.lanes))
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if all(abs(depth - v.depth) > 0.14 or v.lane != lane for v in placed):
            colour = PALETTE[int(rng.integers(len(PALETTE)))]
            placed.append(
                Vehicle(name, lane, depth, float(rng.uniform(0.3, 0.7)), colour, track + 1)
            )
    return placed


def _vehicle_outline(
    camera: Camera, v: Vehicle
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    lane_w = camera.lane_x(v.lane + 1, v.depth) - camera.lane_x(v.lane, v.depth)
    w_rel, l_rel, _ = VEHICLES[v.class_name]
    w, h = lane_w * w_rel, lane_w * l_rel * 0.6
    cx, bottom = camera.lane_x(v.lane + v.offset, v.depth), camera.depth_y(v.depth)
    x1, y1, x2, y2 = cx - w / 2, bottom - h, cx + w / 2, bottom
    roof = 0.12 if v.class_name in ("car", "motorcycle") else 0.04
    body = np.array(
        [(x1, y2), (x1, y1 + 0.25 * h), (x1 + roof * w, y1), (x2 - roof * w, y1),
         (x2, y1 + 0.25 * h), (x2, y2)]
    )  # fmt: skip
    return body, (x1, y1, x2, y2)


def draw_frame(
    camera: Camera,
    vehicles: list[Vehicle],
    *,
    condition: str = "day",
    timestamp: datetime = START,
    noise_seed: int = 0,
) -> SyntheticFrame:
    """Draws vehicles on a camera's scene in a condition and labels what is visible.

    Args:
        camera: The camera.
        vehicles: Vehicles to draw (far ones first, so near ones hide them).
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        timestamp: The time burned into the frame.
        noise_seed: Seed for rain streaks and sensor noise.

    Returns:
        The frame with the boxes of every sufficiently visible vehicle.

    Raises:
        ValueError: On an unknown condition.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}.")
    rng = np.random.default_rng(noise_seed)
    night = condition == "night"
    img = _background(camera).copy()
    if night:
        img = Image.fromarray((np.asarray(img, dtype=np.float32) * 0.22).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    ids = Image.new("L", img.size, 0)  # which vehicle owns each pixel: occlusion bookkeeping
    id_draw = ImageDraw.Draw(ids)
    order = sorted(range(len(vehicles)), key=lambda i: vehicles[i].depth)
    outlines, lights = {}, []
    for rank, i in enumerate(order, start=1):
        v = vehicles[i]
        body, (x1, y1, x2, y2) = _vehicle_outline(camera, v)
        w, h = x2 - x1, y2 - y1
        colour = tuple(int(c * (0.35 if night else 1.0)) for c in v.colour)
        draw.polygon([tuple(p) for p in body], fill=colour, outline=(20, 20, 20))
        id_draw.polygon([tuple(p) for p in body], fill=rank)
        towards = camera.approaching(v.lane)
        glass_top, glass_bottom = (0.3, 0.62) if towards else (0.08, 0.35)
        glass = (15, 15, 25) if night else (45, 55, 75)
        draw.rectangle(
            [x1 + 0.14 * w, y1 + glass_top * h, x2 - 0.14 * w, y1 + glass_bottom * h], fill=glass
        )
        lamp = (255, 250, 210) if towards else (230, 30, 25)
        r = max(1.0, 0.09 * w)
        for lx in (x1 + 0.6 * r, x2 - 2.6 * r):
            box = [lx, y2 - 0.28 * h, lx + 2 * r, y2 - 0.28 * h + 1.4 * r]
            draw.ellipse(box, fill=lamp)
            lights.append((box, lamp, towards))
        outlines[rank] = (i, body)
    if night:  # lamps glow in the dark
        glow = Image.new("RGB", img.size, (0, 0, 0))
        glow_draw = ImageDraw.Draw(glow)
        for (lx1, ly1, lx2, ly2), lamp, towards in lights:
            grow = (lx2 - lx1) * (2.0 if towards else 1.0)
            glow_draw.ellipse([lx1 - grow, ly1 - grow, lx2 + grow, ly2 + grow], fill=lamp)
        glow = glow.filter(ImageFilter.GaussianBlur(4))
        img = Image.fromarray(
            np.clip(np.asarray(img, np.uint16) + np.asarray(glow, np.uint16), 0, 255).astype(
                np.uint8
            )
        )
    elif condition == "rain":
        rain = ImageDraw.Draw(img)
        for _ in range(camera.width * camera.height // 500):
            x, y = rng.uniform(0, camera.width), rng.uniform(0, camera.height)
            rain.line([(x, y), (x - 3, y + 11)], fill=(195, 195, 205), width=1)
        img = img.filter(ImageFilter.GaussianBlur(0.9))
    elif condition == "fog":
        arr = np.asarray(img, dtype=np.float32)
        fade = np.linspace(0.7, 0.2, camera.height)[:, None, None]
        img = Image.fromarray((arr * (1 - fade) + 205 * fade).astype(np.uint8))

    counts = np.bincount(np.asarray(ids).ravel(), minlength=len(vehicles) + 1)
    affine, zoom = _roll_transform(camera)
    if affine is not None:  # the whole view turns with the camera's roll; labels follow the pixels
        img = img.transform(
            img.size, Image.Transform.AFFINE, affine, resample=Image.Resampling.BILINEAR
        )
        ids = ids.transform(
            ids.size, Image.Transform.AFFINE, affine, resample=Image.Resampling.NEAREST
        )
    owner = np.asarray(ids)
    after = np.bincount(owner.ravel(), minlength=len(vehicles) + 1)
    boxes, class_ids, polygons, tracks, segments = [], [], [], [], []
    for rank, (i, body) in outlines.items():
        v = vehicles[i]
        full = Image.new("L", img.size, 0)
        ImageDraw.Draw(full).polygon([tuple(p) for p in body], fill=1)
        full_area = int(np.asarray(full).sum())
        if full_area == 0 or counts[rank] / full_area < MIN_VISIBLE:
            continue  # mostly hidden behind nearer vehicles
        if after[rank] / (full_area * zoom**2) < MIN_VISIBLE:
            continue  # mostly outside the frame
        visible = owner == rank
        ys, xs = np.nonzero(visible)
        box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
        if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
            continue
        boxes.append(box)
        class_ids.append(PROJECT_CLASSES.index(v.class_name))
        polygons.append(np.clip(_roll_points(camera, body, zoom), 0, [camera.width, camera.height]))
        tracks.append(v.track_id)
        left, top, right, bottom = (int(c) for c in box)
        segments.append(_visible_outline(visible[top:bottom, left:right], left, top))

    if night:
        img = Image.fromarray(
            np.clip(
                np.asarray(img, np.float32) + rng.normal(0, 5, (camera.height, camera.width, 1)),
                0,
                255,
            ).astype(np.uint8)
        )
    label = f"{camera.name}  {timestamp:%Y-%m-%d %H:%M:%S}"
    text = ImageDraw.Draw(img)
    font = _font(max(10, camera.height // 28))
    right, bottom = text.textbbox((4, 2), label, font=font)[2:]
    text.rectangle([0, 0, right + 4, bottom + 3], fill=(0, 0, 0))
    text.text((4, 2), label, fill=(255, 255, 255), font=font)
    return SyntheticFrame(
        image=img,
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        class_ids=np.array(class_ids, dtype=np.int64),
        polygons=polygons,
        track_ids=np.array(tracks, dtype=np.int64),
        condition=condition,
        camera=camera.name,
        timestamp=timestamp,
        segments=segments,
    )


def _visible_outline(visible: np.ndarray, left: int, top: int) -> np.ndarray:
    """One polygon, in frame pixels, around the ``True`` pixels of a mask cut from the frame at
    ``(left, top)``.

    The boundary (``cv2.findContours``, pixel centres) is simplified to within
    :data:`OUTLINE_TOLERANCE`; separate parts are joined, largest first, by a zero-width bridge
    between their nearest vertices (there and back), which fills to the same pixels.
    """
    import cv2

    contours, _ = cv2.findContours(
        visible.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    parts = [cv2.approxPolyDP(c, OUTLINE_TOLERANCE, True).reshape(-1, 2) for c in contours]
    parts = [p.astype(np.float64) for p in parts if len(p) >= 3]  # slivers of a pixel or two
    if not parts:  # a thin line of pixels: its bounding rectangle
        ys, xs = np.nonzero(visible)
        x1, y1, x2, y2 = xs.min(), ys.min(), xs.max(), ys.max()
        parts = [np.array([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], dtype=np.float64)]
    parts.sort(key=lambda p: -abs(cv2.contourArea(p.astype(np.float32))))
    outline = parts[0]
    for part in parts[1:]:
        gaps = ((outline[:, None, :] - part[None, :, :]) ** 2).sum(axis=-1)
        i, j = np.unravel_index(int(gaps.argmin()), gaps.shape)
        loop = np.roll(part, -j, axis=0)
        outline = np.concatenate([outline[: i + 1], loop, loop[:1], outline[i:]])
    return outline + np.array([left + 0.5, top + 0.5])  # pixel centres, in frame pixels


def _roll_transform(camera: Camera) -> tuple[tuple[float, ...] | None, float]:
    """PIL affine data that turns the view by the camera's roll, zoomed so no corner is empty."""
    if not camera.roll:
        return None, 1.0
    theta = np.deg2rad(camera.roll)
    cos, sin = float(np.cos(theta)), float(np.sin(theta))
    aspect = max(camera.width / camera.height, camera.height / camera.width)
    zoom = abs(cos) + abs(sin) * aspect
    cx, cy = camera.width / 2, camera.height / 2
    a, b, d, e = cos / zoom, sin / zoom, -sin / zoom, cos / zoom  # output pixel -> input pixel
    return (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy), zoom


def _roll_points(camera: Camera, points: np.ndarray, zoom: float) -> np.ndarray:
    """Where input pixels land after :func:`_roll_transform` (the forward map)."""
    if not camera.roll:
        return points
    theta = np.deg2rad(camera.roll)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([camera.width / 2, camera.height / 2])
    return (points - centre) @ rot.T * zoom + centre


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def render_frame(
    *,
    seed: int,
    width: int = 640,
    height: int = 360,
    condition: str = "day",
    camera_index: int | None = None,
    vehicles: int = 8,
) -> SyntheticFrame:
    """Draws one synthetic traffic-camera frame.

    Args:
        seed: Determines the camera (unless ``camera_index`` is given), vehicles and time.
        width: Frame width in pixels.
        height: Frame height in pixels.
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        camera_index: Use this camera of dataset seed 0 (default: a camera made from ``seed``).
        vehicles: How many vehicles to try to place (overlapping placements are dropped).

    Returns:
        The frame with its boxes, classes and outlines.

    Raises:
        ValueError: On an unknown condition, a size below 64 pixels or a negative count.
    """
    if vehicles < 0:
        raise ValueError("vehicles must not be negative.")
    camera = (
        make_camera(camera_index, seed=0, width=width, height=height)
        if camera_index is not None
        else make_camera(seed % 1000, seed=seed, width=width, height=height)
    )
    rng = np.random.default_rng([seed, 1])
    timestamp = START + timedelta(seconds=int(rng.integers(0, 86400 * 30)))
    return draw_frame(
        camera,
        random_vehicles(camera, rng, vehicles),
        condition=condition,
        timestamp=timestamp,
        noise_seed=seed,
    )


def split_cameras(
    cameras: int, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
) -> dict[int, str]:
    """Assigns whole cameras to train/val/test, so that no camera is in two splits.

    Raises:
        ValueError: With fewer than 3 cameras (each split needs one) or bad fractions.
    """
    if cameras < 3:
        raise ValueError(f"need at least 3 cameras to split by camera, got {cameras}.")
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError("fractions must be three positive numbers adding up to 1.")
    n_val = max(1, round(cameras * fractions[1]))
    n_test = max(1, round(cameras * fractions[2]))
    n_train = cameras - n_val - n_test
    if n_train < 1:
        n_train, n_val, n_test = cameras - 2, 1, 1
    return {
        i: ("train" if i < n_train else "val" if i < n_train + n_val else "test")
        for i in range(cameras)
    }


@dataclass
class SynthDataset:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: The dataset folder.
        data_yaml: Its Ultralytics ``data.yaml``.
        manifest: Its ``manifest.csv``.
        images: Frames per split.
        boxes: Labelled boxes per class name.
        sequences: Sequence folders (for counting).
        cameras: Split of each camera id.
        segment_yaml: The ``data.yaml`` of the segmentation dataset (``segment/``: the same
            frames with instance-mask polygons as labels).
    """

    root: Path
    data_yaml: Path
    manifest: Path
    images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    sequences: list[Path] = field(default_factory=list)
    cameras: dict[str, str] = field(default_factory=dict)
    segment_yaml: Path | None = None


def _encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _yolo_lines(frame: SyntheticFrame) -> str:
    from tcv_helpers.data.yolo import format_yolo_number as num

    w, h = frame.image.size
    lines = []
    for (x1, y1, x2, y2), cls in zip(frame.boxes, frame.class_ids, strict=True):
        cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
        lines.append(f"{cls} {num(cx)} {num(cy)} {num(bw)} {num(bh)}")
    return "\n".join(lines) + ("\n" if lines else "")


def segment_lines(frame: SyntheticFrame) -> str:
    """A frame's YOLO segmentation labels: ``class x1 y1 x2 y2 ...`` per vehicle, normalised.

    Args:
        frame: The frame (its :attr:`~SyntheticFrame.segments` and class ids).

    Returns:
        The label file's text (one line per vehicle, in the order of the boxes).

    Raises:
        ValueError: If the frame has no segment for each box (a frame made by hand).
    """
    from tcv_helpers.data.yolo import format_yolo_number as num

    if len(frame.segments) != len(frame.class_ids):
        raise ValueError(
            f"{len(frame.class_ids)} vehicles but {len(frame.segments)} segments in the frame."
        )
    scale = np.array(frame.image.size, dtype=np.float64)
    lines = []
    for outline, cls in zip(frame.segments, frame.class_ids, strict=True):
        points = np.clip(outline / scale, 0.0, 1.0).ravel()
        lines.append(" ".join([str(int(cls)), *(num(float(v)) for v in points)]))
    return "\n".join(lines) + ("\n" if lines else "")


def _link_or_copy(source: Path, dest: Path, data: bytes) -> None:
    """``dest`` becomes a hard link to ``source`` (no second copy on disk), atomically; where
    the file system has no hard links (Google Drive, some network shares), a copy of ``data``."""
    tmp = dest.with_name(f".{dest.name}.link.tmp")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, dest)
    except OSError:
        tmp.unlink(missing_ok=True)
        atomic_write_bytes(dest, data)


def _run_tasks(
    function: Any,
    tasks: list[tuple],
    *,
    workers: int | None,
    progress: bool = False,
    desc: str = "",
) -> list[Any]:
    """``function`` over ``tasks`` in order, in worker processes (default: the CPU count, at
    most 8) when there are enough tasks to repay starting them."""
    from tqdm.auto import tqdm

    workers = workers or min(os.cpu_count() or 1, 8)
    if workers < 2 or len(tasks) < 32:
        return [function(t) for t in tqdm(tasks, disable=not progress, desc=desc)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        mapped = pool.map(function, tasks, chunksize=max(1, min(16, len(tasks) // (2 * workers))))
        return list(tqdm(mapped, total=len(tasks), disable=not progress, desc=desc))


def _make_one(task: tuple) -> tuple[str, str, str, str, str, int, list[int]]:
    """Renders, encodes and writes one frame (runs in a worker process)."""
    root, index, cam_index, seed, width, height, split, condition = task
    camera = make_camera(cam_index, seed=seed, width=width, height=height)
    rng = np.random.default_rng([seed, index, 31])
    base = START + timedelta(days=int(rng.integers(0, 60)))
    hour = int(rng.integers(21, 28)) % 24 if condition == "night" else int(rng.integers(7, 19))
    timestamp = base.replace(hour=hour, minute=int(rng.integers(60)), second=int(rng.integers(60)))
    frame = draw_frame(
        camera,
        random_vehicles(camera, rng, int(rng.integers(3, 13))),
        condition=condition,
        timestamp=timestamp,
        noise_seed=int(rng.integers(2**31)),
    )
    stem = f"{camera.camera_id}_{index:06d}"
    image_rel = f"images/{split}/{stem}.jpg"
    jpeg = _encode_jpeg(frame.image, int(rng.integers(55, 92)))
    image = atomic_write_bytes(Path(root) / image_rel, jpeg)
    atomic_write_text(Path(root) / f"labels/{split}/{stem}.txt", _yolo_lines(frame))
    segment = Path(root) / SEGMENT_DIR
    _link_or_copy(image, segment / image_rel, jpeg)
    atomic_write_text(segment / f"labels/{split}/{stem}.txt", segment_lines(frame))
    return (
        image_rel,
        camera.camera_id,
        timestamp.isoformat(),
        condition,
        split,
        len(frame.boxes),
        frame.class_ids.tolist(),
    )


def generate_dataset(
    out: str | os.PathLike,
    *,
    images: int = 240,
    cameras: int = 6,
    seed: int = 0,
    width: int = 640,
    height: int = 360,
    sequences: int = 2,
    sequence_frames: int = 90,
    workers: int | None = None,
    progress: bool = False,
) -> SynthDataset:
    """Generates the embedded synthetic dataset (``tcv data synth``).

    Writes, under ``out``: ``images/{train,val,test}/*.jpg`` and ``labels/...`` in YOLO format,
    ``data.yaml`` for Ultralytics, ``annotations/instances_<split>.json`` (COCO), ``manifest.csv`` (image, camera_id, timestamp, source,
    condition, split, boxes), ``sequences/<camera>-<k>/`` with frames and ``tracks.csv``, and
    the segmentation dataset ``segment/`` (:data:`SEGMENT_DIR`): its own ``data.yaml`` and
    ``manifest.csv``, the same images (hard links, or copies where links are impossible) and
    ``labels/`` with one polygon per box (:func:`segment_lines`).
    Cameras are split whole into train/val/test (no camera in two splits). Every file is
    written atomically; the same arguments give the same files.

    Args:
        out: Dataset folder (created; existing generated files are overwritten).
        images: Number of labelled frames.
        cameras: Number of distinct cameras (at least 3).
        seed: Seed of the whole dataset.
        width: Frame width in pixels.
        height: Frame height in pixels.
        sequences: Number of frame sequences for counting.
        sequence_frames: Frames per sequence.
        workers: Worker processes (default: the CPU count, at most 8).
        progress: Show a progress bar.

    Returns:
        What was written, with counts per split and class.

    Raises:
        ValueError: On a non-positive image count or fewer than 3 cameras.
    """
    from tcv_helpers.data.formats import read_labels, write_labels

    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}.")
    split_of = split_cameras(cameras)
    root = Path(out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 101])
    names, weights = list(CONDITION_WEIGHTS), np.array(list(CONDITION_WEIGHTS.values()))
    tasks = []
    for index in range(images):
        cam = index % cameras
        condition = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        tasks.append((str(root), index, cam, seed, width, height, split_of[cam], condition))
    rows = _run_tasks(_make_one, tasks, workers=workers, progress=progress, desc="synth")

    result = SynthDataset(root=root, data_yaml=root / "data.yaml", manifest=root / "manifest.csv")
    result.cameras = {make_camera(i, seed=seed).camera_id: s for i, s in split_of.items()}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*MANIFEST_COLUMNS, "boxes"])
    for image_rel, camera_id, timestamp, condition, split, n_boxes, class_ids in rows:
        writer.writerow([image_rel, camera_id, timestamp, "synthetic", condition, split, n_boxes])
        result.images[split] = result.images.get(split, 0) + 1
        for cls in class_ids:
            result.boxes[PROJECT_CLASSES[cls]] = result.boxes.get(PROJECT_CLASSES[cls], 0) + 1
    atomic_write_text(result.manifest, buffer.getvalue())
    atomic_write_text(root / SEGMENT_DIR / "manifest.csv", buffer.getvalue())  # same image paths
    for split in SPLITS:  # Ultralytics wants every listed folder to exist
        for folder in (root, root / SEGMENT_DIR):
            (folder / "images" / split).mkdir(parents=True, exist_ok=True)
            (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
    write_data_yaml(
        result.data_yaml,
        names=PROJECT_CLASSES,
        splits={split: f"images/{split}" for split in SPLITS},
        root=root,
        header="# Embedded synthetic traffic-camera dataset (tcv data synth); classes: project "
        "taxonomy.",
    )
    result.segment_yaml = write_data_yaml(
        root / SEGMENT_DIR / "data.yaml",
        names=PROJECT_CLASSES,
        splits={split: f"images/{split}" for split in SPLITS},
        root=root / SEGMENT_DIR,
        header="# Instance masks of the embedded synthetic set (tcv data synth): the same frames, "
        "one YOLO segmentation polygon per vehicle.",
    )
    coco = read_labels(root, "yolo")  # the same labels as COCO json, beside the YOLO files
    coco.root = None  # written into the dataset itself, images stay where they are
    write_labels(coco, root, "coco", copy_images=False)
    for k in range(sequences):
        result.sequences.append(
            generate_sequence(root / "sequences", camera_index=k % cameras, seed=seed, index=k,
                              frames=sequence_frames, width=width, height=height)
        )  # fmt: skip
    return result


def _draw_sequence_frame(task: tuple) -> list[tuple[list[float], int, int]]:
    """Draws and writes one frame of a sequence (runs in a worker process): its labels."""
    folder, f, camera_index, seed, width, height, vehicles, condition, when = task
    camera = make_camera(camera_index, seed=seed, width=width, height=height)
    frame = draw_frame(camera, vehicles, condition=condition, timestamp=when, noise_seed=f)
    atomic_write_bytes(folder / "frames" / f"{f:06d}.jpg", _encode_jpeg(frame.image, 85))
    return [
        ([round(float(v), 2) for v in box], int(cls), int(track))
        for box, cls, track in zip(frame.boxes, frame.class_ids, frame.track_ids, strict=True)
    ]


def generate_sequence(
    out: str | os.PathLike,
    *,
    camera_index: int = 0,
    seed: int = 0,
    index: int = 0,
    frames: int = 90,
    fps: float = 10.0,
    width: int = 640,
    height: int = 360,
    condition: str = "day",
    spawn_rate: float = 0.25,
    workers: int | None = None,
) -> Path:
    """A frame sequence of one camera with vehicles moving along their lanes (counting ground truth).

    Writes ``out/<camera>-<index>/frames/000000.jpg ...``, ``tracks.csv`` (frame, track_id,
    class_name, direction, x1, y1, x2, y2) and ``sequence.json`` (camera, fps, the counting line
    in pixels and the true counts per direction across it). Vehicles keep their distance in a
    lane; a crossing counts when the vehicle is labelled within :data:`VISIBLE_CROSSING_S`
    before and after it, i.e. when a camera could see it.

    Args:
        out: Parent folder.
        camera_index: Which camera of the dataset ``seed``.
        seed: Dataset seed.
        index: Sequence number (varies the traffic).
        frames: Number of frames.
        fps: Frames per second (sets vehicle speeds).
        width: Frame width.
        height: Frame height.
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        spawn_rate: Chance per frame and direction that a new vehicle enters.
        workers: Processes drawing the frames (default: the CPU count, at most 8); the
            traffic is simulated first, in order, so the files do not depend on it.

    Returns:
        The sequence folder.

    Raises:
        ValueError: If frames or fps is not positive.
    """
    if frames < 1 or fps <= 0:
        raise ValueError("frames and fps must be positive.")
    camera = make_camera(camera_index, seed=seed, width=width, height=height)
    rng = np.random.default_rng([seed, index, 977])
    folder = Path(out) / f"{camera.camera_id}-{index}"
    names = list(VEHICLES)
    weights = np.array([VEHICLES[n][2] for n in names])
    line_depth = 0.6
    active: list[dict] = []
    next_id, crossings = 1, []  # (track id, direction, frame before the crossing)
    tasks, directions = [], []  # per frame: what to draw, and each track's direction
    start = START + timedelta(hours=8 + index)
    for f in range(frames):
        for towards in (True, False):
            if rng.random() < spawn_rate:
                lanes = [ln for ln in range(camera.lanes) if camera.approaching(ln) == towards]
                lane = int(rng.choice(lanes))
                depth = MIN_DEPTH if towards else MAX_DEPTH + 0.25
                if all(a["lane"] != lane or abs(a["depth"] - depth) > 0.2 for a in active):
                    active.append({
                        "id": next_id, "lane": lane, "depth": depth, "towards": towards,
                        "class": names[int(rng.choice(len(names), p=weights / weights.sum()))],
                        "speed": float(rng.uniform(0.25, 0.45)) / fps, "offset": float(rng.uniform(0.35, 0.65)),
                        "colour": PALETTE[int(rng.integers(len(PALETTE)))],
                    })  # fmt: skip
                    next_id += 1
        vehicles = [
            Vehicle(a["class"], a["lane"], a["depth"], a["offset"], a["colour"], a["id"])
            for a in active
        ]
        when = start + timedelta(seconds=f / fps)
        tasks.append((folder, f, camera_index, seed, width, height, vehicles, condition, when))
        directions.append({a["id"]: ("in" if a["towards"] else "out") for a in active})
        # Move, leaders first: perspective makes near vehicles move faster on screen, and a
        # vehicle keeps its distance to the one ahead in its lane instead of driving through
        # it (the distance along the road goes as 1 / depth).
        ahead: dict[int, float] = {}  # per lane: how far the next vehicle may go
        for a in sorted(active, key=lambda a: -a["depth"] if a["towards"] else a["depth"]):
            before = a["depth"]
            step = a["speed"] * (0.35 + before)
            if a["towards"]:
                a["depth"] = max(before, min(before + step, ahead.get(a["lane"], np.inf)))
                ahead[a["lane"]] = 1 / (1 / a["depth"] + FOLLOW_GAP)
            else:
                a["depth"] = min(before, max(before - step, ahead.get(a["lane"], 0.0)))
                room = 1 / a["depth"] - FOLLOW_GAP
                ahead[a["lane"]] = 1 / room if room > 0 else np.inf
            if (before - line_depth) * (a["depth"] - line_depth) < 0:
                crossings.append((a["id"], "in" if a["towards"] else "out", f))
        active = [a for a in active if MIN_DEPTH - 0.05 <= a["depth"] <= MAX_DEPTH + 0.3]
    rows = []
    drawn = _run_tasks(_draw_sequence_frame, tasks, workers=workers)
    for f, (labels, direction_of) in enumerate(zip(drawn, directions, strict=True)):
        rows += [
            [f, track, PROJECT_CLASSES[cls], direction_of[track], *box]
            for box, cls, track in labels
        ]
    seen = {(row[0], row[1]) for row in rows}  # (frame, track) of every labelled vehicle
    near = max(1, round(VISIBLE_CROSSING_S * fps))
    crossed: dict[str, set[int]] = {"in": set(), "out": set()}
    for track, direction, f in crossings:  # ground truth: crossings a camera can see, made by
        # vehicles labelled shortly before and after (not off-screen, not hidden behind another)
        before = any((f - k, track) in seen for k in range(near))
        if before and any((f + 1 + k, track) in seen for k in range(near)):
            crossed[direction].add(track)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["frame", "track_id", "class_name", "direction", "x1", "y1", "x2", "y2"])
    writer.writerows(rows)
    atomic_write_text(folder / "tracks.csv", buffer.getvalue())
    zoom = _roll_transform(camera)[1]  # the line turns with the view, like the vehicles
    (x1, y1), (x2, y2) = _roll_points(camera, np.array(camera.counting_line(line_depth)), zoom)
    meta = {
        "camera_id": camera.camera_id,
        "camera_name": camera.name,
        "fps": fps,
        "frames": frames,
        "size": [width, height],
        "condition": condition,
        "line": [[round(x1, 1), round(y1, 1)], [round(x2, 1), round(y2, 1)]],
        "counts": {direction: len(ids) for direction, ids in crossed.items()},
        "directions": {
            "in": "towards the camera (downwards in the image)",
            "out": "away from the camera",
        },
    }
    atomic_write_text(folder / "sequence.json", json.dumps(meta, indent=2) + "\n")
    return folder
