"""Hyper-parameter search (notebook 07): grid, random and Bayesian search with Optuna.

* :func:`tune` runs one search: Optuna's TPE sampler (Bayesian), random or grid, every trial a
  short training validated after each epoch, a trial below the median of earlier trials at the
  same epoch stopped early (Optuna's median pruner).
* :func:`compare_searches` runs grid, random and TPE on the same trial budget and the same
  pruning rule, so only the way the next trial is proposed differs, and plots each one's best
  mAP50 so far against the trial number.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    import pandas as pd

#: The methods :func:`compare_searches` runs, in display order.
METHODS: tuple[str, ...] = ("grid", "random", "tpe")
#: How each method is named in tables and plots.
METHOD_NAMES = {"grid": "grid", "random": "random", "tpe": "Bayesian (TPE)"}


#: The search space of :func:`tune`: learning rate (log scale), batch size, warm-up epochs and
#: horizontal-flip probability.
SEARCH_SPACE: dict[str, Any] = {
    "lr0": ("float", 3e-4, 1e-2, True),
    "batch": ("categorical", [8, 16, 32]),
    "warmup_epochs": ("float", 0.0, 3.0, False),
    "fliplr": ("float", 0.0, 0.5, False),
}


@dataclass
class TuneResult:
    """A hyper-parameter search.

    Attributes:
        study: The Optuna study (every trial, its parameters, value and state).
        best_params: The best trial's parameters.
        best_value: Its validation mAP50.
        seconds: Wall-clock seconds of the search.
    """

    study: Any
    best_params: dict[str, Any]
    best_value: float
    seconds: float

    def table(self) -> pd.DataFrame:
        """One row per trial: number, state (complete or pruned), mAP50 and parameters."""
        import pandas as pd

        rows = []
        for trial in self.study.trials:
            rows.append(
                {"trial": trial.number, "state": trial.state.name.lower(), "map50": trial.value,
                 "epochs_run": len(trial.intermediate_values),
                 "replayed": bool(trial.user_attrs.get("replayed")), **trial.params}
            )  # fmt: skip
        return pd.DataFrame(rows).set_index("trial")

    def plot(self) -> Figure:
        """The search: mAP50 per trial with the best so far, and mAP50 against the learning rate."""
        table = self.table()
        fig = Figure(figsize=(11, 3.6))
        history, space = fig.subplots(1, 2)
        done = table[table["state"] == "complete"]
        pruned = table[table["state"] == "pruned"]
        history.plot(done.index, done["map50"], "o", label="complete")
        if len(pruned):
            last = [max(t.intermediate_values.values(), default=0) for t in self.study.trials
                    if t.state.name == "PRUNED"]  # fmt: skip
            history.plot(pruned.index, last, "x", color="tab:red", label="pruned (last value)")
        history.plot(done.index, done["map50"].cummax(), "-", color="tab:green", label="best")
        history.set_xlabel("trial")
        history.set_ylabel("validation mAP50")
        history.legend()
        if "lr0" in table:
            space.scatter(done["lr0"], done["map50"], c=done.index, cmap="viridis")
            space.set_xscale("log")
            space.set_xlabel("lr0 (colour: trial number)")
            space.set_ylabel("validation mAP50")
        fig.tight_layout()
        return fig


def _suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        if spec[0] == "float":
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[3])
        elif spec[0] == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        elif spec[0] == "categorical":
            params[name] = trial.suggest_categorical(name, spec[1])
        else:
            raise ValueError(f"Search space entry {name!r}: unknown kind {spec[0]!r}.")
    return params


def tune(
    data_yaml: str | os.PathLike,
    *,
    profile: Any,
    out_dir: str | os.PathLike,
    n_trials: int = 8,
    epochs: int = 3,
    fraction: float = 1.0,
    space: dict[str, Any] | None = None,
    sampler: str = "tpe",
    seed: int = 0,
    timeout: float | None = None,
    progress: bool = False,
    model: str | os.PathLike | None = None,
    trusted_dirs: tuple[str | os.PathLike, ...] = (),
    trained: dict[tuple, Any] | None = None,
) -> TuneResult:
    """Bayesian hyper-parameter search with Optuna, stopping bad trials early.

    Each trial trains for ``epochs`` with validation after every epoch and reports mAP50 to
    Optuna; the median pruner stops a trial whose mAP50 is below the median of earlier trials at
    the same epoch. ``sampler="tpe"`` is Bayesian (a model of which settings score well proposes
    the next ones), ``"random"`` is random search, ``"grid"`` tries every combination of the
    categorical values (float ranges are then sampled at their ends and middle).

    Args:
        data_yaml: The dataset.
        profile: The profile (settings not searched come from it).
        out_dir: Folder for the trial runs (``trial-<n>/``).
        n_trials: Trials to run.
        epochs: Epochs per trial (short: the search ranks settings, it does not finish training).
        fraction: Share of the training images each trial uses.
        space: Parameter name -> spec (see :data:`SEARCH_SPACE`).
        sampler: ``"tpe"``, ``"random"`` or ``"grid"``.
        seed: Seed of the sampler and of every trial's training.
        timeout: Stop starting new trials after this many seconds.
        progress: Show Optuna's progress bar.
        model: Where every trial starts (default: the profile's model). Trained weights make a
            fine-tuning search, which ranks settings in a few epochs where a search from random
            weights scores zero everywhere (the smoke profile's case).
        trusted_dirs: Folders whose ``.pt`` files count as trained by this course (``model``
            must be in one of them, or in ``out_dir``; see
            :func:`tcv_helpers.model.train.resolve_model`).
        trained: Completed trials shared between searches of the same budget (settings ->
            per-epoch mAP50 and result; :func:`compare_searches` passes one). A trial whose
            settings were already trained is replayed, not trained again: training is
            deterministic for a seed, and the replay reports the same mAP50 per epoch, so the
            pruner decides as it would have. Such a trial's ``replayed`` attribute says so.

    Returns:
        The search; :attr:`TuneResult.best_params` are the settings to train with.

    Raises:
        ValueError: For an unknown sampler or an empty search space.
    """
    import optuna

    from tcv_helpers.config import with_overrides
    from tcv_helpers.model.train import train

    space = dict(space or SEARCH_SPACE)
    if not space:
        raise ValueError("The search space is empty.")
    if sampler == "tpe":
        # A third of the budget starts at random, the rest is proposed by the model: with
        # start-up trials equal to the budget, TPE would be random search under another name.
        chosen = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, n_trials // 3))
    elif sampler == "random":
        chosen = optuna.samplers.RandomSampler(seed=seed)
    elif sampler == "grid":
        grid = {
            k: (v[1] if v[0] == "categorical" else [v[1], (v[1] + v[2]) / 2, v[2]])
            for k, v in space.items()
        }
        chosen = optuna.samplers.GridSampler(grid, seed=seed)
    else:
        raise ValueError(f"Unknown sampler {sampler!r}: use 'tpe', 'random' or 'grid'.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=chosen,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )  # fmt: skip
    validated = with_overrides(profile, validate_each_epoch=True, epochs=epochs)

    def objective(trial: Any) -> float:
        params = _suggest(trial, space)
        key = (str(data_yaml), str(model), epochs, fraction, seed, *sorted(params.items()))

        def report(epoch: int, metrics: dict[str, float]) -> None:
            if "metrics/mAP50(B)" in metrics:
                trial.report(metrics["metrics/mAP50(B)"], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"mAP50 below the median at epoch {epoch}")

        if trained is not None and key in trained:
            per_epoch, value = trained[key]
            trial.set_user_attr("replayed", True)
            for epoch, map50 in per_epoch:
                report(epoch, {"metrics/mAP50(B)": map50})
            return value
        seen: list[tuple[int, float]] = []

        def record(epoch: int, metrics: dict[str, float]) -> None:
            if "metrics/mAP50(B)" in metrics:
                seen.append((epoch, metrics["metrics/mAP50(B)"]))
            report(epoch, metrics)

        result = train(
            data_yaml, profile=validated, out_dir=out_dir, name=f"trial-{trial.number}",
            publish_as=None, seed=seed, on_epoch=record, fraction=fraction, model=model,
            trusted_dirs=trusted_dirs, **params,
        )  # fmt: skip
        if trained is not None:
            trained[key] = (seen, result.map50)
        return result.map50

    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, show_progress_bar=progress)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    return TuneResult(
        study=study,
        best_params=dict(best.params) if best else {},
        best_value=float(best.value) if best else math.nan,
        seconds=time.perf_counter() - start,
    )


@dataclass
class SearchComparison:
    """Several search methods run on the same budget (:func:`compare_searches`).

    Attributes:
        results: Method (``grid``, ``random``, ``tpe``) -> its :class:`TuneResult`.
    """

    results: dict[str, TuneResult] = field(default_factory=dict)

    @property
    def best_method(self) -> str:
        """The method whose best trial scored highest (ties: the earlier in :data:`METHODS`)."""
        scored = {m: r.best_value for m, r in self.results.items() if not math.isnan(r.best_value)}
        if not scored:
            raise ValueError("No search completed a trial: every trial was pruned or failed.")
        return max(scored, key=lambda m: (scored[m], -list(self.results).index(m)))

    @property
    def best(self) -> TuneResult:
        """The search of :attr:`best_method` (its ``best_params`` are the settings to train with)."""
        return self.results[self.best_method]

    def best_so_far(self) -> pd.DataFrame:
        """Best mAP50 after each trial (rows: trial number), one column per method. A pruned
        trial leaves the best as it was: its partial mAP50 is not a result."""
        import pandas as pd

        columns = {}
        for method, result in self.results.items():
            values = [
                t.value if t.state.name == "COMPLETE" and t.value is not None else math.nan
                for t in result.study.trials
            ]
            columns[METHOD_NAMES.get(method, method)] = pd.Series(values).cummax().ffill()
        frame = pd.DataFrame(columns)
        frame.index.name = "trial"
        return frame

    def table(self) -> pd.DataFrame:
        """One row per method: trials (complete, pruned, replayed), best mAP50, seconds, best
        settings."""
        import pandas as pd

        rows = []
        for method, result in self.results.items():
            states = [t.state.name for t in result.study.trials]
            rows.append(
                {"method": METHOD_NAMES.get(method, method), "trials": len(states),
                 "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                 "replayed": sum(bool(t.user_attrs.get("replayed")) for t in result.study.trials),
                 "best_map50": result.best_value, "seconds": round(result.seconds, 1),
                 "best_params": result.best_params}
            )  # fmt: skip
        return pd.DataFrame(rows).set_index("method")

    def metrics(self) -> dict[str, float]:
        """Each method's best mAP50, for ``record_metrics`` (``search_best_map50_<method>``)."""
        return {
            f"search_best_map50_{m}": round(r.best_value, 4)
            for m, r in self.results.items()
            if not math.isnan(r.best_value)
        }

    def plot(self) -> Figure:
        """Best mAP50 so far against the trial number, one line per method, in one plot."""
        curves = self.best_so_far()
        fig = Figure(figsize=(7, 3.6))
        ax = fig.subplots()
        for name in curves:
            ax.plot(curves.index, curves[name], marker="o", label=name)
        ax.set_xlabel("trial")
        ax.set_ylabel("best validation mAP50 so far")
        ax.set_xticks(list(curves.index))
        ax.set_title("Search methods on the same budget")
        ax.legend()
        fig.tight_layout()
        return fig


def compare_searches(
    data_yaml: str | os.PathLike,
    *,
    profile: Any,
    out_dir: str | os.PathLike,
    n_trials: int = 6,
    methods: tuple[str, ...] = METHODS,
    **options: Any,
) -> SearchComparison:
    """Runs :func:`tune` once per method on the same budget: the same trials, epochs, images,
    search space, seed and pruning rule; only the sampler differs. Settings a method proposes
    that an earlier method already trained are replayed from that training (random search and
    TPE's random start-up propose the same first trials for a seed).

    Args:
        data_yaml: The dataset.
        profile: The profile (settings not searched come from it).
        out_dir: Folder for the searches (``<method>/trial-<n>/``).
        n_trials: Trials per method.
        methods: Which of :data:`METHODS` to run, in this order.
        **options: Passed to :func:`tune` (``epochs``, ``fraction``, ``space``, ``seed``,
            ``model``, ``trusted_dirs``, ...).

    Returns:
        The comparison; :attr:`SearchComparison.best` is the search to take settings from.

    Raises:
        ValueError: For an unknown method (before any training), or one given twice.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(set(methods)) != len(methods) or not methods:
        raise ValueError(
            f"methods must be distinct names among {', '.join(METHODS)}, got {list(methods)}."
        )
    folder = Path(out_dir)
    results = {}
    trained: dict[tuple, Any] = {}  # a trial two methods both propose is trained once
    for method in methods:
        results[method] = tune(
            data_yaml, profile=profile, out_dir=folder / method, n_trials=n_trials,
            sampler=method, trained=trained, **options,
        )  # fmt: skip
    return SearchComparison(results)
