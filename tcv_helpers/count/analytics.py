"""Counting traffic (notebook 10): tracking, line and zone counts, congestion, an annotated video.

The application the course builds towards. For each frame of a fixed camera:

1. a **detector** (any callable ``(frame, index) -> sv.Detections``) finds the vehicles: the
   ground-truth boxes of a synthetic sequence, the course's trained YOLO model, or, without
   any model, background subtraction (:mod:`tcv_helpers.count.detectors`);
2. **privacy**: people (class ``person``) and, on request, the lower part of every vehicle box
   (where plates are) are blurred before anything is drawn or stored
   (:func:`tcv_helpers.count.privacy.blur_privacy`);
3. **ByteTrack** (Roboflow's ``trackers`` package, the tracker supervision hands tracking to)
   gives each vehicle an id across frames;
4. **sv.LineZone** counts the tracks that cross a line, per direction, and **sv.PolygonZone**
   tells which vehicles are in a zone; their speed (pixels per second) and the zone's occupancy
   give a **congestion** level (:class:`CongestionRule`);
5. supervision's annotators draw boxes, ids, traces, the line with its counts and the zone, and
   the frames go into a video, written atomically.

Two details make the counts match the truth (tests/test_analytics.py checks within 5%):
ByteTrack names a track only from its second frame, so the runner looks one frame ahead and
gives the first box the new id; and a vehicle hidden for a few frames keeps its last place
(and side of the line) for as long as the tracker remembers it, so a crossing made out of sight
still counts when the vehicle reappears.

The pieces live beside this module: the line and zone (:mod:`~tcv_helpers.count.lines`),
frames in and out (:mod:`~tcv_helpers.count.frames`), the detectors
(:mod:`~tcv_helpers.count.detectors`), privacy (:mod:`~tcv_helpers.count.privacy`) and the
synthetic sequences (:mod:`~tcv_helpers.count.sequences`).

Example::

    seq = read_sequence(data_root / "sequences" / "cam-00-0")
    result = count_traffic(seq.frames_dir, ground_truth_detector(seq.tracks), line=seq.line,
                           fps=seq.fps, video=cfg.workspace.reports / "counting.mp4")
    result.counts, result.per_interval(60)
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import supervision as sv
from matplotlib.figure import Figure

from tcv_helpers.count.detectors import (
    VEHICLE_CLASSES,
    Detector,
    detection_class_names,
    empty_detections,
    project_detections,
)
from tcv_helpers.count.frames import VideoOut, iter_frames, plot_frames, source_info
from tcv_helpers.count.lines import DIRECTIONS, CountingLine
from tcv_helpers.count.privacy import blur_privacy

#: ByteTrack settings used unless the caller overrides them (``trackers.ByteTrackTracker``).
#: ``lost_track_buffer`` is in frames at 30 fps (the tracker rescales it to the real rate).
TRACKER_DEFAULTS: dict[str, Any] = {
    "lost_track_buffer": 30,
    "track_activation_threshold": 0.5,
    "high_conf_det_threshold": 0.5,
    "minimum_consecutive_frames": 2,
    "minimum_iou_threshold": 0.1,
}
#: Seconds over which a vehicle's speed is measured.
SPEED_WINDOW_S = 0.5
#: Congestion levels, from the least to the most.
LEVELS = ("free", "heavy", "congested")


# --------------------------------------------------------------------------------------------
# Congestion
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CongestionRule:
    """How zone occupancy and speed become a level: free, heavy or congested.

    Per time window: *occupancy* is the mean share of the zone's area covered by vehicle boxes;
    *speed* the mean speed (pixels per second) of the tracked vehicles in the zone. A window is

    - **congested** when occupancy is at least ``congested_occupancy`` and the speed is below
      ``slow_share`` of the free-flow speed (a full, slow zone: a queue);
    - **heavy** when occupancy is at least ``heavy_occupancy``, or vehicles are present and slow;
    - **free** otherwise.

    Pixels per second depend on the camera, so the free-flow speed is measured: the 85th
    percentile of the per-frame speeds of the whole run (the traffic engineer's free-flow
    speed), unless ``free_flow_speed`` is given.

    Attributes:
        heavy_occupancy: Share of the zone covered from which traffic is heavy.
        congested_occupancy: Share from which a slow zone is congested.
        slow_share: Slower than this share of the free-flow speed is slow.
        free_flow_speed: Free-flow speed in pixels per second (None: measured).
        window_s: Seconds per window.
    """

    heavy_occupancy: float = 0.15
    congested_occupancy: float = 0.3
    slow_share: float = 0.5
    free_flow_speed: float | None = None
    window_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.heavy_occupancy <= self.congested_occupancy <= 1:
            raise ValueError("need 0 < heavy_occupancy <= congested_occupancy <= 1.")
        if not 0 < self.slow_share < 1 or self.window_s <= 0:
            raise ValueError("slow_share must be in (0, 1) and window_s positive.")
        if self.free_flow_speed is not None and self.free_flow_speed <= 0:
            raise ValueError("free_flow_speed must be positive.")

    def level(self, occupancy: float, speed: float, free_flow: float) -> str:
        """The level of one window (``speed`` is NaN when no vehicle was in the zone)."""
        slow = bool(np.isfinite(speed) and speed < self.slow_share * free_flow)
        if occupancy >= self.congested_occupancy and slow:
            return "congested"
        if occupancy >= self.heavy_occupancy or slow:
            return "heavy"
        return "free"


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------


@dataclass
class CountResult:
    """What :func:`count_traffic` measured.

    Attributes:
        counts: Crossings per direction (``{"in": n, "out": m}``).
        crossings: One row per crossing: frame, time_s, track_id, class_name, direction.
        timeline: One row per processed frame: frame, time_s, vehicles (tracked), in_zone,
            occupancy (share of the zone covered), speed (mean px/s of the vehicles in the zone).
        fps: Frames per second of the source.
        frames: Frames processed.
        seconds: Time covered by the source (frames read x stride / fps).
        size: ``(width, height)``.
        line: The counting line.
        zone: The zone polygon (None: no zone).
        video: The annotated video (None: none written).
        samples: A few annotated frames (RGB), privacy blur applied: ``(frame index, image)``.
        elapsed_s: Processing time in seconds.
    """

    counts: dict[str, int]
    crossings: pd.DataFrame
    timeline: pd.DataFrame
    fps: float
    frames: int
    seconds: float
    size: tuple[int, int]
    line: CountingLine
    zone: np.ndarray | None = None
    video: Path | None = None
    samples: list[tuple[int, np.ndarray]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def per_interval(self, seconds: float = 60.0) -> pd.DataFrame:
        """Crossings per time interval and direction (every interval, empty ones too).

        Args:
            seconds: Interval length (60: counts per minute).

        Returns:
            A frame indexed by the interval's start in seconds, with columns ``in``, ``out``,
            ``total`` and ``per_minute`` (the total as a rate per minute).
        """
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}.")
        bins = max(1, math.ceil(self.seconds / seconds - 1e-9))
        index = pd.Index([round(b * seconds, 3) for b in range(bins)], name="start_s")
        which = np.minimum((self.crossings["time_s"].to_numpy() // seconds).astype(int), bins - 1)
        table = pd.DataFrame(0, index=index, columns=list(DIRECTIONS))
        for direction in DIRECTIONS:
            picked = which[self.crossings["direction"].to_numpy() == direction]
            table[direction] = np.bincount(picked, minlength=bins)[:bins]
        table["total"] = table["in"] + table["out"]
        table["per_minute"] = table["total"] * 60.0 / seconds
        return table

    def congestion(self, rule: CongestionRule | None = None) -> pd.DataFrame:
        """Occupancy, speed and congestion level per window of ``rule.window_s`` seconds.

        Raises:
            ValueError: If the run had no zone.
        """
        rule = rule or CongestionRule()
        if self.zone is None:
            raise ValueError("Congestion needs a zone: pass zone= to count_traffic.")
        frame = self.timeline.assign(window=(self.timeline["time_s"] // rule.window_s))
        speeds = self.timeline["speed"].to_numpy(dtype=float)
        free = rule.free_flow_speed or (
            float(np.nanpercentile(speeds, 85)) if np.isfinite(speeds).any() else math.inf
        )
        table = frame.groupby("window").agg(
            vehicles=("in_zone", "mean"), occupancy=("occupancy", "mean"), speed=("speed", "mean")
        )
        table.index = pd.Index((table.index * rule.window_s).round(3), name="start_s")
        table["level"] = [
            rule.level(o, s, free) for o, s in zip(table["occupancy"], table["speed"], strict=True)
        ]
        table.attrs["free_flow_speed"] = free
        return table

    def plot_counts(self, seconds: float = 60.0) -> Figure:
        """Bars of crossings per interval and direction (see :func:`plot_counts`)."""
        return plot_counts(self.per_interval(seconds), seconds=seconds)

    def plot_congestion(self, rule: CongestionRule | None = None) -> Figure:
        """Occupancy and speed over time with the levels (see :func:`plot_congestion`)."""
        rule = rule or CongestionRule()
        return plot_congestion(self.congestion(rule), rule)

    def plot_samples(self, cols: int = 2) -> Figure:
        """The annotated sample frames in a grid."""
        return plot_frames(
            [img for _, img in self.samples],
            titles=[f"frame {i}" for i, _ in self.samples],
            cols=cols,
        )


def count_error(counted: Mapping[str, int], truth: Mapping[str, int]) -> dict[str, float]:
    """Counting error per direction: signed error, absolute percentage error, and their mean.

    Returns:
        ``count_error_in``, ``count_error_out`` (counted - true), ``count_ape_in``,
        ``count_ape_out`` (|error| / true, in %) and ``count_mape`` (their mean, in %).

    Raises:
        ValueError: If a direction is missing or a true count is not positive.
    """
    out: dict[str, float] = {}
    for d in DIRECTIONS:
        if d not in counted or d not in truth:
            raise ValueError(f"Both counts need the direction {d!r}.")
        if truth[d] <= 0:
            raise ValueError(f"The true {d} count must be positive to give a percentage.")
        out[f"count_error_{d}"] = int(counted[d]) - int(truth[d])
        out[f"count_ape_{d}"] = 100.0 * abs(int(counted[d]) - int(truth[d])) / int(truth[d])
    out["count_mape"] = float(np.mean([out[f"count_ape_{d}"] for d in DIRECTIONS]))
    return out


class _Annotator:
    """supervision's annotators for one run: boxes, ids, traces, the line, the zone, a banner."""

    def __init__(self, fps: float, size: tuple[int, int]) -> None:
        scale, by_track = max(max(size) / 640, 0.6), sv.ColorLookup.TRACK
        self.box = sv.BoxAnnotator(thickness=max(1, round(2 * scale)), color_lookup=by_track)
        self.label = sv.LabelAnnotator(
            text_scale=0.4 * scale, text_padding=2, color_lookup=by_track
        )
        self.trace = sv.TraceAnnotator(
            trace_length=max(2, int(fps * 2)),
            color_lookup=by_track,
            position=sv.Position.BOTTOM_CENTER,
        )
        self.line = sv.LineZoneAnnotator(
            thickness=max(1, round(2 * scale)),
            text_scale=0.45 * scale,
            text_thickness=1,
            text_padding=3,
        )
        self.scale, self.size = scale, size

    def __call__(
        self,
        frame: np.ndarray,
        tracked: sv.Detections,
        line_zone: sv.LineZone,
        zone: np.ndarray | None,
        level: str,
    ) -> np.ndarray:
        out = frame.copy()
        if zone is not None:
            out = sv.draw_polygon(out, zone, color=sv.Color.YELLOW, thickness=1)
        if len(tracked):
            names = detection_class_names(tracked)
            labels = [f"#{t} {n}" for t, n in zip(tracked.tracker_id, names, strict=True)]
            out = self.trace.annotate(out, tracked)
            out = self.box.annotate(out, tracked)
            out = self.label.annotate(out, tracked, labels=labels)
        out = self.line.annotate(out, line_counter=line_zone)
        text = f"in {line_zone.in_count}  out {line_zone.out_count}  traffic: {level}"
        anchor = sv.Point(self.size[0] // 2, int(self.size[1] - 14 * self.scale))
        return sv.draw_text(
            out,
            text,
            anchor,
            text_color=sv.Color.WHITE,
            text_scale=0.5 * self.scale,
            background_color=sv.Color.BLACK,
            text_padding=4,
        )


def _merge(parts: list[sv.Detections]) -> sv.Detections:
    parts = [p for p in parts if len(p)]
    return sv.Detections.merge(parts) if parts else _with_ids(empty_detections(), np.zeros(0, int))


def _with_ids(detections: sv.Detections, ids: np.ndarray) -> sv.Detections:
    detections.tracker_id = np.asarray(ids, dtype=int)
    return detections


def count_traffic(
    source: str | os.PathLike,
    detector: Detector,
    *,
    line: CountingLine,
    zone: np.ndarray | None = None,
    fps: float | None = None,
    video: str | os.PathLike | None = None,
    people: bool = True,
    plates: bool = False,
    stride: int = 1,
    max_frames: int | None = None,
    tracker: Mapping[str, Any] | None = None,
    rule: CongestionRule | None = None,
    samples: int = 4,
    crossing_frames: int = 1,
) -> CountResult:
    """Detects, tracks and counts the vehicles of a fixed camera, and writes an annotated video.

    Args:
        source: A folder of frames or a video file.
        detector: ``(BGR frame, frame index) -> sv.Detections`` with project class ids
            (see :mod:`tcv_helpers.count.detectors`).
        line: The counting line.
        zone: A polygon (``(N, 2)`` pixels) for occupancy and congestion (None: none).
        fps: Frames per second (required for a folder; a video's own rate otherwise).
        video: Where to write the annotated video (``.mp4`` with mp4v or ``.avi`` with MJPG);
            None writes none. The file appears only when complete.
        people: Blur people before anything is drawn or stored.
        plates: Also blur the lower part of vehicle boxes (see
            :func:`tcv_helpers.count.privacy.blur_privacy`).
        stride: Use every ``stride``-th frame.
        max_frames: Stop after this many frames.
        tracker: ByteTrack settings that replace :data:`TRACKER_DEFAULTS`.
        rule: The congestion rule of the video's banner, which shows each frame's level against
            the free-flow speed seen so far (default :class:`CongestionRule`).
        samples: Annotated frames to keep in memory for display (evenly spread).
        crossing_frames: Frames a vehicle must be seen beyond the line before it counts.

    Returns:
        The counts, crossings, a timeline of occupancy and speed, and the video's path.

    Raises:
        FileNotFoundError: If the source does not exist.
        ValueError: On an empty or unreadable source, a missing or non-positive fps, an unknown
            tracker setting, or a video name that is not ``.mp4`` or ``.avi``.
        TypeError: If the detector returns something other than ``sv.Detections``.
    """
    from trackers import ByteTrackTracker

    info = source_info(source)
    fps = fps if fps is not None else info.fps
    if fps is None or not fps > 0:
        raise ValueError(f"{info.path}: give fps= (frames per second): a folder does not say.")
    settings = {**TRACKER_DEFAULTS, **(tracker or {})}
    unknown = sorted(set(settings) - set(TRACKER_DEFAULTS))
    if unknown:
        raise ValueError(
            f"Unknown tracker setting(s): {', '.join(unknown)}; "
            f"known: {', '.join(TRACKER_DEFAULTS)}."
        )
    rule = rule or CongestionRule()
    step_fps = fps / stride
    byte_track = ByteTrackTracker(frame_rate=step_fps, **settings)
    line_zone = line.line_zone(crossing_frames=crossing_frames)
    polygon = None if zone is None else np.asarray(zone, dtype=int).reshape(-1, 2)
    zone_counter = (
        None
        if polygon is None
        else sv.PolygonZone(polygon, triggering_anchors=(sv.Position.BOTTOM_CENTER,))
    )
    zone_mask = None if polygon is None else sv.polygon_to_mask(polygon, info.size).astype(bool)
    hold = max(1, round(settings["lost_track_buffer"] / 30 * step_fps))
    expected = (
        -(-info.frames // stride)
        if max_frames is None
        else min(max_frames, -(-info.frames // stride))
    )
    keep = set(np.linspace(0, max(expected - 1, 0), num=max(samples, 0), dtype=int).tolist())
    annotate = _Annotator(step_fps, info.size) if (video or samples) else None
    out = VideoOut(Path(video), step_fps, info.size) if video else None

    last: dict[int, tuple[int, np.ndarray, str]] = {}  # track id -> (step, box, class) last seen
    trail: dict[int, deque] = {}  # track id -> recent (time, x, y) of its anchor
    known: set[int] = set()
    crossings: list[tuple] = []
    timeline: list[tuple] = []
    kept: list[tuple[int, np.ndarray]] = []
    final: list[tuple[int, int, np.ndarray]] = []  # the last annotated frame (step, index, RGB)
    speed_free = rule.free_flow_speed or math.inf
    speeds_seen: list[float] = []
    started = time.perf_counter()

    def process(
        step: int, index: int, frame: np.ndarray, raw: sv.Detections, tracked: sv.Detections
    ) -> None:
        t = index / fps
        names = detection_class_names(tracked)
        for box, tid, name in zip(tracked.xyxy, tracked.tracker_id, names, strict=True):
            last[int(tid)] = (step, box, str(name))
        # Tracks the tracker still remembers but did not see keep their last box, so that
        # their side of the line is not forgotten while they are hidden.
        for tid in [tid for tid, (s, _, _) in last.items() if step - s > hold]:
            del last[tid]  # forgotten by the tracker too
            trail.pop(tid, None)
        held = [(tid, box, name) for tid, (s, box, name) in last.items() if s < step]
        everyone = _merge(
            [
                _with_ids(
                    project_detections(tracked.xyxy, names, np.ones(len(tracked))),
                    tracked.tracker_id,
                ),
                _with_ids(
                    project_detections(
                        np.array([h[1] for h in held]), [h[2] for h in held], np.ones(len(held))
                    ),
                    [h[0] for h in held],
                ),
            ]
        )
        went_in, went_out = line_zone.trigger(everyone)
        everyone_names = detection_class_names(everyone)
        for k in np.flatnonzero(went_in | went_out):
            crossings.append(
                (
                    index,
                    t,
                    int(everyone.tracker_id[k]),
                    everyone_names[k],
                    "in" if went_in[k] else "out",
                )
            )
        anchors = tracked.get_anchors_coordinates(sv.Position.BOTTOM_CENTER)
        speed = np.full(len(tracked), np.nan)
        for k, (tid, (x, y)) in enumerate(zip(tracked.tracker_id, anchors, strict=True)):
            path = trail.setdefault(int(tid), deque())
            path.append((t, float(x), float(y)))
            while path and t - path[0][0] > SPEED_WINDOW_S:
                path.popleft()
            if len(path) > 1 and path[-1][0] > path[0][0]:
                speed[k] = math.dist(path[-1][1:], path[0][1:]) / (path[-1][0] - path[0][0])
        in_zone, occupancy, zone_speed = 0, 0.0, math.nan
        if zone_counter is not None and len(tracked):
            inside = zone_counter.trigger(tracked)
            in_zone = int(inside.sum())
            covered = np.zeros(info.size[::-1], dtype=bool)
            for x1, y1, x2, y2 in tracked.xyxy[inside].astype(int):
                covered[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
            occupancy = float((covered & zone_mask).sum() / max(zone_mask.sum(), 1))
            if np.isfinite(speed[inside]).any():
                zone_speed = float(np.nanmean(speed[inside]))
                speeds_seen.append(zone_speed)
        timeline.append((index, t, len(tracked), in_zone, occupancy, zone_speed))
        if annotate is None or (out is None and step not in keep):
            return
        free = (
            speed_free
            if math.isfinite(speed_free) or not speeds_seen
            else float(np.percentile(speeds_seen, 85))
        )
        level = rule.level(occupancy, zone_speed, free)
        picture = annotate(
            blur_privacy(frame, raw, people=people, plates=plates),
            tracked,
            line_zone,
            polygon,
            level,
        )
        if out is not None:
            out.write(picture)
        if step in keep:
            kept.append((index, cv2.cvtColor(picture, cv2.COLOR_BGR2RGB)))
        else:
            final[:] = [(step, index, picture)]

    pending = None
    step = -1
    try:
        for step, (index, frame) in enumerate(
            iter_frames(source, stride=stride, max_frames=max_frames)
        ):
            if (frame.shape[1], frame.shape[0]) != info.size:
                raise ValueError(
                    f"{info.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                    f"the first was {info.size[0]}x{info.size[1]}."
                )
            raw = detector(frame, index)
            if not isinstance(raw, sv.Detections):
                raise TypeError(
                    f"The detector returned {type(raw).__name__} for frame {index} of "
                    f"{info.path}; it must return sv.Detections."
                )
            names = detection_class_names(raw)
            vehicles = raw[np.isin(names, VEHICLE_CLASSES)] if len(raw) else raw
            tracked = byte_track.update(vehicles)
            ids = tracked.tracker_id if tracked.tracker_id is not None else np.zeros(0, int)
            confirmed, unconfirmed = tracked[ids >= 0], tracked[ids < 0]
            if pending is not None:
                # A new id's first box is in the frame before: ByteTrack names a track only
                # from its second frame, so give that first box the id (one frame of delay).
                p_step, p_index, p_frame, p_raw, p_confirmed, p_unconfirmed = pending
                births = []
                for k, tid in enumerate(confirmed.tracker_id):
                    if int(tid) in known or not len(p_unconfirmed):
                        continue
                    overlap = sv.box_iou_batch(confirmed.xyxy[k : k + 1], p_unconfirmed.xyxy)[0]
                    if overlap.max() > 0:
                        births.append(
                            _with_ids(
                                p_unconfirmed[int(overlap.argmax()) : int(overlap.argmax()) + 1],
                                [tid],
                            )
                        )
                process(p_step, p_index, p_frame, p_raw, _merge([p_confirmed, *births]))
            known.update(int(t) for t in confirmed.tracker_id)
            pending = (step, index, frame, raw, confirmed, unconfirmed)
        if pending is not None:
            process(*pending[:4], pending[4])
    except BaseException:
        if out is not None:
            out.close(keep=False)
        raise
    if out is not None:
        out.close(keep=True)
    if final and len(kept) < len(keep) and final[0][0] == step:
        # the video held fewer frames than its container said: show its last frame instead
        kept.append((final[0][1], cv2.cvtColor(final[0][2], cv2.COLOR_BGR2RGB)))
    frames = step + 1
    crossing_table = pd.DataFrame(
        crossings, columns=["frame", "time_s", "track_id", "class_name", "direction"]
    )
    return CountResult(
        counts={"in": line_zone.in_count, "out": line_zone.out_count},
        crossings=crossing_table,
        timeline=pd.DataFrame(
            timeline, columns=["frame", "time_s", "vehicles", "in_zone", "occupancy", "speed"]
        ),
        fps=fps,
        frames=frames,
        seconds=frames * stride / fps,
        size=info.size,
        line=line,
        zone=polygon,
        video=Path(video) if video else None,
        samples=kept,
        elapsed_s=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------
# Plots (each returns a matplotlib Figure)
# --------------------------------------------------------------------------------------------


def plot_counts(table: pd.DataFrame, *, seconds: float = 60.0) -> Figure:
    """Stacked bars of "in" and "out" crossings per interval (a :meth:`CountResult.per_interval` table)."""
    fig = Figure(figsize=(9, 3.5))
    ax = fig.subplots()
    starts = table.index.to_numpy(dtype=float)
    width = seconds * 0.8
    ax.bar(starts, table["in"], width=width, align="edge", label="in (towards)", color="#4363d8")
    ax.bar(
        starts,
        table["out"],
        width=width,
        align="edge",
        bottom=table["in"],
        label="out (away)",
        color="#f58231",
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"vehicles per {seconds:g} s")
    ax.set_title(
        f"Vehicles crossing the line per {seconds:g} s ({int(table['total'].sum())} in all)"
    )
    ax.legend()
    fig.tight_layout()
    return fig


def plot_congestion(table: pd.DataFrame, rule: CongestionRule) -> Figure:
    """Zone occupancy and speed per window, thresholds dashed, background coloured by level."""
    fig = Figure(figsize=(9, 4.5))
    occ_ax, speed_ax = fig.subplots(2, 1, sharex=True)
    starts = table.index.to_numpy(dtype=float)
    colours = {"free": "#d9f2d9", "heavy": "#fff2b3", "congested": "#f7c6c6"}
    for ax in (occ_ax, speed_ax):
        for start, level in zip(starts, table["level"], strict=True):
            ax.axvspan(start, start + rule.window_s, color=colours[level], lw=0)
    edges = np.append(starts, starts[-1] + rule.window_s) if len(starts) else starts

    def steps(values: pd.Series) -> np.ndarray:  # the last window drawn to its end
        return np.append(values.to_numpy(dtype=float), values.to_numpy(dtype=float)[-1:])

    occ_ax.step(edges, steps(table["occupancy"]), where="post", color="black")
    top = table["occupancy"].max() if len(table) else 0.0
    occ_ax.set_ylim(0, 1.15 * max(rule.congested_occupancy, top))
    occ_ax.axhline(rule.heavy_occupancy, ls="--", color="#b59b00", label="heavy")
    occ_ax.axhline(rule.congested_occupancy, ls="--", color="#c0392b", label="congested")
    occ_ax.set_ylabel("zone occupancy")
    occ_ax.legend(loc="upper right", fontsize=8)
    speed_ax.step(edges, steps(table["speed"]), where="post", color="black")
    speed_ax.set_ylim(bottom=0)
    free = table.attrs.get("free_flow_speed", math.nan)
    if math.isfinite(free):
        speed_ax.axhline(rule.slow_share * free, ls="--", color="#c0392b", label="slow")
        speed_ax.legend(loc="upper right", fontsize=8)
    speed_ax.set_ylabel("speed (px/s)")
    speed_ax.set_xlabel("time (s)")
    counts = table["level"].value_counts()
    occ_ax.set_title(
        "Congestion per window: " + ", ".join(f"{level} {counts.get(level, 0)}" for level in LEVELS)
    )
    fig.tight_layout()
    return fig
