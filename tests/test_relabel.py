"""The relabel loop: capture, the queue, review, the merged dataset, retraining and comparison."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import supervision as sv
import yaml
from matplotlib.figure import Figure
from PIL import Image
from tiny import TINY

from tcv_helpers.data.labels import read_yolo_labels
from tcv_helpers.data.reviewer import PseudoLabelReviewer
from tcv_helpers.model.evaluate import load_ground_truth
from tcv_helpers.model.predict import predict_yolo
from tcv_helpers.monitor.capture import capture_edge_cases
from tcv_helpers.monitor.conditions import condition_set
from tcv_helpers.monitor.edge_cases import Frame, disagreement, match_boxes, score_frame
from tcv_helpers.monitor.retrain import (
    ModelComparison,
    compare_models,
    merged_data_yaml,
    retrain_with_queue,
)
from tcv_helpers.monitor.review import QUEUE_COLUMNS, RelabelQueue, review_with_truth
from tcv_helpers.project import PROJECT_CLASSES

CAR, TRUCK, BUS = 0, 1, 2
BOX_A = [10.0, 10.0, 50.0, 40.0]
BOX_B = [100.0, 60.0, 150.0, 110.0]
BOX_C = [200.0, 20.0, 260.0, 70.0]


def det(boxes=(), classes=(), confidence=None) -> sv.Detections:
    """Detections from lists (no confidence: ground truth)."""
    if not len(boxes):
        return sv.Detections.empty()
    return sv.Detections(
        xyxy=np.array(boxes, dtype=float).reshape(-1, 4),
        class_id=np.array(classes, dtype=int),
        confidence=None if confidence is None else np.array(confidence, dtype=float),
    )


def entropy(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def _files(root: Path) -> dict[str, str]:
    """sha256 and mtime of every file under root: proof that nothing was edited."""
    return {
        p.relative_to(
            root
        ).as_posix(): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# Scoring a frame


@pytest.mark.parametrize(
    ("predictions", "reference", "reasons", "score"),
    [
        (det([BOX_A], [CAR], [0.9]), None, (), 0.0),
        (det([BOX_A], [CAR], [0.1]), None, (), 0.0),  # below low: noise
        (det([BOX_A, BOX_B], [CAR, BUS], [0.9, 0.4]), None, ("uncertain",), entropy(0.4)),
        (det([BOX_A, BOX_B], [CAR, BUS], [0.3, 0.5]), None, ("uncertain",), 1.0),
        (det([BOX_A], [CAR], [0.9]), det([BOX_A], [CAR], [0.8]), (), 0.0),
        # the deployed model sees nothing confident where the reference does
        (det(), det([BOX_A], [CAR], [0.9]), ("missed", "disagreement"), 1.0),
        # one of two reference boxes found: F1 = 2/3
        (det([BOX_A], [CAR], [0.9]), det([BOX_A, BOX_B], [CAR, CAR]), ("disagreement",), 1 / 3),
        # same place, other class: nothing matches
        (det([BOX_A], [CAR], [0.9]), det([BOX_A], [TRUCK], [0.9]), ("disagreement",), 1.0),
        (det(), det(), (), 0.0),
    ],
    ids=[
        "confident", "below-low", "one-uncertain", "most-uncertain", "agree", "missed",
        "half-found", "other-class", "both-empty",
    ],
)  # fmt: skip
def test_score_frame(predictions, reference, reasons, score):
    result = score_frame(predictions, reference)
    assert result.reasons == reasons
    assert result.flagged is bool(reasons)
    assert result.score == pytest.approx(score, abs=1e-6)


def test_empty_frames_are_queued_only_when_asked_and_without_a_reference():
    """A model that sees nothing is never "uncertain": ``flag_empty`` queues such frames."""
    assert score_frame(det()).reasons == (), "default: an empty frame is not flagged"
    empty = score_frame(det(), flag_empty=True)
    assert empty.reasons == ("empty",) and empty.score == 1.0
    noise = score_frame(det([BOX_A], [CAR], [0.1]), flag_empty=True)
    assert noise.reasons == ("empty",), "boxes below low do not count"
    assert score_frame(det([BOX_A], [CAR], [0.9]), flag_empty=True).reasons == ()
    assert score_frame(det(), det(), flag_empty=True).reasons == (), "a reference decides"


def test_capture_queues_empty_frames_with_flag_empty(tmp_path):
    frames = [Frame(id=f"f{v}", image=np.full((32, 48, 3), v, dtype=np.uint8)) for v in (40, 90)]
    predictions = [det(), det([BOX_A], [CAR], [0.9])]
    quiet = capture_edge_cases(frames, predictions, out_dir=tmp_path / "a")
    assert quiet.counts()["added"] == 0
    asked = capture_edge_cases(frames, predictions, out_dir=tmp_path / "b", flag_empty=True)
    assert asked.counts()["added"] == 1
    assert asked.queue.table()["reasons"].tolist() == ["empty"]


def test_score_frame_counts_and_thresholds():
    result = score_frame(det([BOX_A, BOX_B, BOX_C], [CAR] * 3, [0.05, 0.3, 0.95]))
    assert (result.n_detections, result.n_uncertain, result.n_reference) == (2, 1, None)
    assert score_frame(det([BOX_A], [CAR], [0.3]), low=0.35).reasons == ()
    assert score_frame(det([BOX_A], [CAR], [0.7]), high=0.8).reasons == ("uncertain",)
    with pytest.raises(ValueError, match="low < high"):
        score_frame(det(), low=0.7, high=0.6)
    with pytest.raises(ValueError, match="confidence"):
        score_frame(det([BOX_A], [CAR]))


def test_matching_is_greedy_by_iou_and_class_aware():
    shifted = [14.0, 10.0, 54.0, 40.0]  # IoU with BOX_A: 0.82
    a = det([shifted, BOX_A], [CAR, CAR], [0.9, 0.9])
    b = det([BOX_A], [CAR])
    assert match_boxes(a, b) == [(1, 0)], "the exact box wins over the shifted one"
    assert match_boxes(a, det([BOX_A], [BUS])) == []
    assert match_boxes(a, b, iou=0.9) == [(1, 0)]
    assert disagreement(a, b) == pytest.approx(1 - 2 / 3)
    assert disagreement(det([BOX_A], [CAR], [0.2]), b, conf=0.25) == 1.0
    with pytest.raises(ValueError, match="iou"):
        match_boxes(a, b, iou=0)


# --------------------------------------------------------------------------------------------
# Capture into a queue


@pytest.fixture
def frames(tmp_path: Path) -> list[Frame]:
    """Six distinct PNG frames (a unique grey level each) in a read-only 'camera' folder."""
    folder = tmp_path / "camera"
    folder.mkdir()
    out = []
    for k in range(6):
        path = folder / f"f{k}.png"
        Image.new("RGB", (320, 180), (20 * k, 40, 60)).save(path)
        out.append(
            Frame(
                id=f"cam-1/f{k}",
                image=path,
                camera="cam-1",
                captured_at=f"2026-05-0{k + 1}T22:00:00",
            )
        )
    return out


def _predictions() -> tuple[list[sv.Detections], list[sv.Detections]]:
    """Deployed and reference boxes for the six frames, and what each should give.

    f0 confident and agreeing; f1 uncertain (0.45: score ~0.99); f2 uncertain (0.3: ~0.88);
    f3 missed (score 1); f4 disagrees (reference has a second box: 1/3); f5 nothing anywhere.
    """
    deployed = [
        det([BOX_A], [CAR], [0.9]),
        det([BOX_A, BOX_B], [CAR, TRUCK], [0.95, 0.45]),
        det([BOX_C], [BUS], [0.3]),
        det([BOX_A], [CAR], [0.1]),
        det([BOX_A], [CAR], [0.9]),
        det(),
    ]
    reference = [
        det([BOX_A], [CAR], [0.85]),
        det([BOX_A, BOX_B], [CAR, TRUCK], [0.9, 0.7]),
        det([BOX_C], [BUS], [0.5]),
        det([BOX_A], [CAR], [0.9]),
        det([BOX_A, BOX_C], [CAR, BUS], [0.9, 0.8]),
        det(),
    ]
    return deployed, reference


def test_capture_picks_exactly_the_uncertain_and_disagreeing_frames(tmp_path, frames):
    deployed, reference = _predictions()
    originals = _files(tmp_path / "camera")
    result = capture_edge_cases(
        frames, deployed, reference_predictions=reference, out_dir=tmp_path / "queue"
    )
    assert result.added == ["cam-1/f3", "cam-1/f1", "cam-1/f2", "cam-1/f4"], "highest score first"
    assert result.counts() == {"added": 4, "duplicate": 0, "over budget": 0, "not flagged": 2}
    assert _files(tmp_path / "camera") == originals, "originals untouched"

    table = result.queue.table()
    assert list(table.columns) == list(QUEUE_COLUMNS[1:])
    assert table.loc["cam-1/f3", "reasons"] == "missed;disagreement"
    assert table.loc["cam-1/f4", "reasons"] == "disagreement"
    assert table.loc["cam-1/f1", "score"] == pytest.approx(entropy(0.45), abs=1e-5)
    assert (table["status"] == "pending").all()
    assert table.loc["cam-1/f2", "camera"] == "cam-1"
    assert table.loc["cam-1/f2", "captured_at"] == "2026-05-03T22:00:00"
    assert table.loc["cam-1/f3", "n_detections"] == 0 and table.loc["cam-1/f3", "n_reference"] == 1
    for frame_id, row in table.iterrows():
        copy = result.queue.root / row["image"]
        assert not Path(row["image"]).is_absolute() and "/" not in copy.name
        source = next(f.image for f in frames if f.id == frame_id)
        assert copy.read_bytes() == source.read_bytes(), "copied byte for byte"
        assert row["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    # proposals: deployed boxes >= low, plus what only the reference saw (f3's car, f4's bus)
    proposals = json.loads((result.queue.root / table.loc["cam-1/f4", "proposals"]).read_text())
    assert [(b["class_id"], b["source"]) for b in proposals["detections"]] == [
        (CAR, "model"), (BUS, "reference"),
    ]  # fmt: skip
    assert (proposals["width"], proposals["height"]) == (320, 180)
    missed = json.loads((result.queue.root / table.loc["cam-1/f3", "proposals"]).read_text())
    assert [b["source"] for b in missed["detections"]] == ["reference"]


def test_capture_without_reference_uses_uncertainty_only(tmp_path, frames):
    deployed, _ = _predictions()
    result = capture_edge_cases(frames, deployed, out_dir=tmp_path / "queue")
    assert result.added == ["cam-1/f1", "cam-1/f2"]
    assert result.queue.table()["n_reference"].isna().all()


def test_capture_appends_without_duplicates(tmp_path, frames):
    deployed, reference = _predictions()
    queue_dir = tmp_path / "queue"
    capture_edge_cases(frames[:3], deployed[:3], out_dir=queue_dir)
    manifest_before = (queue_dir / "manifest.csv").read_text()
    again = capture_edge_cases(frames[:3], deployed[:3], out_dir=queue_dir)
    assert again.added == [] and again.counts()["duplicate"] == 2
    assert (queue_dir / "manifest.csv").read_text() == manifest_before
    # the same picture under another id is a duplicate too (same bytes)
    alias = Frame(id="renamed", image=frames[1].image)
    more = capture_edge_cases(
        [alias, *frames[3:]], [deployed[1], *deployed[3:]],
        reference_predictions=[reference[1], *reference[3:]], out_dir=queue_dir,
    )  # fmt: skip
    assert more.added == ["cam-1/f3", "cam-1/f4"]
    assert more.table().loc["renamed", "outcome"] == "duplicate"
    assert list(RelabelQueue(queue_dir).table().index) == [
        "cam-1/f1", "cam-1/f2", "cam-1/f3", "cam-1/f4",
    ]  # fmt: skip


def test_budget_keeps_the_most_uncertain_first(tmp_path, frames):
    deployed, reference = _predictions()
    queue_dir = tmp_path / "queue"
    first = capture_edge_cases(
        frames, deployed, reference_predictions=reference, out_dir=queue_dir, budget=2
    )
    assert first.added == ["cam-1/f3", "cam-1/f1"]
    assert first.counts()["over budget"] == 2
    second = capture_edge_cases(
        frames, deployed, reference_predictions=reference, out_dir=queue_dir, budget=1
    )
    assert second.added == ["cam-1/f2"] and second.counts()["duplicate"] == 2
    assert len(second.queue) == 3


def test_capture_arrays_and_input_errors(tmp_path, frames):
    array = np.full((90, 160, 3), 77, dtype=np.uint8)
    uncertain = det([BOX_A], [CAR], [0.4])
    result = capture_edge_cases(
        [Frame(id="live 1", image=array)], [uncertain], out_dir=tmp_path / "queue"
    )
    row = result.queue.table().loc["live 1"]
    stored = result.queue.root / row["image"]
    assert stored.name == "live_1.jpg" and stored.read_bytes()[:2] == b"\xff\xd8"
    with Image.open(stored) as image:
        assert image.size == (160, 90)
    with pytest.raises(ValueError, match="without an id"):
        capture_edge_cases([array], [uncertain], out_dir=tmp_path / "q2")
    with pytest.raises(ValueError, match="1 predictions for 2 frames"):
        capture_edge_cases(frames[:2], [uncertain], out_dir=tmp_path / "q2")
    with pytest.raises(ValueError, match="share the id"):
        capture_edge_cases([frames[0], frames[0]], [uncertain] * 2, out_dir=tmp_path / "q2")
    with pytest.raises(TypeError, match=r"predictions\[0\]"):
        capture_edge_cases(frames[:1], [[0.4]], out_dir=tmp_path / "q2")
    with pytest.raises(FileNotFoundError, match=r"gone\.png"):
        capture_edge_cases([tmp_path / "gone.png"], [uncertain], out_dir=tmp_path / "q2")


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda rows: rows[1].update(status="done"), ValueError, r"manifest.csv:3: status 'done'"),
        (lambda rows: rows[1].update(id=rows[0]["id"]), ValueError, r"manifest.csv:3: id .* line 2"),
        (lambda rows: rows[0].update(score="high"), ValueError, r"manifest.csv:2: 'score'"),
        (lambda rows: rows[1].update(n_detections="-1"), ValueError, r"manifest.csv:3: 'n_detect"),
        (lambda rows: rows[1].update(reasons="boring"), ValueError, r"manifest.csv:3: unknown reason"),
        (lambda rows: rows[1].update(image="images/nope.png"), FileNotFoundError, r"manifest.csv:3: image"),
        (lambda rows: rows[0].update(image="../camera/f1.png"), ValueError, r"manifest.csv:2: 'image'"),
        (lambda rows: [r.pop("status") for r in rows], ValueError, r"manifest.csv:1: missing column\(s\) status"),
    ],
    ids=["status", "duplicate-id", "score", "count", "reason", "missing-image", "outside", "column"],
)  # fmt: skip
def test_bad_manifests_name_the_file_and_line(tmp_path, frames, edit, error, message):
    deployed, _ = _predictions()
    queue_dir = tmp_path / "queue"
    capture_edge_cases(frames, deployed, out_dir=queue_dir)
    manifest = queue_dir / "manifest.csv"
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    edit(rows)
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(error, match=message):
        RelabelQueue(queue_dir)
    with pytest.raises(error, match=message):
        capture_edge_cases(frames, deployed, out_dir=queue_dir)
    with pytest.raises(FileNotFoundError, match=r"is .* a relabel queue"):
        RelabelQueue(tmp_path / "camera")


def test_a_broken_proposal_file_is_named(tmp_path, frames):
    deployed, _ = _predictions()
    queue = capture_edge_cases(frames, deployed, out_dir=tmp_path / "queue").queue
    record = queue.records()[0]
    (queue.root / record.proposals).write_text('{"detections": [{"xyxy": [1, 2]}]}')
    with pytest.raises(ValueError, match=rf"{Path(record.proposals).name}: detections\[0\]"):
        queue.proposals()


# --------------------------------------------------------------------------------------------
# Review


@pytest.fixture
def queue(tmp_path, frames) -> RelabelQueue:
    deployed, reference = _predictions()
    return capture_edge_cases(
        frames, deployed, reference_predictions=reference, out_dir=tmp_path / "queue"
    ).queue


def test_proposals_round_trip_into_the_reviewer(queue):
    proposals = queue.proposals()
    assert [queue.record_for(p.image).id for p in proposals] == [
        "cam-1/f3", "cam-1/f1", "cam-1/f2", "cam-1/f4",
    ]  # fmt: skip
    reviewer = PseudoLabelReviewer(proposals, PROJECT_CLASSES, threshold=0.3)
    f1 = proposals[1].detections
    assert np.allclose(f1.xyxy, [BOX_A, BOX_B]) and f1.class_id.tolist() == [CAR, TRUCK]
    assert np.allclose(f1.confidence, [0.95, 0.45])
    assert reviewer.kept_boxes(1) == [0, 1]
    assert reviewer.kept_boxes(0) == [0], "the reference's box shows for a missed frame"
    assert reviewer.render(3).size == (320, 180)
    assert queue.proposals(status="accepted") == []


def test_review_becomes_a_yolo_folder_and_marks_the_manifest(tmp_path, queue):
    reviewer = PseudoLabelReviewer(queue.proposals(), PROJECT_CLASSES)
    reviewer.accept(0)  # f3: the reference's car
    reviewer.drop_box(1, 1)  # f1: drop the uncertain truck ...
    reviewer.set_class(0, "bus", 1)  # ... and call the car a bus
    reviewer.accept(1)
    reviewer.reject(2)  # f2
    out = tmp_path / "reviewed"
    added = {"cam-1/f3": det([BOX_C], [TRUCK])}
    reviewed = queue.apply_review(reviewer, out_dir=out, added=added)
    assert reviewed.accepted == ("cam-1/f3", "cam-1/f1") and reviewed.rejected == ("cam-1/f2",)
    assert (reviewed.boxes, reviewed.added) == (3, 1)
    assert [p.name for p in reviewed.images] == ["cam-1_f1.png", "cam-1_f3.png"]
    boxes, ids = read_yolo_labels(out / "labels" / "cam-1_f1.txt", 320, 180)
    assert ids.tolist() == [BUS] and np.allclose(boxes, [BOX_A], atol=0.01)
    boxes, ids = read_yolo_labels(out / "labels" / "cam-1_f3.txt", 320, 180)
    assert ids.tolist() == [CAR, TRUCK] and np.allclose(boxes, [BOX_A, BOX_C], atol=0.01)
    status = queue.table()["status"].to_dict()
    assert status == {
        "cam-1/f1": "accepted", "cam-1/f2": "rejected", "cam-1/f3": "accepted",
        "cam-1/f4": "pending",
    }  # fmt: skip
    assert [queue.record_for(p.image).id for p in queue.proposals()] == ["cam-1/f4"]

    # a second review by id: f1 rejected after all (its files go), f4 accepted as background
    queue.apply_review({"cam-1/f1": None, "cam-1/f4": sv.Detections.empty()}, out_dir=out)
    assert not (out / "images" / "cam-1_f1.png").exists()
    assert not (out / "labels" / "cam-1_f1.txt").exists()
    assert (out / "labels" / "cam-1_f4.txt").read_text() == ""
    assert queue.table().loc["cam-1/f1", "status"] == "rejected"


def test_review_errors(tmp_path, queue, frames):
    stranger = PseudoLabelReviewer([(frames[0].image, det([BOX_A], [CAR], [0.9]))], PROJECT_CLASSES)
    with pytest.raises(ValueError, match="not an image of the relabel queue"):
        queue.apply_review(stranger, out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="not in the relabel queue"):
        queue.apply_review({"nobody": None}, out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="is the queue itself"):
        queue.apply_review({}, out_dir=queue.root)


def test_review_with_truth_keeps_fixes_drops_and_adds(tmp_path, queue):
    truth = {
        "cam-1/f3": det([BOX_A], [CAR]),
        "cam-1/f1": det(
            [[12.0, 10.0, 50.0, 40.0], BOX_C], [TRUCK, CAR]
        ),  # A is a truck; B is nothing
        "cam-1/f2": det([BOX_C], [BUS]),
        "cam-1/f4": det([BOX_A, BOX_B], [CAR, CAR]),
    }
    reviewer, added = review_with_truth(queue, truth)
    assert reviewer.progress.accepted == 4
    by_id = {queue.record_for(p.image).id: i for i, p in enumerate(reviewer.proposals)}
    f1 = reviewer.kept_detections(by_id["cam-1/f1"])
    assert f1.class_id.tolist() == [TRUCK] and np.allclose(f1.xyxy, [BOX_A])
    assert added["cam-1/f1"].class_id.tolist() == [CAR]
    assert np.allclose(added["cam-1/f4"].xyxy, [BOX_B])
    assert len(reviewer.kept_detections(by_id["cam-1/f4"])) == 1, "the reference's bus dropped"
    assert "cam-1/f2" not in added and "cam-1/f3" not in added
    reviewed = queue.apply_review(reviewer, out_dir=tmp_path / "reviewed", added=added)
    assert reviewed.boxes == sum(len(t) for t in truth.values())
    nothing_left, none_added = review_with_truth(queue, {})  # every frame is decided now
    assert nothing_left.proposals == () and none_added == {}


def test_review_with_truth_needs_truth_for_every_frame(queue):
    with pytest.raises(KeyError, match="no true boxes"):
        review_with_truth(queue, {"cam-1/f3": det()})


# --------------------------------------------------------------------------------------------
# The merged dataset


def _base_dataset(root: Path) -> Path:
    for split, names in {"train": ["a", "b", "c"], "val": ["v"], "test": ["t"]}.items():
        for name in names:
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48)).save(root / "images" / split / f"{name}.jpg")
            (root / "labels" / split / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    data = {"train": "images/train", "val": "images/val", "test": "images/test",
            "names": {0: "car", 1: "truck"}}  # fmt: skip
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root / "data.yaml"


def _reviewed(root: Path, names=("n1", "n2"), label="1 0.5 0.5 0.3 0.3\n") -> Path:
    for name in names:
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (9, 9, 9)).save(root / "images" / f"{name}.jpg")
        (root / "labels" / f"{name}.txt").write_text(label)
    return root


def test_merged_data_yaml_keeps_val_and_never_edits_the_original(tmp_path):
    base_yaml = _base_dataset(tmp_path / "base")
    reviewed = _reviewed(tmp_path / "reviewed")
    before = _files(tmp_path / "base")
    merged = merged_data_yaml(base_yaml, reviewed, out_dir=tmp_path / "merged", repeat=2)
    assert _files(tmp_path / "base") == before
    data = yaml.safe_load(merged.read_text())
    original = yaml.safe_load(base_yaml.read_text())
    assert (data["val"], data["test"], data["names"]) == (
        original["val"], original["test"], original["names"],
    )  # fmt: skip
    assert Path(data["path"]) == (tmp_path / "base").resolve()
    listed = [Path(p) for p in Path(data["train"]).read_text().splitlines()]
    merged_dir = (tmp_path / "merged").resolve()
    assert all(p.is_absolute() and p.parent == merged_dir / "images" for p in listed)
    assert [p.name.split("-", 1)[1] for p in listed] == ["n1.jpg", "n2.jpg"] * 2 + [
        "a.jpg", "b.jpg", "c.jpg",
    ]  # fmt: skip
    assert listed[0].read_bytes() == (reviewed / "images" / "n1.jpg").read_bytes()
    assert (
        listed[-1].read_bytes() == (tmp_path / "base" / "images" / "train" / "c.jpg").read_bytes()
    )
    labels = [merged_dir / "labels" / f"{p.stem}.txt" for p in listed]
    assert labels[0].read_text() == "1 0.5 0.5 0.3 0.3\n" and labels[-1].read_text().startswith(
        "0 "
    )
    sample = merged_data_yaml(base_yaml, reviewed, out_dir=tmp_path / "m2", base_images=1)
    assert len(Path(yaml.safe_load(sample.read_text())["train"]).read_text().splitlines()) == 3


def test_merged_data_yaml_errors(tmp_path):
    base_yaml = _base_dataset(tmp_path / "base")
    with pytest.raises(ValueError, match="no reviewed images"):
        merged_data_yaml(base_yaml, tmp_path / "nothing", out_dir=tmp_path / "m")
    bad = _reviewed(tmp_path / "bad", names=("x",), label="0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"x.txt:2: class id 7"):
        merged_data_yaml(base_yaml, bad, out_dir=tmp_path / "m")
    (tmp_path / "bad" / "labels" / "x.txt").unlink()
    with pytest.raises(FileNotFoundError, match="has no label file"):
        merged_data_yaml(base_yaml, bad, out_dir=tmp_path / "m")
    (tmp_path / "broken.yaml").write_text("train: images/train\nnames: [car]\n")
    with pytest.raises(ValueError, match=r"(?s)broken\.yaml:.*key 'val' is missing"):
        merged_data_yaml(
            tmp_path / "broken.yaml", _reviewed(tmp_path / "r"), out_dir=tmp_path / "m"
        )


# --------------------------------------------------------------------------------------------
# Comparison and demonstration data


def test_comparison_table_and_plot():
    rows = [
        {"set": s, "model": m, "map50": v, "map50_95": v / 2}
        for s, m, v in [("night", "before", 0.4), ("night", "after", 0.55),
                        ("day", "before", 0.6), ("day", "after", 0.58)]
    ]  # fmt: skip
    comparison = ModelComparison(rows=rows, models=("before", "after"))
    table = comparison.table()
    assert list(table.index) == ["night", "day"]
    assert table.loc["night", "change"] == pytest.approx(0.15)
    assert comparison.change("day") == pytest.approx(-0.02)
    assert comparison.table("map50_95").loc["night", "after"] == pytest.approx(0.275)
    with pytest.raises(KeyError, match="unknown metric"):
        comparison.table("f2")
    figure = comparison.plot()
    assert isinstance(figure, Figure) and len(figure.axes[0].patches) == 4


def test_condition_set_writes_frames_with_their_truth(tmp_path):
    night = condition_set(
        tmp_path / "night", condition="night", production=3, validation=2, cameras=[0, 1],
        val_cameras=[2], width=160, height=96,
    )  # fmt: skip
    frames = night.frames("production")
    assert [f.camera for f in frames] == ["cam-00", "cam-01", "cam-00"]
    assert all(f.image.is_file() for f in frames)
    hours = [int(f.captured_at[11:13]) for f in frames]
    assert all(h >= 21 or h < 5 for h in hours)
    truth = night.truth("production")
    assert set(truth) == {f.id for f in frames}
    assert sum(map(len, truth.values())) > 0
    assert [f.camera for f in night.frames("val")] == ["cam-02", "cam-02"]
    data = yaml.safe_load(night.data_yaml.read_text())
    assert data["val"] == "images/val" and data["names"][0] == "car"
    again = condition_set(
        tmp_path / "again", condition="night", production=3, validation=2, cameras=[0, 1],
        val_cameras=[2], width=160, height=96,
    )  # fmt: skip
    assert (again.root / "images/production" / frames[0].image.name).read_bytes() == frames[
        0
    ].image.read_bytes(), "deterministic for a seed"
    smaller = condition_set(
        tmp_path / "night", production=1, validation=1, cameras=[3], val_cameras=[4], width=160,
        height=96,
    )  # fmt: skip
    assert [p.name for p in sorted((smaller.root / "images" / "production").iterdir())] == [
        "cam-03_night_production_00000.jpg"
    ], "the earlier frames are gone, not mixed in"
    assert len(smaller.truth("val")) == 1
    with pytest.raises(ValueError, match="condition"):
        condition_set(tmp_path / "x", condition="snow")


# --------------------------------------------------------------------------------------------
# The whole loop, with a real (tiny) model


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tiny_model):
    """The session's tiny model (trained as notebook 05 trains the real one), its data, a folder.

    The weights are copied into the folder's ``models/``, where this loop's workspace keeps them
    (the retraining trusts weights from its own models folder only).
    """
    work = tmp_path_factory.mktemp("relabel-loop")
    weights = work / "models" / "best.pt"
    weights.parent.mkdir()
    shutil.copy2(tiny_model.weights, weights)
    return work, tiny_model.data, weights


def test_the_loop_end_to_end(deployed):
    """Capture -> review -> retrain -> compare, with real Ultralytics runs.

    A model this small (2 epochs at 64 px) cannot show that the loop improves night mAP: its
    mAP is near zero before and after, and a model that can takes minutes to train. The
    improvement is measured at the smoke profile's settings by a manual run (the numbers are
    in the module docstring); this test holds the mechanics: the frames flow through, the run
    starts from the deployed weights with the fine-tuning settings, the original dataset is
    never written to (not even Ultralytics' label caches), and both kinds of evaluation set
    give the same scores.
    """
    work, data, before = deployed
    night = condition_set(
        work / "night", production=6, validation=4, cameras=[0, 1], val_cameras=[2]
    )
    frames = night.frames("production")
    predictions = predict_yolo(before, [f.image for f in frames], imgsz=TINY.imgsz)
    # an untrained model is unsure of everything: every frame with a box is queued
    capture = capture_edge_cases(frames, predictions, out_dir=work / "queue", low=0.0, high=0.9)
    assert capture.added and len(capture.added) == sum(1 for p in predictions if len(p))
    reviewer, added = review_with_truth(capture.queue, night.truth("production"))
    reviewed = capture.queue.apply_review(reviewer, out_dir=work / "reviewed", added=added)
    truth = night.truth("production")
    assert reviewed.boxes == sum(len(truth[i]) for i in reviewed.accepted) > 0

    original = _files(data.root)
    result = retrain_with_queue(
        before, data.data_yaml, reviewed.root, out_dir=work / "models", profile=TINY, epochs=1,
        workers=0,
    )  # fmt: skip
    assert _files(data.root) == original, "the original dataset is only read"
    assert str(Path(before).resolve()) in result.run.model_note, "fine-tuned from the weights"
    assert result.run.settings["warmup_epochs"] == 0
    assert result.run.settings["lr0"] == pytest.approx(TINY.lr0 / 10), "a tenth, as in 05"
    assert result.weights.is_file() and result.weights.read_bytes() != Path(before).read_bytes()
    base_train = min(150, len(list((data.root / "images" / "train").glob("*.jpg"))))  # a sample
    assert (result.reviewed_images, result.base_images) == (len(reviewed.accepted), base_train)
    listed = Path(yaml.safe_load(result.data_yaml.read_text())["train"]).read_text().split()
    assert len(listed) == 2 * len(reviewed.accepted) + base_train  # each reviewed frame twice

    paths, true_boxes, _ = load_ground_truth(night.root, "val")
    comparison = compare_models(
        before, result.weights, {"night": night.data_yaml, "night (paths)": (paths, true_boxes)},
        imgsz=TINY.imgsz,
    )  # fmt: skip
    table = comparison.table()
    assert list(table.columns) == ["before", "after", "change"]
    assert table.loc["night"].tolist() == table.loc["night (paths)"].tolist()
    assert ((table[["before", "after"]] >= 0) & (table[["before", "after"]] <= 1)).all().all()
    assert table.loc["night", "change"] == pytest.approx(
        table.loc["night", "after"] - table.loc["night", "before"]
    )
