"""Monitoring (notebook 09): is what the cameras send still like what the model was trained on?

A **reference profile** describes training frames by a few numbers each: brightness, contrast,
sharpness, colour saturation and how far the frame is from the camera's usual scene (its
median thumbnail: a moved or blocked camera is far from it). A **window** of production frames
is described the same way and compared, feature by feature, with two tests:

* the **population stability index** (PSI) over ten quantile bins of the reference: below 0.1
  nothing changed, 0.1-0.25 a moderate shift, above 0.25 a large one;
* the two-sample **Kolmogorov-Smirnov** test (scipy), whose p-value says how surprising the
  window would be if it came from the reference distribution.

A feature drifts when both agree (PSI above its threshold *and* KS p-value below alpha): PSI
alone over-reacts on small windows, KS alone on large ones.

Example::

    reference = tcv.monitor.profile_frames(train_paths)
    report = tcv.monitor.compare(reference, tcv.monitor.profile_frames(window_paths))
    report.drifted, report.table()
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: The per-frame features of a profile.
FEATURES: tuple[str, ...] = ("brightness", "contrast", "sharpness", "saturation", "scene_distance")
#: PSI above this is a shift worth acting on (the usual rule of thumb is 0.25 for "large").
PSI_THRESHOLD = 0.25
#: KS p-value below this rejects "same distribution".
KS_ALPHA = 0.01
#: Thumbnail size (width, height) for the scene distance.
THUMBNAIL = (32, 18)
PSI_BINS = 10
_EPSILON = 1e-4


def _read(image: str | os.PathLike | np.ndarray) -> np.ndarray:
    import cv2

    if isinstance(image, np.ndarray):
        return image
    frame = cv2.imread(str(image))
    if frame is None:
        raise FileNotFoundError(f"{image} is missing or not a readable image.")
    return frame


def _thumbnail(grey: np.ndarray) -> np.ndarray:
    import cv2

    small = cv2.resize(grey, THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean()) / (small.std() + 1e-6)


def frame_features(frame: np.ndarray, scene: np.ndarray | None = None) -> dict[str, float]:
    """The features of one BGR frame.

    Args:
        frame: A BGR uint8 image.
        scene: The camera's usual scene (:func:`scene_of`); None gives ``scene_distance`` NaN.

    Returns:
        ``brightness`` (mean luma 0-255), ``contrast`` (luma standard deviation), ``sharpness``
        (variance of the Laplacian: blur and fog lower it), ``saturation`` (mean HSV saturation
        0-255: night and fog wash colour out) and ``scene_distance`` (mean absolute difference
        of the normalised thumbnail from the scene: 0 same view, about 1 a different view).
    """
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    distance = float("nan") if scene is None else float(np.abs(_thumbnail(grey) - scene).mean())
    return {
        "brightness": float(grey.mean()),
        "contrast": float(grey.std()),
        "sharpness": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        "saturation": float(hsv[..., 1].mean()),
        "scene_distance": distance,
    }


def scene_of(frames: Sequence[str | os.PathLike | np.ndarray]) -> np.ndarray:
    """A camera's usual scene: the median normalised thumbnail of its frames (traffic averages
    out, the road, horizon and buildings stay)."""
    import cv2

    if not frames:
        raise ValueError("A scene needs at least one frame of the camera.")
    thumbs = [_thumbnail(cv2.cvtColor(_read(f), cv2.COLOR_BGR2GRAY)) for f in frames]
    return np.median(np.stack(thumbs), axis=0)


def profile_frames(
    frames: Sequence[str | os.PathLike | np.ndarray], *, scene: np.ndarray | None = None
) -> pd.DataFrame:
    """The features of every frame (one row each), the reference or a window.

    Args:
        frames: Image paths or BGR arrays.
        scene: The camera's scene for ``scene_distance`` (see :func:`scene_of`).

    Returns:
        A table with the columns of :data:`FEATURES`.
    """
    import pandas as pd

    return pd.DataFrame([frame_features(_read(f), scene) for f in frames], columns=FEATURES)


def psi(reference: np.ndarray, window: np.ndarray, *, bins: int = PSI_BINS) -> float:
    """Population stability index of ``window`` against ``reference``.

    Bins are the reference's quantiles (so each holds about the same share of it); the index
    sums ``(w - r) * ln(w / r)`` over bins, with shares floored at a small epsilon.

    Args:
        reference: Reference values.
        window: Values to compare.
        bins: Number of quantile bins.

    Returns:
        The PSI (0 for identical distributions; larger is more different).

    Raises:
        ValueError: If either sample is empty after dropping NaN.
    """
    ref = np.asarray(reference, dtype=float)
    win = np.asarray(window, dtype=float)
    ref, win = ref[np.isfinite(ref)], win[np.isfinite(win)]
    if not len(ref) or not len(win):
        raise ValueError("PSI needs values in both the reference and the window.")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    w = np.bincount(np.searchsorted(edges, win, side="right"), minlength=len(edges) + 1)
    r = np.maximum(r / r.sum(), _EPSILON)
    w = np.maximum(w / w.sum(), _EPSILON)
    return float(np.sum((w - r) * np.log(w / r)))


@dataclass
class DriftReport:
    """A window compared with the reference.

    Attributes:
        rows: Per feature: PSI, KS statistic and p-value, reference and window medians, drifted.
        psi_threshold: The PSI threshold used.
        ks_alpha: The KS significance level used.
        window_size: Frames in the window.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    psi_threshold: float = PSI_THRESHOLD
    ks_alpha: float = KS_ALPHA
    window_size: int = 0

    @property
    def drifted(self) -> bool:
        """True when any feature drifted."""
        return any(r["drifted"] for r in self.rows)

    @property
    def drifted_features(self) -> list[str]:
        """The features that drifted."""
        return [r["feature"] for r in self.rows if r["drifted"]]

    def table(self) -> pd.DataFrame:
        """The rows as a table indexed by feature."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("feature")


def compare(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    *,
    features: Sequence[str] = FEATURES,
    psi_threshold: float = PSI_THRESHOLD,
    ks_alpha: float = KS_ALPHA,
) -> DriftReport:
    """Compares a window of frames with the reference profile, feature by feature.

    Args:
        reference: :func:`profile_frames` of the training frames.
        window: :func:`profile_frames` of recent production frames.
        features: Which columns to test (features that are all NaN in either are skipped).
        psi_threshold: PSI above this (and KS significant) is drift.
        ks_alpha: KS p-value below this (and PSI large) is drift.

    Returns:
        The report.

    Raises:
        ValueError: If the window is empty or a feature column is missing.
    """
    from scipy.stats import ks_2samp

    if not len(window):
        raise ValueError("The window holds no frames.")
    missing = [f for f in features if f not in reference or f not in window]
    if missing:
        raise ValueError(f"Feature columns missing: {', '.join(missing)}.")
    report = DriftReport(psi_threshold=psi_threshold, ks_alpha=ks_alpha, window_size=len(window))
    for name in features:
        ref, win = reference[name].dropna().to_numpy(), window[name].dropna().to_numpy()
        if not len(ref) or not len(win):
            continue
        index = psi(ref, win)
        test = ks_2samp(ref, win)
        report.rows.append(
            {
                "feature": name,
                "psi": round(index, 4),
                "ks_statistic": round(float(test.statistic), 4),
                "ks_pvalue": float(test.pvalue),
                "reference_median": float(np.median(ref)),
                "window_median": float(np.median(win)),
                "drifted": bool(index > psi_threshold and test.pvalue < ks_alpha),
            }
        )
    return report


def synthetic_window(
    *,
    camera_index: int,
    frames: int,
    condition: str = "day",
    moved: bool = False,
    seed: int = 0,
) -> list[np.ndarray]:
    """Frames of one synthetic camera, in a condition, optionally after the camera was moved.

    Used to demonstrate and test drift: night, rain or fog against a day reference, and a camera
    that was knocked (its horizon, vanishing point and roll change).

    Args:
        camera_index: Camera of the course's synthetic set (dataset seed 0).
        frames: Number of frames.
        condition: ``day``, ``night``, ``rain`` or ``fog``.
        moved: Shift the view: horizon and vanishing point moved, camera rolled.
        seed: Seed of the traffic in the frames.

    Returns:
        BGR uint8 frames.
    """
    from tcv_helpers.synth import draw_frame, make_camera, random_vehicles

    camera = make_camera(camera_index, seed=0)
    if moved:
        camera = replace(
            camera,
            horizon=camera.horizon + 0.12 * camera.height,
            vanish_x=camera.vanish_x - 0.2 * camera.width,
            roll=camera.roll + 6.0,
        )
    out = []
    for i in range(frames):
        rng = np.random.default_rng([seed, camera_index, i])
        frame = draw_frame(
            camera, random_vehicles(camera, rng, int(rng.integers(3, 9))), condition=condition,
            noise_seed=seed * 100_000 + i,
        )  # fmt: skip
        out.append(np.asarray(frame.image.convert("RGB"))[..., ::-1].copy())
    return out
