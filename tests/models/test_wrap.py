"""camloc.wrap on user modules; output selection; devices; damaged weights and preprocessing refused."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import camloc
from camloc.cams import CAM, GradCAM
from camloc.errors import CheckpointError, ConfigError, ModelError, UnsupportedHeadError, WeightsError
from camloc.models.loader import resolve_device
from camloc.models.outputs import select_output


class DictNet(nn.Module):
    """GAP -> Linear, but forward returns a dict (as Hugging Face models do)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        f = self.body(x)
        return {"features": f, "logits": self.fc(f.mean((2, 3)))}


def test_wrap_a_dict_model_with_output_selector_gives_exact_cam():
    net = DictNet()
    net.train()
    model = camloc.wrap(net, input_size=(16, 16), output="logits", class_names=list("abcd"))
    assert net.training, "wrap must not leave the user's model in eval mode"
    assert model.head is not None and model.layers == ["body"]
    x = torch.randn(3, 3, 16, 16)
    out = CAM(model)(x, classes="all")
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.logits(x), net.eval()(x)["logits"])
    assert model.spec.class_name(2) == "c"


def test_output_selectors_and_their_errors():
    out = {"logits": torch.zeros(2, 3)}
    assert select_output((torch.ones(2, 3), 5), 0).sum() == 6
    assert select_output(out, lambda o: o["logits"] + 1).sum() == 6
    with pytest.raises(ModelError, match="keys"):
        select_output(out, "scores")
    with pytest.raises(ModelError, match="output="):
        select_output({"a": torch.zeros(2, 3)})
    with pytest.raises(ConfigError, match="output="):
        camloc.wrap(DictNet(), input_size=(16, 16), output=2.5)


def test_wrap_errors():
    with pytest.raises(ConfigError, match="nn.Module"):
        camloc.wrap(lambda x: x)
    with pytest.raises(ConfigError, match="class_names"):
        camloc.wrap(DictNet(), input_size=(16, 16), output="logits", class_names=["a"])
    with pytest.raises(ModelError, match="does not run"):
        camloc.wrap(nn.Linear(4, 2), input_size=(16, 16))


def test_gap_to_mlp_loads_without_head_and_only_cam_refuses():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    model = camloc.wrap(net, input_size=(16, 16))
    assert model.head is None and model.layers == ["1"]
    with pytest.raises(UnsupportedHeadError) as err:
        CAM(model)
    assert "gradcam" in str(err.value) and "camloc probe" in str(err.value)
    out = GradCAM(model)(torch.randn(2, 3, 16, 16), classes=2)
    assert out.maps.shape == (2, 2, 16, 16) and float(out.maps.max()) > 0


def test_squeezenet_style_conv_classifier_cam_is_the_class_map():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = camloc.wrap(net, input_size=(16, 16))
    assert model.head is not None and model.head.kind == "class_maps" and model.layers == ["3"]
    x = torch.randn(2, 3, 16, 16)
    out = CAM(model)(x, classes="all")
    with torch.no_grad():
        class_maps = net[:4](x)
    torch.testing.assert_close(out.maps, class_maps)
    torch.testing.assert_close(out.maps.mean((2, 3)) + out.bias, out.logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:x", "cpu:0:1", ""])
def test_unknown_devices_are_clean_config_errors(device):
    with pytest.raises(ConfigError) as err:
        resolve_device(device)
    assert "expected 'auto', 'cpu', 'cuda'" in str(err.value) and "tpu," not in str(err.value)


def test_damaged_weights_are_refused(tmp_path):
    m = camloc.load_model("resnet18", weights=None, num_classes=3)
    sd = {k: v.clone() for k, v in m.module.state_dict().items()}
    sd["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(WeightsError, match="layer1.0.conv1.weight.*NaN"):
        camloc.load_model("resnet18", weights=str(tmp_path / "w.pth"), num_classes=3)
    net = DictNet()
    with torch.no_grad():
        net.fc.bias[0] = float("inf")
    with pytest.raises(ModelError, match="fc.bias"):
        camloc.wrap(net, input_size=(16, 16), output="logits")


def _checkpoint(tmp_path, **spec_changes):
    from safetensors.torch import save_file

    from camloc.models.archs import build_arch

    net = build_arch("tiny-cnn", num_classes=2, width=4)
    folder = tmp_path / "ckpt"
    folder.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "model.safetensors"))
    spec = {"arch": "tiny-cnn", "arch_kwargs": {"width": 4}, "num_classes": 2, "class_names": ["a", "b"],
            "preprocess": {"input_size": [32, 32]}}
    spec.update(spec_changes)
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder, net


def test_checkpoint_folder_validation(tmp_path):
    folder, _ = _checkpoint(tmp_path)
    assert camloc.load_model(folder).spec.class_names == ["a", "b"]
    for changes, pattern in [
        ({"preprocess": {"input_size": [32, 32], "std": [0.2, 0.0, 0.2]}}, "std"),
        ({"preprocess": {"input_size": [32, 32], "mean": [0.5, float("nan"), 0.5]}}, "mean"),
        ({"num_classes": "abc"}, "num_classes must be a positive integer"),
        ({"class_names": ["a"]}, "class_names must be a list of 2"),
    ]:
        folder, _ = _checkpoint(tmp_path, **changes)
        with pytest.raises(CheckpointError, match=pattern):
            camloc.load_model(folder)


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    from safetensors.torch import save_file

    folder, net = _checkpoint(tmp_path)
    sd = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    sd["classifier.weight"][0, 0] = float("nan")
    save_file(sd, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="classifier.weight"):
        camloc.load_model(folder)


def test_probe_head_with_nan_weights_is_refused(tmp_path):
    from safetensors.torch import save_file

    head = tmp_path / "head"
    head.mkdir()
    w = torch.zeros(3, 512)
    w[1, 2] = float("nan")
    save_file({"weight": w, "bias": torch.zeros(3)}, str(head / "head.safetensors"))
    (head / "head.json").write_text(json.dumps({"format": "camloc-head", "class_names": ["a", "b", "c"]}))
    with pytest.raises(CheckpointError, match="NaN"):
        camloc.load_model("resnet18", weights=None, head=head)
