"""Training curves: losses and validation mAP per epoch, drawn after a run or live during one.

``results.csv`` (one row per epoch, Ultralytics' columns) is the record; :func:`plot_training`
draws it, and :class:`LiveCurves` redraws in place while a notebook trains (pass it as
``on_epoch`` to :func:`tcv_helpers.model.train.train`). :func:`read_tensorboard` reads the same
metrics back from a run's TensorBoard event files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd

LOSS_PREFIX = "train/"
MAP_COLUMNS = ("metrics/mAP50(B)", "metrics/mAP50-95(B)")


def read_results(results: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Reads Ultralytics' ``results.csv`` (or cleans a DataFrame of it): stripped column names."""
    import pandas as pd

    frame = results if isinstance(results, pd.DataFrame) else pd.read_csv(results)
    return frame.rename(columns=lambda c: str(c).strip())


def read_tensorboard(log_dir: str | os.PathLike) -> pd.DataFrame:
    """The scalars a run logged for TensorBoard, read back from its event files.

    :func:`tcv_helpers.model.train.train` logs every epoch's metrics under Ultralytics' names
    (``train/box_loss``, ``metrics/mAP50(B)``, ...), so :func:`plot_training` draws the result
    exactly as it draws ``results.csv``: what TensorBoard would show, without a server.

    Args:
        log_dir: A run's ``tensorboard/`` folder (every event file in it is read; where a
            resumed run logged an epoch twice, the later value counts).

    Returns:
        One row per epoch (column ``epoch``), one column per logged scalar.

    Raises:
        FileNotFoundError: If the folder holds no TensorBoard event file.
    """
    from pathlib import Path

    import pandas as pd
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(log_dir)
    files = sorted(folder.glob("events.out.tfevents.*"), key=lambda f: f.stat().st_mtime)
    if not files:
        raise FileNotFoundError(
            f"{folder} holds no TensorBoard event files (events.out.tfevents.*)."
        )
    values: dict[tuple[int, str], float] = {}
    for file in files:  # oldest first: a later run's value for the same epoch replaces it
        events = EventAccumulator(str(file), size_guidance={"scalars": 0})
        events.Reload()
        for tag in events.Tags().get("scalars", []):
            for event in events.Scalars(tag):
                values[(int(event.step), tag)] = float(event.value)
    frame = pd.Series(values).unstack() if values else pd.DataFrame()
    frame.index.name = "epoch"
    return frame.reset_index().sort_values("epoch", ignore_index=True)


def _draw(fig: Figure, frame: pd.DataFrame) -> Figure:
    fig.clear()
    losses, quality = fig.subplots(1, 2)
    for column in [c for c in frame.columns if c.startswith(LOSS_PREFIX)]:
        losses.plot(
            frame["epoch"], frame[column], marker=".", label=column.removeprefix(LOSS_PREFIX)
        )
    losses.set_xlabel("epoch")
    losses.set_title("training losses")
    if losses.lines:
        losses.legend()
    for column in MAP_COLUMNS:
        if column in frame:
            # Epochs without validation are stored as 0 (or missing): they are not measurements.
            points = frame[frame[column].notna() & (frame[column] > 0)]
            quality.plot(points["epoch"], points[column], marker="o", label=column.split("/")[1])
    quality.set_xlabel("epoch")
    quality.set_ylim(0, 1)
    quality.set_title("validation mAP")
    if quality.lines:
        quality.legend()
    fig.tight_layout()
    return fig


def plot_training(results: str | os.PathLike | pd.DataFrame) -> Figure:
    """Losses and validation mAP per epoch, from a run's ``results.csv`` (path or DataFrame).

    Args:
        results: ``results.csv`` of a run, or its DataFrame (e.g. ``TrainResult.history``).

    Returns:
        Two panels: training losses, and mAP50 / mAP50-95 for the validated epochs.
    """
    return _draw(Figure(figsize=(11, 3.8)), read_results(results))


class LiveCurves:
    """Training curves that redraw in place while a notebook trains.

    Pass the object as ``on_epoch`` (it is callable); each epoch adds a row and redraws the
    figure. In a notebook the figure is shown once and then updated through an IPython display
    handle; elsewhere nothing is shown and the figure is just kept up to date.

    Example::

        curves = LiveCurves()
        train(data_yaml, profile=cfg.profile, out_dir=models, on_epoch=curves)
    """

    def __init__(
        self,
        *,
        show: bool | None = None,
        figsize: tuple[float, float] = (11, 3.8),
        draw: Callable[[Figure, pd.DataFrame], Figure] | None = None,
    ):
        """Creates the figure.

        Args:
            show: Display the figure (None: only inside IPython/Jupyter).
            figsize: Figure size in inches.
            draw: Draws the epochs so far into the figure (default: YOLO's losses and mAP;
                :func:`tcv_helpers.model.classify.draw_history` for a classifier).
        """
        self.draw = draw or _draw
        self.figure = Figure(figsize=figsize)
        self.rows: list[dict[str, float]] = []
        self.show = _in_ipython() if show is None else show
        self.handle: Any = None

    def update(self, epoch: int, metrics: Mapping[str, float]) -> Figure:
        """Adds one epoch's metrics and redraws.

        Args:
            epoch: 1-based epoch number (a repeated epoch replaces the earlier row: a resume).
            metrics: Metric name to value, as given to ``on_epoch``.

        Returns:
            The redrawn figure.
        """
        self.rows = [r for r in self.rows if r["epoch"] != epoch]
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in metrics.items()}})
        self.rows.sort(key=lambda r: r["epoch"])
        self.draw(self.figure, self.frame())
        if self.show:
            from IPython.display import display

            if self.handle is None:
                self.handle = display(self.figure, display_id=True)
            else:
                self.handle.update(self.figure)
        return self.figure

    __call__ = update

    def frame(self) -> pd.DataFrame:
        """The epochs seen so far, one row each (the columns of ``results.csv``)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=None if self.rows else ["epoch"])


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None
