"""Each method against an independent oracle written from its paper (plain loops, full-model autograd,
numpy), on small networks; and properties every method must have (several classes per image,
results independent of batch_size)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import camloc
from camloc.cams import METHODS, make_method
from camloc.cams.engine import smoothgrad_noise


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """A CNN without GAP (a flatten -> linear head), 16x16 input, 8x8 maps at layer "3"."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Conv2d(5, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 8 * 8, 3))


def kill_channels(net: nn.Sequential, channels=(1, 3)) -> nn.Sequential:
    """Make channels of layer "3" (the ReLU after conv "2") zero everywhere on every input."""
    with torch.no_grad():
        for k in channels:
            net[2].weight[k] = 0
            net[2].bias[k] = -1
    return net


@pytest.fixture
def cnn():
    net = tiny_cnn()
    return net, camloc.wrap(net, input_size=(16, 16))


def _layer_output(net, layer, x):
    box = {}
    h = net.get_submodule(layer).register_forward_hook(lambda m, i, o: box.__setitem__("a", o))
    try:
        logits = net(x)
    finally:
        h.remove()
    return logits, box["a"]


def _grads(net, layer, x, cls):
    """dy_c/dA by full-model autograd (every layer differentiable), one image at a time."""
    out = []
    for n in range(x.shape[0]):
        xi = x[n:n + 1].clone().requires_grad_(True)
        logits, a = _layer_output(net, layer, xi)
        (g,) = torch.autograd.grad(logits[0, cls[n]], a)
        out.append(g[0])
    return torch.stack(out)


def test_smoothgradcampp_follows_omeiza_et_al(cnn):
    net, model = cnn
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    cls = [1, 2]
    samples, noise = 3, 0.2
    with torch.no_grad():
        _, a = _layer_output(net, "3", x)
    span = x.flatten(1).amax(1) - x.flatten(1).amin(1)
    d = {1: 0, 2: 0, 3: 0}
    for s in range(samples):
        eps = torch.stack([smoothgrad_noise(0, [n * samples + s], (3, 16, 16))[0] for n in range(2)])
        g = _grads(net, "3", x + eps * noise * span.view(-1, 1, 1, 1), cls)
        for p in d:
            d[p] = d[p] + g.pow(p) / samples
    sum_a = a.sum((2, 3), keepdim=True)
    alpha = torch.where(d[2] != 0, d[2] / (2 * d[2] + sum_a * d[3]), torch.zeros_like(d[2]))
    w = (alpha * d[1].clamp_min(0)).sum((2, 3))
    expected = F.relu((w[:, :, None, None] * a).sum(1))
    for bs in (1, 64):
        out = make_method(model, "smoothgradcam++", layer="3", smooth=samples, noise=noise,
                          batch_size=bs)(x, classes=[[1], [2]])
        torch.testing.assert_close(out.maps[:, 0], expected, rtol=1e-4, atol=1e-6)
    assert float(expected.max()) > 0


@pytest.mark.parametrize("dead", [False, True], ids=["live", "dead-channels"])
def test_scorecam_follows_wang_et_al(dead):
    net = kill_channels(tiny_cnn()) if dead else tiny_cnn()
    model = camloc.wrap(net, input_size=(16, 16))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    cls = [0, 2]
    with torch.no_grad():
        _, a = _layer_output(net, "3", x)
        assert bool((a.flatten(2).amax(2) == 0).any()) == dead  # the zero-mask path is exercised
        expected = []
        for n in range(2):
            scores = []
            for k in range(a.shape[1]):
                up = F.interpolate(a[n:n + 1, k:k + 1], size=(16, 16), mode="bilinear", align_corners=False)
                h = (up - up.min()) / (up.max() - up.min()) if up.max() > up.min() else torch.zeros_like(up)
                scores.append(net(x[n:n + 1] * h)[0, cls[n]])
            w = torch.softmax(torch.stack(scores), 0)
            expected.append(F.relu((w[:, None, None] * a[n]).sum(0)))
    for bs in (1, 7):
        out = make_method(model, "scorecam", layer="3", batch_size=bs)(x, classes=[[0], [2]])
        torch.testing.assert_close(out.maps[:, 0], torch.stack(expected), rtol=1e-5, atol=1e-6)


class SkipNet(nn.Module):
    """A skip connection across the target layer: by concatenation (the layers below must run on a
    full batch) or by addition (a single image broadcasts)."""

    def __init__(self, mode: str):
        super().__init__()
        torch.manual_seed(0)
        self.mode = mode
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Linear((8 if mode == "cat" else 4) * 16 * 16, 3)

    def forward(self, x):
        s = self.stem(x)
        b = self.block(s)
        z = torch.cat([s, b], 1) if self.mode == "cat" else s + b
        return self.head(z.flatten(1))


@pytest.mark.parametrize("which", ["cnn", "cnn-dead-channels", "cat", "add"])
def test_ablationcam_follows_desai_and_ramaswamy(which):
    if which.startswith("cnn"):
        net, layer = tiny_cnn(), "3"
        if which == "cnn-dead-channels":
            kill_channels(net)
    else:
        net, layer = SkipNet(which), "block"
    model = camloc.wrap(net, input_size=(16, 16))
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cls = [2, 1]
    expected = []
    with torch.no_grad():
        logits, a = _layer_output(net, layer, x)
        for n in range(2):
            y = logits[n, cls[n]]
            w = []
            for k in range(a.shape[1]):
                def zero_k(_m, _i, o, k=k):
                    o = o.clone()
                    o[:, k] = 0
                    return o

                h = net.get_submodule(layer).register_forward_hook(zero_k)
                try:
                    yk = net(x[n:n + 1])[0, cls[n]]
                finally:
                    h.remove()
                w.append((y - yk) / y)
            expected.append(F.relu((torch.stack(w)[:, None, None] * a[n]).sum(0)))
    for bs in (1, 3):
        out = make_method(model, "ablationcam", layer=layer, batch_size=bs)(x, classes=[[2], [1]])
        torch.testing.assert_close(out.maps[:, 0], torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_eigencam_is_the_first_principal_direction(cnn):
    net, model = cnn
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, a = _layer_output(net, "3", x)
    out = make_method(model, "eigencam", layer="3")(x, classes=3)
    for n in range(2):
        m = a[n].reshape(a.shape[1], -1).T.double().numpy()  # (hw, K), not centred (the paper)
        _, _, vt = np.linalg.svd(m, full_matrices=False)
        proj = m @ vt[0]
        proj = proj if proj.sum() >= 0 else -proj  # non-negative activations: the positive sign
        for j in range(3):  # class-agnostic: the same map for every class
            np.testing.assert_allclose(out.maps[n, j].double().numpy().ravel(), proj, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "cam"])
def test_several_classes_per_image_equal_one_class_at_a_time(cnn, method):
    _, model = cnn
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    engine = make_method(model, method, layer="3", batch_size=8)
    both = engine(x, classes=[[0, 2], [1, 0]])
    assert both.maps.shape == (2, 2, 8, 8) and both.layers == ["3"]
    for j in range(2):
        one = engine(x, classes=both.class_ids[:, j:j + 1])
        torch.testing.assert_close(both.maps[:, j], one.maps[:, 0], rtol=1e-5, atol=1e-7)
