"""Times ``tcv_helpers.data.qa.check_dataset`` on a generated YOLO dataset (target: 1,000 images < 20 s).

Generates N synthetic 640x360 JPEG frames (smooth random textures with noise) with YOLO labels
in a temporary folder, plants a few defects (corrupt, truncated and empty images, a PNG named
.jpg, bad label lines, an orphan label, near-duplicates across splits), runs ``check_dataset``
and prints one line per planted kind found, then as its last line::

    images/s=...  seconds=...  target_ratio=20.0/seconds=...

A ratio above 1 meets the target. Usage: ``python benchmarks/bench_qa.py [-n 1000] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from tcv_helpers.data.qa import check_dataset

TARGET_SECONDS = 20.0
TARGET_IMAGES = 1000
SIZE = (640, 360)


def _frame(rng: np.random.Generator) -> Image.Image:
    """A 640x360 frame: an upscaled coarse random pattern plus fine noise."""
    coarse = rng.integers(0, 256, (9, 16, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize(SIZE, Image.Resampling.BICUBIC))
    noise = rng.integers(-20, 21, (SIZE[1], SIZE[0], 3), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _label(rng: np.random.Generator) -> str:
    lines = []
    for _ in range(int(rng.integers(1, 8))):
        w, h = rng.uniform(0.03, 0.2, 2)
        cx, cy = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
        lines.append(f"{int(rng.integers(0, 4))} {cx:.5f} {cy:.5f} {w:.5f} {h:.5f}")
    return "\n".join(lines) + "\n"


def make_dataset(root: Path, n: int, seed: int = 0) -> Counter:
    """Writes a Roboflow-layout dataset of ``n`` images with planted defects.

    Args:
        root: Empty folder to write into.
        n: Number of image files.
        seed: Random seed.

    Returns:
        How many defects of each kind were planted.
    """
    rng = np.random.default_rng(seed)
    splits = {"train": int(n * 0.7), "valid": int(n * 0.2)}
    splits["test"] = n - sum(splits.values())
    (root / "data.yaml").write_text(
        "train: train/images\nval: valid/images\ntest: test/images\n"
        "names: [car, truck, bus, motorcycle]\n",
        encoding="utf-8",
    )
    planted: Counter = Counter()
    train_frames: list[bytes] = []
    for split, count in splits.items():
        images, labels = root / split / "images", root / split / "labels"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for k in range(count):
            name = f"{split}_{k:05d}"
            if split != "train" and k % 50 == 7 and train_frames:
                data = train_frames[k % len(train_frames)]  # leakage: a train frame again
                planted["near_duplicate_across_splits"] += 1
            else:
                data = _jpeg(_frame(rng))
            label = _label(rng)
            if split == "train":
                train_frames.append(data)
                if k % 97 == 3:
                    data = data[: len(data) // 2]
                    planted["truncated_image"] += 1
                elif k % 97 == 5:
                    data = b"<html>camera offline</html>"
                    planted["corrupt_image"] += 1
                elif k % 97 == 9:
                    data = b""
                    planted["empty_file"] += 1
                elif k % 97 == 11:
                    buffer = io.BytesIO()
                    Image.open(io.BytesIO(data)).save(buffer, "PNG")
                    data = buffer.getvalue()
                    planted["extension_mismatch"] += 1
                elif k % 97 == 13:
                    label += "0 0.5 0.5 0.1\n"
                    planted["malformed_line"] += 1
                elif k % 97 == 17:
                    label += "9 0.5 0.5 0.1 0.1\n"
                    planted["class_out_of_range"] += 1
            (images / f"{name}.jpg").write_bytes(data)
            (labels / f"{name}.txt").write_text(label, encoding="utf-8")
    (root / "valid" / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n", encoding="utf-8")
    planted["orphan_label"] += 1
    return planted


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints the result.

    Args:
        argv: Command-line arguments (``-n``, ``--workers``); None reads ``sys.argv``.

    Returns:
        0 when every planted kind was found, else 1.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=TARGET_IMAGES, help="number of images")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_qa_") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        planted = make_dataset(root, args.n)
        print(f"generated {args.n} images in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = check_dataset(root, workers=args.workers)
        seconds = time.perf_counter() - started
    found = Counter(issue.kind for issue in report.issues)
    missing = [kind for kind in planted if found[kind] < planted[kind]]
    for kind in sorted(planted):
        print(f"{kind}: planted {planted[kind]}, found {found[kind]}")
    print(f"{len(report.errors)} errors, {len(report.warnings)} warnings")
    if missing:
        print(f"NOT FOUND: {', '.join(missing)}")
    scaled = seconds * TARGET_IMAGES / args.n
    print(
        f"images/s={args.n / seconds:.1f}  seconds={seconds:.2f}  "
        f"target_ratio={TARGET_SECONDS:.1f}/{scaled:.2f}={TARGET_SECONDS / scaled:.1f}"
    )
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
