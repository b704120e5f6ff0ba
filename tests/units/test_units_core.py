"""The building blocks: exact contributions, the quantile sketch and the top-image store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camloc.errors import ConfigError, UnsupportedHeadError
from camloc.units import QuantileSketch, TopImages, check_layer, unit_contributions


# ---------------------------------------------------------------- exact contributions


def _assert_exact(model, x):
    c = unit_contributions(model, x)
    # the identity the whole feature rests on: units' contributions + bias == logits
    logits = model.module.eval()(x)
    torch.testing.assert_close(c.contributions.sum(-1) + c.bias, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c.logits, logits, rtol=1e-6, atol=1e-6)
    return c


def test_contributions_sum_to_logits_gap(tiny_model):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    c = _assert_exact(tiny_model, x)
    # an independent oracle: the pooled features by hand from the feature extractor
    f = tiny_model.module.forward_features(x)
    w = tiny_model.module.classifier.weight
    torch.testing.assert_close(c.contributions, f.mean((2, 3))[:, None, :] * w[None], rtol=1e-6,
                               atol=1e-7)


def test_contributions_exact_with_max_pooling(tmp_path, units_data):
    import camloc

    folder = units_data.write_tiny_model(tmp_path / "gmp", pool="max")
    model = camloc.load_model(str(folder), device="cpu")
    assert model.head.pool == "max"
    c = _assert_exact(model, torch.randn(2, 3, 32, 32))
    f = model.module.forward_features(torch.zeros(1, 3, 32, 32))
    assert c.pooled.shape == (2, f.shape[1])


def test_contributions_exact_with_layernorm_fold():
    """ConvNeXt puts a LayerNorm between pooling and the classifier: the fold is exact."""
    import camloc

    model = camloc.load_model("timm:convnext_atto", weights=None, num_classes=5)
    assert model.head.norm is not None
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # non-zero LayerNorm affine and classifier bias
        model.head.norm.weight.copy_(torch.rand(model.head.norm.weight.shape, generator=g) + 0.5)
        model.head.norm.bias.copy_(torch.randn(model.head.norm.bias.shape, generator=g))
        model.head.classifier.bias.copy_(torch.randn(5, generator=g))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    c = _assert_exact(model, x)
    w, b, beta = model.head.classifier.weight, model.head.classifier.bias, model.head.norm.bias
    torch.testing.assert_close(c.bias[1], b + w @ beta)  # the LayerNorm's shift joins the bias


def test_model_without_head_is_refused(tiny_model):
    import dataclasses

    headless = dataclasses.replace(tiny_model, head=None)
    with pytest.raises(UnsupportedHeadError, match="GAP -> linear head"):
        unit_contributions(headless, torch.zeros(1, 3, 32, 32))


def test_layer_accepted_only_where_contributions_are_exact(tiny_model):
    names, shape = check_layer(tiny_model, None, (32, 32))
    assert "features" in names and shape == (4, 4)
    assert check_layer(tiny_model, "features.block4", (32, 32))[0] == names
    with pytest.raises(UnsupportedHeadError, match="features.block3"):
        check_layer(tiny_model, "features.block3", (32, 32))
    with pytest.raises(ConfigError, match="close names"):
        check_layer(tiny_model, "features.blok4", (32, 32))


# ---------------------------------------------------------------- quantile sketch


@pytest.mark.parametrize("q", [0.5, 0.9, 0.995, 0.999])
def test_sketch_quantile_within_relative_accuracy(q):
    rng = np.random.default_rng(0)
    data = np.stack([rng.gamma(2.0, 1.5, 5000), rng.normal(0, 3, 5000),
                     -rng.exponential(2.0, 5000), np.r_[np.zeros(4000), rng.uniform(1, 6, 1000)]])
    s = QuantileSketch(units=4, rel_accuracy=0.01)
    for chunk in np.array_split(data, 7, axis=1):
        s.update(torch.from_numpy(chunk).float())
    got = s.quantile(q).numpy()
    exact = np.quantile(data.astype(np.float32), q, axis=1, method="lower")
    lower = s.quantile(q, edge="lower").numpy()
    for g, lo, e in zip(got, lower, exact):
        if abs(e) < 1e-4:
            assert g == 0.0 and lo == 0.0
        else:
            assert abs(g - e) <= 0.0101 * abs(e), (g, e)
            assert e - 0.0202 * abs(e) <= lo <= e, (lo, e)  # never above: ties stay inside


def test_sketch_lower_edge_keeps_saturated_values():
    """A ReLU6 unit: 2% of its values are exactly 6.0, so the top 0.5% threshold must let them in."""
    v = torch.cat([torch.linspace(0, 5, 980), torch.full((20,), 6.0)])[None]
    s = QuantileSketch(1)
    s.update(v)
    assert float(s.quantile(0.995)[0]) > 6.0  # the bucket's midpoint: above the atom
    t = float(s.quantile(0.995, edge="lower")[0])
    assert 6.0 * 0.98 <= t < 6.0 and int((v > t).sum()) == 20


def test_sketch_merge_equals_single_pass():
    rng = np.random.default_rng(1)
    v = torch.from_numpy(rng.normal(0, 2, (3, 3000))).float()
    one = QuantileSketch(3)
    one.update(v)
    a, b = QuantileSketch(3), QuantileSketch(3)
    a.update(v[:, :1234])
    b.update(v[:, 1234:])
    assert torch.equal(a.merge(b).counts, one.counts)
    assert int(one.total[0]) == 3000
    with pytest.raises(ConfigError):
        a.merge(QuantileSketch(3, rel_accuracy=0.02))


# ---------------------------------------------------------------- top images


def _oracle_top(maps: torch.Tensor, m: int) -> list[list[int]]:
    """Brute force: sort every image per unit by (peak desc, mean desc, index asc)."""
    n, k = maps.shape[:2]
    peak, mean = maps.amax((2, 3)), maps.mean((2, 3))
    return [[i for _, _, i in sorted((-float(peak[i, u]), -float(mean[i, u]), i)
                                     for i in range(n))[:m]] for u in range(k)]


def test_top_images_merge_equals_single_pass_with_ties():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(40, 5, 3, 3, generator=g)
    maps[::3, :, 1, 1] = 6.0  # saturated peaks: many ties, broken by the mean then the index
    maps[::6] = maps[0]  # exact duplicates: broken by the index alone
    sizes = torch.randint(10, 100, (40, 2), generator=g)
    single = TopImages(5, 7, (3, 3))
    for s in range(0, 40, 9):
        single.update(maps[s:s + 9], torch.arange(s, min(s + 9, 40)), sizes[s:s + 9])
    assert single.index.tolist() == _oracle_top(maps, 7)
    # shards as torchrun makes them (strided), merged in either order
    shards = []
    for r in range(3):
        t = TopImages(5, 7, (3, 3))
        idx = torch.arange(r, 40, 3)
        for s in range(0, len(idx), 4):
            t.update(maps[idx[s:s + 4]], idx[s:s + 4], sizes[idx[s:s + 4]])
        shards.append(t)
    merged = shards[2].merge(shards[0]).merge(shards[1])
    for name in ("index", "score", "tie", "maps", "sizes"):
        assert torch.equal(getattr(merged, name), getattr(single, name)), name
    for u in range(5):
        for j, i in enumerate(single.index[u].tolist()):
            assert torch.equal(single.maps[u, j], maps[i, u])
            assert single.sizes[u, j].tolist() == sizes[i].tolist()


def test_top_images_fewer_images_than_capacity():
    t = TopImages(2, 5, (1, 1))
    t.update(torch.tensor([[[[1.0]], [[2.0]]]]), torch.tensor([7]), torch.tensor([[3, 4]]))
    assert t.index.tolist() == [[7, -1, -1, -1, -1], [7, -1, -1, -1, -1]]
    with pytest.raises(ConfigError):
        t.update(torch.zeros(1, 3, 1, 1), torch.tensor([0]), torch.tensor([[1, 1]]))


# ---------------------------------------------------------------- data and regions


def test_region_grid_is_at_most_112_pixels():
    from camloc.models.spec import Preprocess
    from camloc.units.regions import region_preprocess

    assert region_preprocess(Preprocess(input_size=(224, 224))).input_size == (112, 112)
    assert region_preprocess(Preprocess(input_size=(300, 200))).input_size == (112, 75)
    assert region_preprocess(Preprocess(input_size=(32, 32))).input_size == (32, 32)


def test_image_folder_fallback_never_hides_a_broken_dataset(tmp_path, units_data):
    from camloc.errors import DatasetError
    from camloc.units import open_units_data

    flat = tmp_path / "flat"
    units_data.write_images(flat, 2)
    assert open_units_data(flat).format == "images"
    # images beside a malformed annotation file: the dataset's error, not "unlabelled images"
    (flat / "annotations.csv").write_text("path,label\nimg_000.png,cat\nmissing.png,cat\n")
    with pytest.raises(DatasetError):
        open_units_data(flat)
    with pytest.raises(ConfigError, match="no splits"):
        open_units_data(tmp_path / "flat", format="images", split="val")
