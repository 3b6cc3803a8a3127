"""The written evaluation (notebook 06): a report and a model card.

:func:`write_report` writes ``evaluation.json`` and ``evaluation.md`` and checks the numbers
against the project's success criteria (``project.yaml``); :func:`model_card` states the model's
intended use, its metrics overall and by slice, its limitations and what its errors mean for
the counts taken with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tcv_helpers.io import atomic_write_json, atomic_write_text
from tcv_helpers.model.evaluate import finite_or_none
from tcv_helpers.model.slices import SIZE_SLICE

if TYPE_CHECKING:
    import pandas as pd

    from tcv_helpers.model.evaluate import EvalResult

#: The default limitations a model card lists.
DEFAULT_LIMITATIONS: tuple[str, ...] = (
    "Evaluated on the validation split only; cameras, seasons or countries not in it may do worse.",
    "Small, distant and occluded vehicles are found less often than near ones.",
    "Counts derived from detections inherit their misses and false alarms.",
)
#: The default intended use of a model card.
DEFAULT_INTENDED_USE = (
    "Detecting vehicles in frames of fixed traffic cameras to count traffic per class. "
    "Not for identifying people or vehicles, enforcement, or surveillance of individuals."
)


def _criteria_values(criteria: Any) -> dict[str, float] | None:
    """``min_map50`` and ``min_recall`` from SuccessCriteria, a ProjectDefinition or a mapping."""
    if criteria is None:
        return None
    source = getattr(criteria, "criteria", criteria)
    out = {}
    for key in ("min_map50", "min_recall"):
        value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
        if value is None:
            raise ValueError(f"criteria has no {key!r} (give project.criteria from project.yaml).")
        out[key] = float(value)
    return out


def _checks(result: EvalResult, criteria: Mapping[str, float] | None) -> list[dict[str, Any]]:
    if criteria is None:
        return []
    return [
        {
            "metric": "map50",
            "value": result.map50,
            "required": criteria["min_map50"],
            "passed": bool(result.map50 >= criteria["min_map50"]),
        },
        {
            "metric": "recall",
            "value": result.recall,
            "required": criteria["min_recall"],
            "passed": bool(result.recall >= criteria["min_recall"]),
        },
    ]


def _cell(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.3f}"
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value).replace("|", "\\|")


def _md_table(frame: pd.DataFrame) -> list[str]:
    columns = list(frame.columns)
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _class_frame(result: EvalResult) -> pd.DataFrame:
    frame = result.to_pandas().reset_index()
    return frame[["name", "gt", "predictions", "ap50", "ap50_95", "precision", "recall", "f1"]]


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    return [
        {k: finite_or_none(v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def write_report(
    result: EvalResult,
    out_dir: str | os.PathLike,
    *,
    slices_table: pd.DataFrame | None = None,
    criteria: Any = None,
    model_name: str,
    data_name: str,
) -> dict[str, float]:
    """Writes ``evaluation.json`` and ``evaluation.md`` (atomically) and returns the key numbers.

    Args:
        result: From :func:`~tcv_helpers.model.evaluate.evaluate_detections`.
        out_dir: Folder to write into (created if missing).
        slices_table: From :func:`~tcv_helpers.model.slices.evaluate_slices`, or None.
        criteria: The success criteria (``project.criteria`` from ``read_project``, a
            ``ProjectDefinition``, or a mapping with ``min_map50`` and ``min_recall``), or None
            to skip the pass/fail check.
        model_name: The model evaluated (e.g. ``yolo11n fine-tuned``).
        data_name: The data it was evaluated on (e.g. ``synthetic val``).

    Returns:
        The key numbers, a flat dictionary of floats for ``record_metrics(**numbers)`` (see
        :meth:`~tcv_helpers.model.evaluate.EvalResult.key_numbers`).

    Raises:
        ValueError: If ``criteria`` lacks ``min_map50`` or ``min_recall``.

    Example:
        >>> numbers = write_report(result, cfg.workspace.root / "eval",  # doctest: +SKIP
        ...                        criteria=project.criteria, model_name="yolo11n",
        ...                        data_name="synthetic val")
        >>> record_metrics(**numbers)  # doctest: +SKIP
    """
    folder = Path(out_dir)
    limits = _criteria_values(criteria)
    checks = _checks(result, limits)
    passed = all(c["passed"] for c in checks) if checks else None
    numbers = result.key_numbers()
    document = {
        "model": model_name,
        "data": data_name,
        "metrics": numbers,
        "result": result.to_dict(),
        "slices": _records(slices_table),
        "criteria": {"limits": limits, "checks": checks, "passed": passed},
    }
    atomic_write_json(folder / "evaluation.json", document)
    lines = [
        f"# Evaluation: {model_name} on {data_name}",
        "",
        f"- **mAP50:** {result.map50:.3f}",
        f"- **mAP50-95:** {result.map50_95:.3f}",
        f"- **Precision / recall / F1** at confidence {result.conf:g}, IoU {result.iou:g}: "
        f"{result.precision:.3f} / {_cell(result.recall)} / {_cell(result.f1)}",
        f"- **Images:** {result.n_images}, ground-truth boxes {result.n_gt}, "
        f"predictions {result.n_predictions}",
        "",
        "## Success criteria",
        "",
    ]
    if checks:
        for check in checks:
            verdict = "PASS" if check["passed"] else "FAIL"
            lines.append(
                f"- {verdict}: {check['metric']} {check['value']:.3f} "
                f"(required at least {check['required']:.3f})"
            )
        lines += ["", f"**Overall: {'PASS' if passed else 'FAIL'}**"]
    else:
        lines.append("No criteria given.")
    lines += ["", "## Per class", "", *_md_table(_class_frame(result))]
    if slices_table is not None and len(slices_table):
        lines += ["", "## Per slice", "", *_md_table(slices_table)]
    atomic_write_text(folder / "evaluation.md", "\n".join(lines) + "\n")
    return numbers


def _gap(slices_table: pd.DataFrame, name: str) -> tuple[str, str, float] | None:
    """The worst and best value of one slice by mAP50, and the gap between them."""
    rows = slices_table[(slices_table["slice"] == name) & slices_table["map50"].notna()]
    if len(rows) < 2:
        return None
    worst = rows.loc[rows["map50"].idxmin()]
    best = rows.loc[rows["map50"].idxmax()]
    return str(worst["value"]), str(best["value"]), float(best["map50"] - worst["map50"])


def model_card(
    result: EvalResult,
    *,
    model_name: str,
    data_name: str,
    slices_table: pd.DataFrame | None,
    criteria: Any,
    intended_use: str = DEFAULT_INTENDED_USE,
    limitations: Sequence[str] = DEFAULT_LIMITATIONS,
) -> str:
    """A model card (Markdown): intended use, data, metrics overall and by slice, limitations.

    It also states how accuracy varies across cameras and conditions (day, night, ...) when the
    slices table has them, since a detector that fails at night or on one camera biases every
    count taken there, and how people in the frames are protected.

    Args:
        result: From :func:`~tcv_helpers.model.evaluate.evaluate_detections`.
        model_name: The model.
        data_name: The evaluation data.
        slices_table: From :func:`~tcv_helpers.model.slices.evaluate_slices`, or None.
        criteria: The success criteria (as for :func:`write_report`), or None.
        intended_use: What the model is for (and not for).
        limitations: Known limitations, one sentence each.

    Returns:
        The card's Markdown text.

    Raises:
        ValueError: If ``criteria`` lacks ``min_map50`` or ``min_recall``.
    """
    limits = _criteria_values(criteria)
    checks = _checks(result, limits)
    lines = [
        f"# Model card: {model_name}",
        "",
        "## Intended use",
        "",
        intended_use,
        "",
        "## Data",
        "",
        f"Evaluated on **{data_name}**: {result.n_images} images, {result.n_gt} ground-truth "
        f"boxes of {len(result.class_names)} classes ({', '.join(result.class_names)}).",
        "",
        "## Metrics",
        "",
        f"- mAP50 {result.map50:.3f}, mAP50-95 {result.map50_95:.3f} (COCO, pycocotools)",
        f"- At confidence {result.conf:g}: precision {result.precision:.3f}, "
        f"recall {_cell(result.recall)}, F1 {_cell(result.f1)}",
    ]
    for check in checks:
        verdict = "meets" if check["passed"] else "does NOT meet"
        lines.append(
            f"- {check['metric']} {check['value']:.3f} {verdict} the project's minimum "
            f"{check['required']:.3f}"
        )
    lines += ["", "### Per class", "", *_md_table(_class_frame(result))]
    lines += ["", "## Metrics by slice", ""]
    if slices_table is not None and len(slices_table):
        lines += _md_table(slices_table)
    else:
        lines.append("No slices were evaluated.")
    lines += ["", "## Limitations", ""]
    lines += [f"- {item}" for item in limitations]
    lines += ["", "## Privacy and bias", ""]
    lines.append(
        "- Frames can show people and licence plates. The model counts vehicles only; blur "
        "people and plates before frames are stored or shared, and keep counts, not images."
    )
    named = {"camera": "cameras", "camera_id": "cameras", "condition": "conditions (day/night)"}
    found_any = False
    if slices_table is not None and len(slices_table):
        for key in slices_table["slice"].unique():
            if key in ("all", SIZE_SLICE):
                continue
            gap = _gap(slices_table, key)
            if gap is None:
                continue
            found_any = True
            worst, best, size = gap
            lines.append(
                f"- Across {named.get(key, key)}: mAP50 is lowest for **{worst}** and highest for "
                f"**{best}**, a gap of {size:.3f}. Counts from the weakest {key} are biased low; "
                "report them with that caveat or collect more data there."
            )
    if not found_any:
        lines.append(
            "- Accuracy was not compared across cameras or day and night: evaluate by slice "
            "before trusting counts from every camera equally."
        )
    return "\n".join(lines) + "\n"
