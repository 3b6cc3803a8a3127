"""The custom crop classifier again, in Keras 3 on the PyTorch backend (notebook 04, Step 6).

The same network as :class:`tcv_helpers.model.classify.SmallCNN`, built from Keras layers, and
trained by ``model.fit`` instead of the hand-written loop of
:func:`tcv_helpers.model.classify.fit`: the optimiser, the learning-rate schedule, the
validation pass, early stopping and keeping the best weights become arguments and callbacks.
Keras runs on PyTorch here (``KERAS_BACKEND=torch``): no TensorFlow is needed.
"""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tcv_helpers.env import Availability
from tcv_helpers.model.classify import Crops, _tensor

if TYPE_CHECKING:
    import pandas as pd

#: The backend Keras is asked for; it must be set before Keras is first imported.
BACKEND = "torch"


def keras_status() -> Availability:
    """Whether Keras 3 can run here on the PyTorch backend, without importing it.

    Returns:
        ``available`` and one sentence: the version, or why not (with what to do).
    """
    if importlib.util.find_spec("keras") is None:
        return Availability(False, "Keras is not installed: pip install keras (3.x).")
    from importlib.metadata import version

    found = version("keras")
    if int(found.split(".")[0]) < 3:
        return Availability(False, f"Keras {found} is installed; the course needs Keras 3.")
    chosen = os.environ.get("KERAS_BACKEND", BACKEND)
    if chosen != BACKEND:
        return Availability(
            False, f"KERAS_BACKEND is {chosen!r}; set it to 'torch' before Keras is imported."
        )
    return Availability(True, f"Keras {found} on the PyTorch backend.")


def _keras() -> Any:
    """Keras, imported on the PyTorch backend (refused, with the reason, otherwise)."""
    os.environ.setdefault("KERAS_BACKEND", BACKEND)
    status = keras_status()
    if not status.available:
        raise ImportError(status.message)
    import keras

    if keras.backend.backend() != BACKEND:  # imported earlier in this process with another
        raise ImportError(
            f"Keras was imported on the {keras.backend.backend()!r} backend before; restart the "
            "kernel so that it starts on 'torch'."
        )
    return keras


def small_cnn(num_classes: int, *, size: int, width: int = 24, dropout: float = 0.2) -> Any:
    """:class:`~tcv_helpers.model.classify.SmallCNN` in Keras layers.

    Channels first, as PyTorch lays images out: on the PyTorch backend Keras' default (channels
    last) transposes every image before each convolution and pooling (measured: twice the time
    per step on 2 cores).
    """
    keras = _keras()
    first = "channels_first"
    layers = [keras.Input((3, size, size))]
    for i in range(3):
        layers += [
            keras.layers.Conv2D(width * 2**i, 3, padding="same", use_bias=False, data_format=first),
            # PyTorch's batch-norm defaults (Keras' momentum of 0.99 averages over about 100
            # steps: a short run's statistics would still be those of its first batches).
            keras.layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5),
            keras.layers.ReLU(), keras.layers.MaxPooling2D(2, data_format=first),
        ]  # fmt: skip
    layers += [
        keras.layers.GlobalAveragePooling2D(data_format=first), keras.layers.Dropout(dropout),
        keras.layers.Dense(num_classes),
    ]  # fmt: skip
    return keras.Sequential(layers, name="small_cnn")


def _inputs(crops: Crops) -> np.ndarray:
    """Crops as float32 NCHW, normalised exactly as the PyTorch loop feeds them."""
    return _tensor(crops.images).numpy()


@dataclass
class KerasRun:
    """A ``model.fit`` run.

    Attributes:
        model: The Keras model, with the best epoch's weights.
        history: One row per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``,
            ``val_acc`` (the names of :func:`tcv_helpers.model.classify.fit`).
        best_epoch: The epoch of the best validation accuracy.
        stopped_at: The last epoch run.
        seconds: Wall-clock seconds of ``fit``.
        val_acc: Validation accuracy of the restored best weights.
    """

    model: Any
    history: pd.DataFrame
    best_epoch: int
    stopped_at: int
    seconds: float
    val_acc: float


def keras_fit(
    train: Crops,
    val: Crops,
    *,
    epochs: int = 20,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    patience: int = 5,
    batch: int = 64,
    dropout: float = 0.2,
    seed: int = 0,
) -> KerasRun:
    """Trains the Keras network with ``model.fit``: what :func:`~tcv_helpers.model.classify.fit`
    writes out by hand, as arguments (AdamW, a cosine schedule, the validation data) and a
    callback (``EarlyStopping`` with ``restore_best_weights``).

    Args:
        train: Training crops.
        val: Validation crops (other cameras).
        epochs: Most epochs.
        lr: Peak learning rate.
        weight_decay: AdamW's weight decay.
        patience: Epochs without a better validation accuracy before stopping.
        batch: Crops per step.
        dropout: Dropout before the last layer.
        seed: Seed of the weights, the shuffling and the dropout (``keras.utils.set_random_seed``).

    Returns:
        The run.

    Raises:
        ImportError: If Keras 3 cannot run on the PyTorch backend here (the reason is given).
        ValueError: If ``train`` or ``val`` is empty.
    """
    import pandas as pd

    keras = _keras()
    if not len(train) or not len(val):
        raise ValueError(
            f"keras_fit needs crops to train and to validate on: {len(train)} and {len(val)}."
        )
    keras.utils.set_random_seed(seed)
    model = small_cnn(len(train.names), size=train.images.shape[-1], dropout=dropout)
    steps = epochs * -(-len(train) // batch)
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True
    )
    x_val, y_val = _inputs(val), val.labels
    start = time.perf_counter()
    fitted = model.fit(
        _inputs(train), train.labels, batch_size=batch, epochs=epochs,
        validation_data=(x_val, y_val), callbacks=[stop], verbose=0,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    logged = fitted.history
    history = pd.DataFrame({
        "epoch": np.arange(1, len(logged["loss"]) + 1), "train_loss": logged["loss"],
        "train_acc": logged["accuracy"], "val_loss": logged["val_loss"],
        "val_acc": logged["val_accuracy"],
    })  # fmt: skip
    predicted = np.argmax(model.predict(x_val, batch_size=256, verbose=0), axis=1)
    return KerasRun(
        model=model, history=history, best_epoch=int(history["val_acc"].idxmax()) + 1,
        stopped_at=len(history), seconds=seconds, val_acc=float((predicted == y_val).mean()),
    )  # fmt: skip
