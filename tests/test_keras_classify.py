"""The custom classifier in Keras 3 on the PyTorch backend (notebook 04, Step 6)."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import toy_crops

from tcv_helpers.model.keras_classify import keras_status

pytestmark = pytest.mark.skipif(not keras_status(), reason=keras_status().message)


def test_model_fit_trains_the_same_network_and_stops_early():
    from tcv_helpers.model.keras_classify import keras_fit

    train, val = toy_crops()
    run = keras_fit(train, val, epochs=30, patience=3, lr=1e-2, seed=0)
    import keras

    assert keras.backend.backend() == "torch", "no TensorFlow: Keras runs on PyTorch"
    assert run.val_acc == 1.0 and run.history["val_acc"].max() == 1.0
    assert run.stopped_at < 30 and run.stopped_at - run.best_epoch <= 3, "EarlyStopping"
    assert list(run.history.columns) == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc"]
    convs = [layer for layer in run.model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [24, 48, 96], "SmallCNN's blocks"
    again = keras_fit(train, val, epochs=2, patience=3, lr=1e-2, seed=0)
    twice = keras_fit(train, val, epochs=2, patience=3, lr=1e-2, seed=0)
    assert np.allclose(again.history["train_loss"], twice.history["train_loss"]), "seeded"
    with pytest.raises(ValueError, match="crops to train and to validate"):
        keras_fit(train, val.subset([]))


def test_status_says_why_not(monkeypatch):
    import importlib.util

    from tcv_helpers.model import keras_classify

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    status = keras_classify.keras_status()
    assert not status and "set it to 'torch'" in status.message
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "not installed" in keras_classify.keras_status().message
