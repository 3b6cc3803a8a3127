"""Where to count on a camera: the counting line, a zone around it, the sample videos' set-ups.

A :class:`CountingLine` knows which way "in" traffic crosses it and gives supervision's
``sv.LineZone`` (the counter) and a band around it (a zone for occupancy). A :class:`Scene`
holds a real camera's line, zone and road; :data:`SAMPLE_SCENES` those of the course's sample
videos. :func:`draw_layout` shows a line and zone on a frame before anything is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import supervision as sv

#: The two directions of a counting line: "in" is traffic crossing towards ``CountingLine.inward``.
DIRECTIONS = ("in", "out")
#: Image directions a counting line's "in" traffic can cross towards.
INWARD = {"down": (0.0, 1.0), "up": (0.0, -1.0), "right": (1.0, 0.0), "left": (-1.0, 0.0)}


@dataclass(frozen=True)
class CountingLine:
    """A counting line in pixels and which way "in" traffic crosses it.

    Attributes:
        start: ``(x, y)`` of one end.
        end: ``(x, y)`` of the other end.
        inward: Image direction of "in" traffic: ``down`` (towards a camera that looks along
            the road), ``up``, ``left`` or ``right``.
    """

    start: tuple[float, float]
    end: tuple[float, float]
    inward: str = "down"

    def __post_init__(self) -> None:
        if self.inward not in INWARD:
            raise ValueError(f"inward must be one of {', '.join(INWARD)}, got {self.inward!r}.")
        points = np.array([self.start, self.end], dtype=float)
        if points.shape != (2, 2) or not np.isfinite(points).all():
            raise ValueError(f"A counting line needs two finite (x, y) points, got {points!r}.")
        if np.hypot(*(points[1] - points[0])) < 1:
            raise ValueError(f"The counting line {self.start} -> {self.end} has no length.")
        dx, dy = points[1] - points[0]
        ix, iy = INWARD[self.inward]
        if abs(dx * iy - dy * ix) < 1e-6 * np.hypot(dx, dy):
            raise ValueError(
                f"A line along the {self.inward} direction cannot be crossed that way."
            )

    def line_zone(self, *, crossing_frames: int = 1) -> sv.LineZone:
        """An ``sv.LineZone`` whose ``in_count`` is this line's "in" traffic.

        Args:
            crossing_frames: Frames a vehicle must be seen on the other side before it counts
                (more than 1 ignores boxes that jitter across the line).

        supervision counts "in" when an anchor moves to the side where the cross product of the
        line vector and the point is negative; the ends are ordered so that side is ``inward``.
        """
        (x1, y1), (x2, y2) = self.start, self.end
        ix, iy = INWARD[self.inward]
        if (x2 - x1) * iy - (y2 - y1) * ix > 0:
            (x1, y1), (x2, y2) = (x2, y2), (x1, y1)
        return sv.LineZone(
            start=sv.Point(x1, y1),
            end=sv.Point(x2, y2),
            triggering_anchors=(sv.Position.BOTTOM_CENTER,),
            minimum_crossing_threshold=crossing_frames,
        )

    def band(self, *, before: float, after: float) -> np.ndarray:
        """A zone around the line: the line moved ``before`` pixels against the "in" traffic
        and ``after`` pixels with it, as an ``(4, 2)`` int polygon for ``sv.PolygonZone``."""
        a, b = np.array(self.start, float), np.array(self.end, float)
        normal = np.array([-(b - a)[1], (b - a)[0]]) / np.hypot(*(b - a))
        if normal @ np.array(INWARD[self.inward]) < 0:
            normal = -normal
        return np.round(
            [a - before * normal, b - before * normal, b + after * normal, a + after * normal]
        ).astype(int)


@dataclass(frozen=True)
class Scene:
    """Where to count on a real camera: its line, zone and where the road is.

    Attributes:
        line: The counting line.
        zone: The occupancy zone.
        roi: The road (for the motion detector: trees in the wind are not traffic).
        stride: Frames to step (a 60 fps video needs no more than 30).
        crossing_frames: Frames beyond the line before a crossing counts.
        tracker: ByteTrack settings for this camera's detections (see :data:`tcv_helpers.count.analytics.TRACKER_DEFAULTS`).
        note: What the camera shows.
    """

    line: CountingLine
    zone: np.ndarray
    roi: np.ndarray
    stride: int = 1
    crossing_frames: int = 2
    tracker: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""


#: Counting set-ups of the real sample videos (``$TCV_SAMPLE_DATA/videos``), in their pixels.
SAMPLE_SCENES: dict[str, Scene] = {
    "highway-cctv-b.avi": Scene(
        line=CountingLine((60, 130), (268, 130), inward="down"),
        zone=np.array([(60, 80), (268, 80), (268, 180), (60, 180)]),
        roi=np.array([(180, 0), (276, 0), (262, 240), (0, 240), (0, 200)]),
        stride=2,
        crossing_frames=2,
        # motion blobs have a low confidence (their solidity): let them start tracks
        tracker={"track_activation_threshold": 0.3, "high_conf_det_threshold": 0.3},
        note="a fixed camera above one carriageway; all traffic drives towards it (in)",
    ),
}


def draw_layout(
    frame: np.ndarray, line: CountingLine, zone: np.ndarray | None = None
) -> np.ndarray:
    """A copy of a BGR frame with the counting line (arrow: "in" side) and the zone drawn."""
    out = frame.copy()
    if zone is not None:
        out = sv.draw_polygon(out, np.asarray(zone, dtype=int), color=sv.Color.YELLOW, thickness=2)
    start, end = (tuple(round(v) for v in p) for p in (line.start, line.end))
    out = sv.draw_line(out, sv.Point(*start), sv.Point(*end), color=sv.Color.RED, thickness=2)
    middle = np.mean([start, end], axis=0)
    tip = middle + 30 * np.array(INWARD[line.inward])
    cv2.arrowedLine(
        out,
        tuple(int(v) for v in middle),
        tuple(int(v) for v in tip),
        (0, 0, 255),
        2,
        tipLength=0.35,
    )
    cv2.putText(
        out, "in", tuple(int(v) + 6 for v in tip), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2
    )
    return out
