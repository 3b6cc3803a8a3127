"""What the notebook widgets share: drawing boxes on a frame, message frames, PNG bytes, redraws.

The course has two widgets, each a plain Python model that holds all the state and logic
(filters, navigation, decisions, saving) and is tested without a browser, plus a ``widget()``
method that builds the ipywidgets controls and wires them to the model. The controls only call
model methods; the model tells the controls to redraw (:class:`Listeners`) whenever its state
changes, so calling model methods from code (``browser.next()``) also updates a displayed widget.

* :class:`~tcv_helpers.data.browser.DatasetBrowser` looks through a YOLO dataset with filters
  for split, camera, condition and class.
* :class:`~tcv_helpers.data.reviewer.PseudoLabelReviewer` accepts, rejects and edits boxes that
  a model proposed for new frames, then writes the accepted frames as a YOLO dataset with an
  audit trail.

Boxes are always ``sv.Detections`` (``xyxy`` float pixels, ``class_id``, ``confidence``).
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import supervision as sv
from PIL import Image, ImageDraw


def class_map(class_names: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
    if isinstance(class_names, Mapping):
        return {int(k): str(v) for k, v in class_names.items()}
    return {i: str(name) for i, name in enumerate(class_names)}


def annotate(
    image: Image.Image,
    detections: sv.Detections,
    labels: list[str],
    *,
    colour: sv.Color | None = None,
) -> Image.Image:
    """Draws boxes and labels on a copy of ``image`` (class colours unless ``colour`` is set)."""
    if len(detections) == 0:
        return image.copy()
    resolution = image.size
    thickness = sv.calculate_optimal_line_thickness(resolution)
    scale = sv.calculate_optimal_text_scale(resolution)
    palette: Any = colour if colour is not None else sv.ColorPalette.DEFAULT
    boxes = sv.BoxAnnotator(color=palette, thickness=thickness)
    texts = sv.LabelAnnotator(color=palette, text_scale=scale, text_padding=max(2, thickness * 2))
    annotated = boxes.annotate(image.copy(), detections)
    return texts.annotate(annotated, detections, labels=labels)


def message_image(message: str, size: tuple[int, int] = (640, 360)) -> Image.Image:
    """A grey image with ``message`` written on it, shown when there is nothing to draw."""
    image = Image.new("RGB", size, (60, 60, 60))
    draw = ImageDraw.Draw(image)
    text = "\n".join(textwrap.wrap(message, width=70)) or " "
    draw.multiline_text((16, 16), text, fill=(255, 255, 255), spacing=6)
    return image


def png_bytes(image: Image.Image, max_side: int | None) -> bytes:
    """PNG bytes of ``image``, scaled down so its longer side is at most ``max_side``."""
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Listeners:
    """Callbacks the model runs after each change of state (the widget's redraw)."""

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def notify(self) -> None:
        for callback in list(self._callbacks):
            callback()
