"""fit_probe / save_head: the folded head equals scikit-learn's decision on raw features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from camloc.errors import CheckpointError, ConfigError, DatasetError
from camloc.probe import fit_probe, parse_C, read_head, save_head, stratified_split


def _blobs(n_classes: int, per_class: int = 30, dim: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (n_classes, dim))
    # very different feature scales, so that standardisation matters
    scales = np.logspace(-2, 2, dim)
    X = np.concatenate([rng.normal(c, 1.0, (per_class, dim)) for c in centres]) * scales + 5.0
    y = np.repeat(np.arange(n_classes), per_class)
    return X.astype(np.float32), y


@pytest.mark.parametrize("classifier", ["logistic", "svm"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_folded_head_matches_sklearn_on_raw_features(classifier: str, n_classes: int) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    X, y = _blobs(n_classes)
    probe = fit_probe(X, y, classifier, C=0.5, seed=0)
    assert probe.weight.shape == (n_classes, X.shape[1]) and probe.weight.dtype == np.float32
    assert probe.bias.shape == (n_classes,)
    est = LogisticRegression(C=0.5, max_iter=5000, random_state=0) if classifier == "logistic" \
        else LinearSVC(C=0.5, max_iter=5000, random_state=0)
    ref = make_pipeline(StandardScaler(), est).fit(X.astype(np.float64), y)
    dec = probe.decision(X)
    ref_dec = ref.decision_function(X.astype(np.float64))
    if n_classes == 2:  # rows are (-z/2, +z/2)
        np.testing.assert_allclose(dec[:, 1] - dec[:, 0], ref_dec, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dec[:, 0], -dec[:, 1], rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_allclose(dec, ref_dec, rtol=1e-4, atol=1e-4)
    assert (probe.predict(X) == ref.predict(X.astype(np.float64))).all()
    assert probe.train_accuracy > 0.9


def test_binary_logistic_softmax_equals_probability() -> None:
    from scipy.special import softmax

    X, y = _blobs(2, seed=1)
    probe = fit_probe(X, y, "logistic", C=1.0)
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, random_state=0))
    ref.fit(X.astype(np.float64), y)
    np.testing.assert_allclose(softmax(probe.decision(X), axis=1),
                               ref.predict_proba(X.astype(np.float64)), atol=1e-5)


def test_cross_validation_picks_a_C_and_records_scores() -> None:
    X, y = _blobs(3, per_class=12)
    probe = fit_probe(X, y, "logistic", C="0.001,0.1,10", seed=0, cv=3)
    assert probe.cv_scores is not None and set(probe.cv_scores) == {0.001, 0.1, 10.0}
    assert probe.C == max(probe.cv_scores, key=lambda c: (probe.cv_scores[c], -c))
    assert probe.cv_folds == 3
    # too few images per class to cross-validate
    with pytest.raises(ConfigError, match="at least 2 training images per class"):
        fit_probe(X[[0, 1, 12, 13, 24]], y[[0, 1, 12, 13, 24]], C="0.1,1")


def test_parse_C() -> None:
    assert parse_C("1") == [1.0]
    assert parse_C("1, 0.1;10") == [0.1, 1.0, 10.0]
    assert parse_C("logspace:-1:1:3") == pytest.approx([0.1, 1.0, 10.0])
    for bad in ("", "abc", "0", "-1", "nan", "logspace:1", True):
        with pytest.raises(ConfigError):
            parse_C(bad)


def test_clear_errors_for_bad_class_sets() -> None:
    X, y = _blobs(3, per_class=5)
    with pytest.raises(DatasetError, match="at least two classes"):
        fit_probe(X[:5], y[:5], class_names=["only"])
    with pytest.raises(DatasetError, match=r"have no training images: 'c'"):
        fit_probe(X[:10], y[:10], class_names=["a", "b", "c"])
    with pytest.raises(DatasetError, match="no class label"):
        fit_probe(X, np.where(y == 0, -1, y))
    with pytest.raises(DatasetError, match="no usable training images"):
        fit_probe(X[:0], y[:0])
    with pytest.raises(ConfigError, match="classifier"):
        fit_probe(X, y, classifier="forest")
    with pytest.raises(ConfigError, match="NaN"):
        fit_probe(np.full_like(X, np.nan), y)


def test_save_and_read_head(tmp_path) -> None:
    X, y = _blobs(3)
    probe = fit_probe(X, y, C=1.0, class_names=["a", "b", "c"])
    d = save_head(tmp_path / "head", probe, backbone="efficientnet_lite0", weights="DEFAULT",
                  preprocess={"fit": "stretch"})
    meta, w, b = read_head(d)
    assert meta["format"] == "camloc-head" and meta["version"] == 1
    assert meta["class_names"] == ["a", "b", "c"] and meta["feature_dim"] == X.shape[1]
    assert meta["backbone"] == "efficientnet_lite0" and meta["classifier"] == "logistic"
    np.testing.assert_array_equal(w, probe.weight)
    np.testing.assert_array_equal(b, probe.bias)
    assert not list(d.glob(".*.tmp"))  # atomic writes leave no temporaries
    (d / "head.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="camloc-head"):
        read_head(d)
    with pytest.raises(CheckpointError, match="not a camloc head folder"):
        read_head(tmp_path / "missing")


def test_stratified_split_is_seeded_and_keeps_every_class() -> None:
    y = np.repeat([0, 1, 2], [2, 5, 9])
    tr, te = stratified_split(y, 0.5, seed=3)
    assert set(tr) | set(te) == set(range(len(y))) and not set(tr) & set(te)
    for c in range(3):
        assert (y[tr] == c).any() and (y[te] == c).any()
    tr2, te2 = stratified_split(y, 0.5, seed=3)
    assert (tr == tr2).all() and (te == te2).all()
    assert not (stratified_split(y, 0.5, seed=4)[1].tolist() == te.tolist())
    with pytest.raises(DatasetError, match="'b' has 1 image"):
        stratified_split([0, 0, 1], 0.5, class_names=["a", "b"])
    with pytest.raises(ConfigError):
        stratified_split(y, 1.0)
