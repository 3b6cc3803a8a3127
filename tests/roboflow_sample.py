"""The real sample laid out as Roboflow's YOLO zip holds it, for tests of exports as downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from tcv_helpers.data.dataset import Dataset
from tcv_helpers.data.labels import label_path_for


def roboflow_yaml(root: Path, names: list[str]) -> Path:
    """The ``data.yaml`` Roboflow puts in its YOLO zip: ``../`` split paths, ``nc``, a credit."""
    data = {
        "train": "../train/images",
        "val": "../valid/images",
        "test": "../test/images",
        "nc": len(names),
        "names": names,
        "roboflow": {
            "workspace": "tamaturgo",
            "project": "manaus_traffic",
            "version": 5,
            "license": "CC BY 4.0",
            "url": "https://universe.roboflow.com/tamaturgo/manaus_traffic/dataset/5",
        },
    }
    file = root / "data.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return file


def roboflow_export(source: Path, root: Path, counts: dict[str, int] | None = None) -> Path:
    """A copy of the sample as Roboflow's zip holds it (the first ``counts`` images per split)."""
    for split in ("train", "valid", "test"):
        images = sorted((source / split / "images").glob("*.jpg"))
        for image in images[: counts[split]] if counts else images:
            for src, dst in (
                (image, root / split / "images" / image.name),
                (label_path_for(image), root / split / "labels" / f"{image.stem}.txt"),
            ):
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
    shutil.copyfile(source / "README.dataset.txt", root / "README.dataset.txt")
    roboflow_yaml(root, list(Dataset.from_yaml(source).names))
    return root
