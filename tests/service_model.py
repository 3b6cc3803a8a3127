"""What the service's tests share: a small exported model (built once per session), hostile bytes.

Not a test module: ``tests/test_inference.py``, ``test_app.py``, ``test_server.py`` and
``test_loadtest.py`` each wrap :func:`tiny_service_model` in a fixture of their own.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from tcv_helpers.data.synth import generate_dataset
from tcv_helpers.deploy.inference import load_detector
from tcv_helpers.imaging import letterbox
from tcv_helpers.model.predict import quiet_ultralytics

CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle", "person")
IMGSZ = 128
# The model, once built in this session (pytest's temporary folders outlive the test modules).
_BUILT: dict[str, SimpleNamespace] = {}


def _tiny_model(frames: list[np.ndarray], out: Path) -> Path:
    """A seeded YOLO11n for the course's six classes, made to give varied boxes (a ``.pt``).

    Untrained weights, so it takes two seconds instead of a training run: what is compared is the
    pipeline around the network, not its accuracy (a few epochs of training would not help: they
    leave BatchNorm's running statistics at their start values, and in eval mode the features
    vanish, so every image gets the same boxes). BatchNorm statistics are estimated on a few
    frames, so the output depends on the image; the head is scaled so that scores spread below
    saturation (ties would make the order of equal boxes arbitrary), classes a little apart
    (ties would make the class arbitrary) and boxes are car-sized, not clipped to the whole frame.
    """
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    with quiet_ultralytics():
        yolo = YOLO("yolo11n.yaml")
        net = DetectionModel("yolo11n.yaml", nc=len(CLASSES), verbose=False)
    net.names = dict(enumerate(CLASSES))
    yolo.model = net
    batch = np.stack([letterbox(f[..., ::-1], IMGSZ).image for f in frames])
    tensor = torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    net.train()
    with torch.no_grad():
        net(tensor)
        head = net.model[-1]
        for scores, boxes in zip(head.cv3, head.cv2, strict=True):
            scores[-1].weight *= 0.4
            # Classes a little apart: where the features are flat (grey padding) every class
            # would score the same, and two runtimes' rounding would pick different winners.
            scores[-1].bias += 6.0 + 0.05 * torch.arange(len(CLASSES))
            boxes[-1].weight *= 0.05
            boxes[-1].bias.view(4, head.reg_max)[:, :4] += 6.0  # short distances: small boxes
    net.eval()
    yolo.save(str(out))
    return out


def tiny_service_model(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The tiny model as ``.pt`` and ``.onnx``, its detector, and synthetic frames it has not seen.

    Args:
        tmp_path_factory: pytest's session-wide factory (the files live as long as the session).

    Returns:
        ``pt``, ``onnx``, ``detector``, ``data`` (the synthetic dataset's root), ``paths``
        (unseen frames) and ``jpeg`` (one of them as bytes).
    """
    from ultralytics import YOLO

    if "tiny" in _BUILT:
        return _BUILT["tiny"]
    work = tmp_path_factory.mktemp("service-model")
    data = generate_dataset(work / "data", images=30, cameras=3, sequences=0, workers=1)
    paths = sorted((data.root / "images").glob("*/*.jpg"))
    pt = _tiny_model([cv2.imread(str(p)) for p in paths[:16]], work / "tiny.pt")
    with quiet_ultralytics():
        onnx = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, dynamic=False))
    _BUILT["tiny"] = SimpleNamespace(
        pt=pt,
        onnx=onnx,
        detector=load_detector(onnx),
        data=data.root,
        paths=paths[16:],
        jpeg=paths[20].read_bytes(),
    )
    return _BUILT["tiny"]


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` RGB pixels (the data is not there)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
