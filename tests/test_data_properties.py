"""Property-based tests: for any label vectors (absent classes, a single class, stray values) the
npz and folder loaders either load the right classes with labels intact or refuse with a
CnnvitError, and `metrics.compute` returns in-range values that agree with scikit-learn."""

from __future__ import annotations

import json
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import accuracy_score

from cnnvit import data
from cnnvit.errors import CnnvitError
from cnnvit.metrics import compute

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
labels = st.lists(st.integers(0, 5), min_size=1, max_size=10)
split_labels = st.tuples(labels, labels, labels)


@pytest.fixture(autouse=True, scope="module")
def _own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """md5 caches go to a temporary cnnvit cache, never the user's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("CNNVIT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


def load_or_refusal(spec: str, strict: bool) -> data.Dataset | str:
    """The dataset, or the message of the CnnvitError (any other exception fails the test)."""
    try:
        return data.load(spec, strict=strict)
    except CnnvitError as e:
        assert "\n" not in e.message and e.code == 2
        return e.message


def stray(per_split: dict[str, list[int]]) -> bool:
    """The module docstring's rule: a label in one split only, above every other split's labels,
    with a class index between them that no split uses."""
    used = set().union(*map(set, per_split.values()))
    for split, values in per_split.items():
        others = set().union(*(set(v) for s, v in per_split.items() if s != split))
        top = max(others)
        if any(v > top and any(k not in used for k in range(top + 1, v))
               for v in set(values) - others):
            return True
    return False


@SETTINGS
@given(split_labels, st.one_of(st.none(), st.integers(1, 6)), st.booleans())
def test_npz_labels_load_or_refuse(triple, named: int | None, strict: bool) -> None:
    per_split = dict(zip(data.SPLITS, triple, strict=True))
    arrays = {}
    for split, values in per_split.items():
        y = np.array(values, dtype=np.uint8)
        arrays[f"{split}_images"] = np.repeat(y * 40, 64).reshape(-1, 8, 8)  # pixels = label
        arrays[f"{split}_labels"] = y[:, None]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.npz"
        np.savez(path, **arrays)
        if named is not None:
            path.with_suffix(".json").write_text(json.dumps([f"c{k}" for k in range(named)]))
        result = load_or_refusal(f"npz:{path}", strict)
    top = max(max(v) for v in per_split.values())
    k = named if named is not None else top + 1
    present = [set(v) for v in per_split.values()]
    absent = any(c not in p for c in range(k) for p in present)
    if k < 2 or top >= k or (named is None and stray(per_split)) or (strict and absent):
        assert isinstance(result, str)
        return
    assert isinstance(result, data.Dataset), result
    assert result.info.num_classes == k and bool(result.info.notes) == absent
    for split, values in per_split.items():
        assert result[split].labels.tolist() == values
        assert np.all(result[split].images[:, 0, 0, 0] == np.array(values) * 40)


@SETTINGS
@given(split_labels)
def test_folder_labels_load_or_refuse(triple) -> None:
    per_split = dict(zip(data.SPLITS, triple, strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        for split, values in per_split.items():
            for i, k in enumerate(values):
                folder = Path(tmp) / split / f"class{k}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), 40 * k).save(folder / f"{i}.png")
        result = load_or_refusal(f"folder:{tmp}", strict=False)
    classes = sorted(set(per_split["train"]))
    if len(classes) < 2 or not set(per_split["val"] + per_split["test"]) <= set(classes):
        assert isinstance(result, str)
        return
    assert isinstance(result, data.Dataset), result
    assert result.info.class_names == [f"class{k}" for k in classes]
    for split, values in per_split.items():
        got = [classes[i] for i in result[split].labels]
        assert Counter(got) == Counter(values)
        assert np.all(result[split].images[:, 0, 0, 0] == np.array(got) * 40)


@SETTINGS
@given(st.data(), st.integers(1, 5), st.integers(0, 2**32 - 1), st.booleans(), st.booleans())
def test_metrics_any_labels(draw, k: int, seed: int, binary: bool, ties: bool) -> None:
    y = np.array(draw.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=40)))
    rng = np.random.default_rng(seed)
    probs = np.full((len(y), k), 1.0) if ties else rng.random((len(y), k)) ** 3 + 1e-9
    probs /= probs.sum(axis=1, keepdims=True)
    task = "binary-class" if binary and k == 2 else "multi-class"
    names = [f"c{i}" for i in range(k)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if k == 1:
            with pytest.raises(ValueError, match="at least 2 columns"):
                compute(y, probs, names, task)
            return
        out = compute(y, probs, names, task)
    json.dumps(out, allow_nan=False)
    assert out["accuracy"] == pytest.approx(accuracy_score(y, probs.argmax(axis=1)))
    for key in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_micro", "recall_micro", "f1_micro", "auc_macro", "auc_micro", "ece"):
        assert out[key] is None or 0.0 <= out[key] <= 1.0 + 1e-12, (key, out[key])
    assert out["loss"] is None or out["loss"] >= 0
    assert np.array(out["confusion_matrix"]).sum() == len(y) and len(out["per_class"]) == k
