"""The service's side of monitoring (notebooks 08-09): the drift baseline and what it measures.

The service exports the brightness of every image it is sent (``tcv_image_brightness``) and,
beside it, the brightness of the training images (``tcv_reference_brightness``) from a reference
profile: :func:`brightness_reference` makes one from training images, saved as ``reference.json``
beside the model (:data:`REFERENCE_FILE`); :func:`load_reference` reads and checks one, and
:func:`reference_beside` finds the one the service picks up. The drift alert of
``resources/monitoring/alerts.yml`` compares the two. :mod:`tcv_helpers.monitor.drift` holds the
offline drift measures of notebook 09.

Imports numpy and Pillow only.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tcv_helpers.deploy.decode import to_rgb
from tcv_helpers.imaging import MAX_PIXELS

#: Reference profile (training-image brightness) that the service picks up beside the model.
REFERENCE_FILE = "reference.json"


def image_brightness(rgb: np.ndarray) -> float:
    """Mean luma (0-255, ITU-R BT.601) of an RGB image, from about 16,000 sampled pixels."""
    step = max(1, math.ceil(math.sqrt(rgb.shape[0] * rgb.shape[1] / 16_384)))
    sample = rgb[::step, ::step].reshape(-1, 3).astype(np.float32)
    return float((sample @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())


def brightness_reference(
    images: Sequence[np.ndarray | Image.Image | bytes | str | os.PathLike],
    *,
    max_pixels: int = MAX_PIXELS,
) -> dict[str, Any]:
    """The reference profile of training images: their brightness as the service measures it.

    Save it as ``reference.json`` beside the model (``tcv_helpers.io.atomic_write_json``) and
    the service exports it as ``tcv_reference_brightness{stat="mean"|"std"}``, which the drift
    alert of ``resources/monitoring/alerts.yml`` compares with ``tcv_image_brightness``.

    Args:
        images: Training images, as :meth:`Detector.detect` takes them (BGR arrays, PIL images,
            encoded bytes or files).
        max_pixels: Largest image accepted, width x height.

    Returns:
        ``{"brightness": {"mean": m, "std": s, "count": n}}`` (mean luma 0-255 per image, as
        :func:`image_brightness` computes it).

    Raises:
        ValueError: If ``images`` is empty or an image is unusable.
    """
    if not images:
        raise ValueError("brightness_reference needs at least one image.")
    values = np.array([image_brightness(to_rgb(im, max_pixels=max_pixels)) for im in images])
    return {
        "brightness": {
            "mean": round(float(values.mean()), 4),
            "std": round(float(values.std()), 4),
            "count": len(values),
        }
    }


def load_reference(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Reads and checks a reference profile (see :func:`brightness_reference`).

    Args:
        source: A JSON file, or the profile itself as a mapping.

    Returns:
        ``{"brightness": {"mean": m, "std": s}}`` with floats (0 <= m <= 255, s >= 0).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it is not JSON or a field is missing or out of range (the message names
            the file and the field).
    """
    where = "the reference profile"
    if isinstance(source, Mapping):
        profile: Any = source
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Reference profile {path} does not exist: write one with "
                "tcv_helpers.deploy.reference.brightness_reference(training_images)."
            )
        try:
            profile = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{where} is not valid JSON: {exc}") from None
    brightness = profile.get("brightness") if isinstance(profile, Mapping) else None
    if not isinstance(brightness, Mapping):
        raise ValueError(f'{where}: expected an object with a "brightness" object (mean, std).')
    stats = {}
    for stat, low, high in (("mean", 0.0, 255.0), ("std", 0.0, 255.0)):
        value = brightness.get(stat)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: brightness.{stat} must be a number, got {value!r}.")
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(
                f"{where}: brightness.{stat} must be in {low:g}-{high:g}, got {value}."
            )
        stats[stat] = float(value)
    return {"brightness": stats}


def reference_beside(model_path: str | os.PathLike) -> Path | None:
    """The reference profile the service picks up for a model, if there is one.

    Args:
        model_path: The model file (or an OpenVINO model's folder).

    Returns:
        ``reference.json`` in the model's folder, or in the folder above (a benchmark's
        variants folder holds one per variant), else None.
    """
    model_path = Path(model_path)
    for folder in (model_path.parent, model_path.parent.parent):
        candidate = folder / REFERENCE_FILE
        if candidate.is_file():
            return candidate
    return None
