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

The model adds what the pixels alone cannot say: per frame, how many **boxes** it finds, their
median **size**, their mean **confidence** (:func:`detection_features`), and how far the frame's
**embedding** (the detector's own pooled backbone features, Ultralytics' ``embed``) is from the
training frames' (:class:`EmbeddingSpace`: a Mahalanobis distance in their principal
components, cross-fitted so the reference is not judged against itself). :func:`timeline`
slides a window over a stream of frames and :meth:`Timeline.plot` shows the drift over time.

Example::

    from tcv_helpers.monitor.drift import compare, profile_frames

    reference = profile_frames(train_paths)
    report = compare(reference, profile_frames(window_paths))
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
    import supervision as sv
    from matplotlib.figure import Figure

#: The per-frame features of a profile.
FEATURES: tuple[str, ...] = ("brightness", "contrast", "sharpness", "saturation", "scene_distance")
#: Per-frame features that need the model (:func:`profile_with_model`).
MODEL_FEATURES: tuple[str, ...] = ("box_count", "box_area", "confidence", "embedding_distance")
#: Principal components kept by :class:`EmbeddingSpace`.
EMBEDDING_DIMS = 16
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
    from tcv_helpers.data.synth import draw_frame, make_camera, random_vehicles

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


# --------------------------------------------------------------------------------------------
# What the model sees: boxes, confidence, embeddings
# --------------------------------------------------------------------------------------------


def detection_features(
    detections: Sequence[sv.Detections], sizes: Sequence[tuple[int, int]]
) -> pd.DataFrame:
    """Per frame: how many boxes, their median size and mean confidence.

    Args:
        detections: The model's detections per frame (at the service's confidence threshold).
        sizes: ``(width, height)`` of every frame.

    Returns:
        ``box_count``, ``box_area`` (median box area as a share of the frame; NaN without boxes)
        and ``confidence`` (mean confidence; NaN without boxes).

    Raises:
        ValueError: If the two sequences differ in length.
    """
    import pandas as pd

    if len(detections) != len(sizes):
        raise ValueError(f"{len(detections)} detections for {len(sizes)} frame sizes.")
    rows = []
    for found, (width, height) in zip(detections, sizes, strict=True):
        boxes = np.asarray(found.xyxy, dtype=float).reshape(-1, 4)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / (width * height)
        scores = found.confidence if found.confidence is not None else np.ones(len(boxes))
        rows.append(
            {
                "box_count": float(len(boxes)),
                "box_area": float(np.median(areas)) if len(boxes) else np.nan,
                "confidence": float(np.mean(scores)) if len(boxes) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["box_count", "box_area", "confidence"])


def embed_frames(
    model: str | os.PathLike | Any,
    frames: Sequence[str | os.PathLike | np.ndarray],
    *,
    imgsz: int,
    batch: int = 16,
) -> np.ndarray:
    """The detector's embedding of every frame: its backbone's pooled features (Ultralytics).

    Args:
        model: ``.pt`` weights or an ``ultralytics.YOLO`` object.
        frames: Image paths or BGR arrays.
        imgsz: The model's input size.
        batch: Frames per forward pass.

    Returns:
        A ``(frames, dims)`` float32 array.

    Raises:
        FileNotFoundError: If the weights or a frame does not exist.
    """
    from tcv_helpers.model.predict import load_yolo, quiet_ultralytics

    yolo = load_yolo(model)
    out: list[np.ndarray] = []
    with quiet_ultralytics():
        for start in range(0, len(frames), batch):
            chunk = [_read(f) for f in frames[start : start + batch]]
            vectors = yolo.embed(chunk, imgsz=imgsz, verbose=False, device="cpu")
            out.extend(v.detach().cpu().numpy().astype(np.float32).ravel() for v in vectors)
    return np.stack(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class EmbeddingSpace:
    """Where the reference frames' embeddings lie: their mean and principal components.

    :meth:`distance` is the Mahalanobis distance in the top components: about the same for new
    frames like the reference's, larger for frames unlike any of them (night, a new view).

    Attributes:
        mean: Mean embedding of the reference.
        components: ``(dims, features)`` principal directions.
        scale: Standard deviation along each direction.
    """

    mean: np.ndarray
    components: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, embeddings: np.ndarray, *, dims: int = EMBEDDING_DIMS) -> EmbeddingSpace:
        """Fits the space to reference embeddings (at least 3 frames)."""
        data = np.asarray(embeddings, dtype=np.float64)
        if data.ndim != 2 or len(data) < 3:
            raise ValueError(
                f"An embedding space needs at least 3 reference frames, got shape {data.shape}."
            )
        mean = data.mean(axis=0)
        _, singular, vt = np.linalg.svd(data - mean, full_matrices=False)
        keep = max(1, min(dims, len(data) - 1, int((singular > 1e-9).sum())))
        scale = singular[:keep] / np.sqrt(len(data) - 1)
        return cls(mean=mean, components=vt[:keep], scale=np.maximum(scale, 1e-9))

    def distance(self, embeddings: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding from the reference, in the kept components.

        Raises:
            ValueError: If the embeddings' width differs from the reference's.
        """
        data = np.asarray(embeddings, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"Embeddings of shape {data.shape} do not match the reference's width "
                f"{self.mean.shape[0]} (another model?)."
            )
        projected = (data - self.mean) @ self.components.T / self.scale
        return np.sqrt((projected**2).mean(axis=1))

    def reference_distance(self, embeddings: np.ndarray, *, folds: int = 2) -> np.ndarray:
        """Distances of the reference's own frames, each measured by a space fitted without it.

        A frame is always close to a space fitted on itself; cross-fitting gives the distances a
        new frame of the same kind would get, so a held-out window does not look like drift.
        """
        data = np.asarray(embeddings, dtype=np.float64)
        out = np.empty(len(data))
        order = np.arange(len(data)) % folds
        for fold in range(folds):
            held = order == fold
            dims = len(self.scale)
            out[held] = EmbeddingSpace.fit(data[~held], dims=dims).distance(data[held])
        return out


def profile_with_model(
    frames: Sequence[str | os.PathLike | np.ndarray],
    *,
    model: str | os.PathLike | Any,
    imgsz: int,
    scene: np.ndarray | None = None,
    space: EmbeddingSpace | None = None,
    conf: float = 0.25,
) -> tuple[pd.DataFrame, EmbeddingSpace]:
    """:func:`profile_frames` plus what the model sees (:data:`MODEL_FEATURES`).

    Args:
        frames: Image paths or BGR arrays.
        model: The deployed detector's ``.pt`` (or ``YOLO`` object).
        imgsz: Its input size.
        scene: The camera's scene (:func:`scene_of`).
        space: The reference's embedding space; None makes this the reference: the space is
            fitted here and the frames' distances are cross-fitted.
        conf: Confidence threshold of the detections counted (the service's).

    Returns:
        The profile, and the embedding space (the one given, or the one fitted).
    """
    from tcv_helpers.model.predict import load_yolo, predict_yolo

    images = [_read(f) for f in frames]
    yolo = load_yolo(model)
    table = profile_frames(images, scene=scene)
    found = predict_yolo(yolo, images, imgsz=imgsz, conf=conf)
    sizes = [(im.shape[1], im.shape[0]) for im in images]
    boxes = detection_features(found, sizes)
    embeddings = embed_frames(yolo, images, imgsz=imgsz)
    if space is None:
        space = EmbeddingSpace.fit(embeddings)
        distance = space.reference_distance(embeddings)
    else:
        distance = space.distance(embeddings)
    table = table.join(boxes)
    table["embedding_distance"] = distance
    return table, space


# --------------------------------------------------------------------------------------------
# Drift over time
# --------------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """Windows slid over a stream of frames, each compared with the reference.

    Attributes:
        windows: One row per window: ``start``, ``end`` (frame positions), ``label`` (the
            stream's label at the window's end, when it has one), and per feature
            ``<feature>_psi`` and ``<feature>_drifted``, and ``drifted`` (any feature).
        stream: The stream's profile (one row per frame, in order).
        reference: The reference profile.
        features: The features compared.
    """

    windows: pd.DataFrame
    stream: pd.DataFrame
    reference: pd.DataFrame
    features: tuple[str, ...]

    def first_alarm(self) -> dict[str, Any] | None:
        """The first window that drifted (its row as a dict), or None."""
        hits = self.windows[self.windows["drifted"]]
        return None if hits.empty else hits.iloc[0].to_dict()

    def plot(self, features: Sequence[str] | None = None) -> Figure:
        """Each feature over the stream against the reference's 5-95 % band, and the windows
        that drifted shaded."""
        from matplotlib.figure import Figure

        shown = list(features or self.features)
        fig = Figure(figsize=(11, 1.6 * len(shown) + 0.8))
        axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
        position = np.arange(len(self.stream))
        for ax, name in zip(axes, shown, strict=True):
            ref = self.reference[name].dropna()
            if len(ref):
                low, high = np.quantile(ref, [0.05, 0.95])
                ax.axhspan(low, high, color="tab:green", alpha=0.15, lw=0)
            ax.plot(position, self.stream[name].to_numpy(), ".", ms=3, color="tab:blue")
            for _, row in self.windows[self.windows[f"{name}_drifted"]].iterrows():
                ax.axvspan(row["start"], row["end"], color="tab:red", alpha=0.08, lw=0)
            ax.set_ylabel(name.replace("_", " "), fontsize=8)
        if "label" in self.stream:
            labels = self.stream["label"].astype(str).to_numpy()
            changes = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
            for i in changes:
                axes[0].annotate(
                    labels[i], (i, 1.02), xycoords=("data", "axes fraction"), fontsize=8
                )
                for ax in axes:
                    ax.axvline(i, color="grey", lw=0.6, ls=":")
        axes[-1].set_xlabel("frame (in arrival order)")
        fig.suptitle(
            "Drift over time: green = the training frames' 5-95 % range, red = windows that drifted"
        )
        fig.tight_layout()
        return fig


def timeline(
    reference: pd.DataFrame,
    stream: pd.DataFrame,
    *,
    window: int = 30,
    step: int = 10,
    features: Sequence[str] | None = None,
    psi_threshold: float = PSI_THRESHOLD,
    ks_alpha: float = KS_ALPHA,
) -> Timeline:
    """Slides a window over a stream of frames and compares each with the reference.

    Args:
        reference: The reference profile.
        stream: The stream's profile, one row per frame in arrival order (an optional ``label``
            column, such as the condition, is carried along).
        window: Frames per window.
        step: Frames between window starts.
        features: Columns to compare (default: every feature both profiles have).
        psi_threshold: See :func:`compare`.
        ks_alpha: See :func:`compare`.

    Returns:
        The timeline.

    Raises:
        ValueError: If ``window`` or ``step`` is not positive or the stream is shorter than one
            window.
    """
    import pandas as pd

    if window < 2 or step < 1:
        raise ValueError(f"window must be at least 2 and step at least 1, got {window}, {step}.")
    if len(stream) < window:
        raise ValueError(
            f"The stream holds {len(stream)} frames, fewer than one window ({window})."
        )
    known = (*FEATURES, *MODEL_FEATURES)
    names = tuple(
        features
        or [f for f in known if f in reference and f in stream and reference[f].notna().any()]
    )
    rows = []
    for start in range(0, len(stream) - window + 1, step):
        part = stream.iloc[start : start + window]
        report = compare(
            reference, part, features=names, psi_threshold=psi_threshold, ks_alpha=ks_alpha
        )
        row: dict[str, Any] = {"start": start, "end": start + window - 1}
        if "label" in stream:
            row["label"] = part["label"].iloc[-1]
        for r in report.rows:
            row[f"{r['feature']}_psi"] = r["psi"]
            row[f"{r['feature']}_drifted"] = r["drifted"]
        for name in names:  # a feature without values in this window did not drift
            row.setdefault(f"{name}_psi", float("nan"))
            row.setdefault(f"{name}_drifted", False)
        row["drifted"] = report.drifted
        rows.append(row)
    return Timeline(
        windows=pd.DataFrame(rows), stream=stream.reset_index(drop=True), reference=reference,
        features=names,
    )  # fmt: skip
