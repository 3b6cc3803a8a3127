"""Privacy before anything is drawn or stored: people blurred, and where plates are, on request."""

from __future__ import annotations

import numpy as np
import supervision as sv

from tcv_helpers.count.detectors import VEHICLE_CLASSES, detection_class_names

#: Share of a vehicle box's height, from the bottom, blurred to hide a plate.
PLATE_SHARE = 0.4


def blur_privacy(
    frame: np.ndarray, detections: sv.Detections, *, people: bool = True, plates: bool = False
) -> np.ndarray:
    """Blurs people and, on request, where vehicles' plates are, in a copy of the frame.

    People are the boxes of class ``person``. Plates need a plate detector (a model the course
    does not ship), so ``plates=True`` blurs the lower :data:`PLATE_SHARE` of every vehicle box,
    where front and rear plates sit on a camera that looks along the road: a cover-all, not a
    plate finder. The blur kernel grows with each box so that a large face is not left legible.

    Args:
        frame: A BGR (or RGB) frame.
        detections: All detections of the frame (not only the tracked ones).
        people: Blur boxes of class ``person``.
        plates: Blur the lower part of vehicle boxes.

    Returns:
        The blurred copy (the input is not changed).
    """
    out = frame.copy()
    names = detection_class_names(detections)
    boxes = []
    for box, name in zip(detections.xyxy, names, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        if people and name == "person":
            boxes.append((x1, y1, x2, y2))
        elif plates and name in VEHICLE_CLASSES:
            boxes.append((x1, y2 - PLATE_SHARE * (y2 - y1), x2, y2))
    for x1, y1, x2, y2 in boxes:
        region = sv.Detections(xyxy=np.array([[x1, y1, x2, y2]], dtype=np.float32))
        kernel = max(9, int(max(x2 - x1, y2 - y1) / 3))
        out = sv.BlurAnnotator(kernel_size=kernel).annotate(out, region)
    return out
