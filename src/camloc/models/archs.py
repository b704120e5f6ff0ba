"""Architectures camloc trains: every one is a :class:`~camloc.models.gapnet.GapNet`.

``build_arch(name, num_classes, pool="avg", pretrained=False, **kwargs)`` returns
``features -> global pooling -> nn.Linear(K, num_classes)``, the form exact CAM needs. Names:

``vgg16-gap``
    VGG16 up to conv5_3 + ReLU (the last max-pool and the FC stack removed: 14x14 maps at 224
    input), then a new 3x3 conv with 1024 units (stride 1, pad 1) + ReLU (Zhou et al., 2016).
``alexnet-gap``
    AlexNet up to conv5 + ReLU (last max-pool removed: 13x13 at 224), then the new 1024 conv.
``googlenet-gap``
    torchvision's GoogLeNet up to inception4e (14x14 at 224), then the new 1024 conv.
``resnet18-gap`` / ``resnet34-gap`` / ``resnet50-gap``
    torchvision ResNet without avgpool/fc; ``last_stride=1`` (the default, as wsolevaluation) sets
    the stride of layer4's first block to 1: 14x14 maps at 224 (``last_stride=2``: 7x7).
``tiny-cnn``
    four conv blocks (``width``, 2x, 4x, 4x channels; ~240k parameters at ``width=32``) for CPU
    experiments on small synthetic images.
``any:NAME`` (or a bare torchvision / timm name, optionally ``tv:``/``timm:`` prefixed)
    any classifier whose head is already global pooling -> one linear layer (ResNet, DenseNet,
    EfficientNet, RegNet, MobileNetV2, ...): its features (everything before the pooling) are
    reused and the classifier is replaced by a new ``nn.Linear``. Heads that are not GAP -> linear
    (VGG/AlexNet FC stacks, MobileNetV3, ConvNeXt's LayerNorm head, transformers) are refused.

The layers added by the conversion (the new conv, the classifier) are listed in
``model.camloc_new_modules``; :func:`new_parameters` / :func:`backbone_parameters` split the
parameters for the usual 10x learning rate on new layers.

``pretrained=True`` loads torchvision's (or timm's) ImageNet weights into the backbone; they are
downloaded once into the torch / Hugging Face cache. Offline, a :class:`~camloc.errors.WeightsError`
says which file to put where.

>>> import torch
>>> net = build_arch("tiny-cnn", num_classes=4)
>>> net(torch.zeros(2, 3, 64, 64)).shape
torch.Size([2, 4])
>>> [n for n in net.camloc_new_modules]
['features', 'classifier']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from camloc.errors import ConfigError, UnsupportedHeadError, WeightsError
from camloc.models.gapnet import GapNet

__all__ = ["build_arch", "list_archs", "arch_info", "ArchInfo", "new_parameters",
           "backbone_parameters", "NEW_CONV_UNITS"]

#: Units of the conv layer the paper adds after the truncated VGG/AlexNet/GoogLeNet.
NEW_CONV_UNITS = 1024


@dataclass(frozen=True)
class ArchInfo:
    """What :func:`list_archs` knows about a registered architecture."""

    name: str
    description: str
    #: Output stride of the feature map (input size / map size) with default options.
    stride: int
    #: Keyword arguments the builder accepts (besides num_classes, pool, pretrained).
    options: tuple[str, ...] = ()


_Builder = Callable[..., GapNet]
_ARCHS: dict[str, tuple[ArchInfo, _Builder]] = {}
#: The most classes a classifier may have (ImageNet-21k has 21,841; 100,000 x 2,048 features
#: is an 800 MB classifier).
MAX_NUM_CLASSES = 100_000
#: The largest ``width`` of tiny-cnn (its last blocks have 4 x width channels).
MAX_TINY_WIDTH = 512


def _register(name: str, description: str, stride: int, options: tuple[str, ...] = ()
              ) -> Callable[[_Builder], _Builder]:
    def deco(fn: _Builder) -> _Builder:
        _ARCHS[name] = (ArchInfo(name, description, stride, options), fn)
        return fn

    return deco


def list_archs() -> list[str]:
    """Names of the registered architectures (``any:NAME`` works besides these).

    >>> "vgg16-gap" in list_archs() and "tiny-cnn" in list_archs()
    True
    """
    return sorted(_ARCHS)


def arch_info(name: str) -> ArchInfo:
    """The :class:`ArchInfo` of a registered architecture (``ConfigError`` if unknown)."""
    if name not in _ARCHS:
        raise ConfigError(f"arch={name!r}: not a registered architecture; choose one of "
                          f"{', '.join(list_archs())} or 'any:NAME'")
    return _ARCHS[name][0]


def build_arch(arch: str, num_classes: int, pool: str = "avg", pretrained: bool = False,
               **kwargs: Any) -> GapNet:
    """Build a :class:`GapNet` for ``num_classes`` classes.

    Args:
        arch: a name from :func:`list_archs`, ``any:NAME`` (``any:tv:NAME``, ``any:timm:NAME``),
            or a bare torchvision / timm model name whose head is GAP -> linear.
        num_classes: size of the new classifier (>= 1).
        pool: ``"avg"`` (GAP, also ``"gap"``) or ``"max"`` (GMP, also ``"gmp"``).
        pretrained: load ImageNet weights into the backbone (downloads once; offline raises
            :class:`WeightsError`). The new layers are always freshly initialised.
        **kwargs: architecture options (``last_stride`` for ResNets, ``width`` for tiny-cnn,
            ``dropout`` for all).

    Raises:
        ConfigError: unknown architecture or option, bad ``num_classes``/``pool``, or a model whose
            head is not global pooling -> linear.
        WeightsError: pretrained weights cannot be downloaded or loaded.

    >>> import torch
    >>> net = build_arch("resnet18-gap", num_classes=3)
    >>> net.forward_features(torch.zeros(1, 3, 224, 224)).shape
    torch.Size([1, 512, 14, 14])
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
            or not 1 <= num_classes <= MAX_NUM_CLASSES:
        raise ConfigError(f"num_classes={num_classes!r}: expected an integer from 1 to "
                          f"{MAX_NUM_CLASSES}")
    dropout = kwargs.get("dropout", 0.0)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout={dropout!r}: expected a probability in [0, 1)")
    pool = _normalize_pool(pool)
    name = str(arch).strip()
    if name in _ARCHS:
        builder = _ARCHS[name][1]
        allowed = set(_ARCHS[name][0].options) | {"dropout"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise ConfigError(f"arch={name!r}: unknown option(s) {', '.join(unknown)}; it accepts "
                              f"{', '.join(sorted(allowed))}")
        return builder(num_classes=num_classes, pool=pool, pretrained=bool(pretrained), **kwargs)
    lowered = name.lower()
    if lowered.endswith("-gap") or lowered.endswith("-gmp"):
        raise ConfigError(f"arch={name!r}: unknown; registered architectures: "
                          f"{', '.join(list_archs())}")
    target = name[4:] if name.startswith("any:") else name
    if not target:
        raise ConfigError("arch='any:': give a model name, e.g. 'any:resnet50' or 'any:timm:NAME'")
    unknown = sorted(set(kwargs) - {"dropout"})
    if unknown:
        raise ConfigError(f"arch={name!r}: unknown option(s) {', '.join(unknown)}; 'any:' "
                          f"architectures accept only 'dropout'")
    return _build_any(target, num_classes=num_classes, pool=pool, pretrained=bool(pretrained),
                      **kwargs)


def new_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the layers the conversion added (trained at a higher learning rate).

    Works on a :class:`GapNet` from :func:`build_arch`, also wrapped in DistributedDataParallel.
    A GapNet built otherwise counts only its classifier as new.
    """
    return [p for _, p in _split_named(model, new=True)]


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters not in :func:`new_parameters` (the possibly pretrained backbone)."""
    return [p for _, p in _split_named(model, new=False)]


def _split_named(model: nn.Module, new: bool) -> Iterator[tuple[str, nn.Parameter]]:
    inner = getattr(model, "module", model)
    prefixes = tuple(getattr(inner, "camloc_new_modules", ("classifier",)))
    for n, p in inner.named_parameters():
        is_new = any(n == pre or n.startswith(pre + ".") for pre in prefixes)
        if is_new == new:
            yield n, p


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _normalize_pool(pool: str) -> str:
    p = str(pool).lower()
    p = {"gap": "avg", "gmp": "max", "mean": "avg", "average": "avg"}.get(p, p)
    if p not in ("avg", "max"):
        raise ConfigError(f"pool={pool!r}: expected 'avg'/'gap' (global average pooling) or "
                          f"'max'/'gmp' (global max pooling)")
    return p


def _new_conv(in_channels: int) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, NEW_CONV_UNITS, kernel_size=3, stride=1, padding=1)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True))


def _new_linear(in_features: int, num_classes: int) -> nn.Linear:
    fc = nn.Linear(in_features, num_classes)
    nn.init.normal_(fc.weight, 0.0, 0.01)
    nn.init.zeros_(fc.bias)
    return fc


def _finish(features: nn.Module, channels: int, num_classes: int, pool: str, dropout: float,
            new_modules: list[str], info: dict[str, Any]) -> GapNet:
    net = GapNet(features, _new_linear(channels, num_classes), pool=pool,  # type: ignore[arg-type]
                 dropout=float(dropout))
    net.camloc_new_modules = tuple(new_modules)  # type: ignore[assignment]
    net.camloc_arch_info = dict(info)  # type: ignore[assignment]
    return net


def _torchvision_pretrained(name: str, **kwargs: Any) -> nn.Module:
    """A torchvision model with its default ImageNet weights, or a clear WeightsError."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT
    except (KeyError, ValueError, AttributeError) as exc:
        raise WeightsError(f"torchvision has no ImageNet weights for {name!r}") from exc
    try:
        return torchvision.models.get_model(name, weights=weights, **kwargs)
    except Exception as exc:  # noqa: BLE001 - download failures come in many types
        fname = str(weights.url).rsplit("/", 1)[-1]
        raise WeightsError(
            f"{name}: could not load the ImageNet weights {weights} ({type(exc).__name__}: {exc}). "
            f"Offline? Download {weights.url} elsewhere and put it in "
            f"$TORCH_HOME/hub/checkpoints/{fname} (default ~/.cache/torch/hub/checkpoints/), or "
            f"train without --pretrained."
        ) from exc


def _init_like_torchvision(module: nn.Module) -> None:
    """torchvision's VGG initialisation for conv layers (Kaiming normal, fan_out; zero bias)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class _TransformInput(nn.Module):
    """GoogLeNet's input re-normalisation (ImageNet mean/std -> the (x - 0.5) / 0.5 range its
    published weights expect). Parameter-free; always present so checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.new_tensor([0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5]).view(1, 3, 1, 1)
        shift = x.new_tensor([(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5,
                              (0.406 - 0.5) / 0.5]).view(1, 3, 1, 1)
        return x * scale + shift


# --------------------------------------------------------------------------------------------------
# the paper's conversions
# --------------------------------------------------------------------------------------------------


@_register("vgg16-gap", "VGG16 to conv5_3+ReLU (14x14 @224) + new 3x3 conv 1024 + pool + linear",
           stride=16)
def _vgg16_gap(num_classes: int, pool: str, pretrained: bool, dropout: float = 0.0) -> GapNet:
    import torchvision

    if pretrained:
        backbone = _torchvision_pretrained("vgg16").features[:30]
    else:  # the same layers (same state-dict keys) without building the 120M-parameter FC stack
        backbone = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])[:30]
        _init_like_torchvision(backbone)
    # conv1_1 .. conv5_3 + ReLU: pool5 and the FC stack are dropped
    features = nn.Sequential(OrderedDict(backbone=backbone, extra=_new_conv(512)))
    return _finish(features, NEW_CONV_UNITS, num_classes, pool, dropout,
                   ["features.extra", "classifier"], {"map_stride": 16})


@_register("alexnet-gap", "AlexNet to conv5+ReLU (13x13 @224) + new 3x3 conv 1024 + pool + linear",
           stride=17)
def _alexnet_gap(num_classes: int, pool: str, pretrained: bool, dropout: float = 0.0) -> GapNet:

    if pretrained:
        backbone = _torchvision_pretrained("alexnet").features[:12]
    else:  # torchvision's layers (same state-dict keys) without its 58M-parameter FC stack
        backbone = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True))
    # conv1 .. conv5 + ReLU: pool5 and the FC stack are dropped
    features = nn.Sequential(OrderedDict(backbone=backbone, extra=_new_conv(256)))
    return _finish(features, NEW_CONV_UNITS, num_classes, pool, dropout,
                   ["features.extra", "classifier"], {"map_stride": 16})


_GOOGLENET_PARTS = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                    "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d",
                    "inception4e")


@_register("googlenet-gap", "GoogLeNet to inception4e (14x14 @224) + new 3x3 conv 1024 + pool + "
                            "linear", stride=16)
def _googlenet_gap(num_classes: int, pool: str, pretrained: bool, dropout: float = 0.0) -> GapNet:
    import torchvision

    if pretrained:
        base = _torchvision_pretrained("googlenet")
    else:
        base = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    parts: OrderedDict[str, nn.Module] = OrderedDict(transform_input=_TransformInput())
    for part in _GOOGLENET_PARTS:
        parts[part] = getattr(base, part)
    features = nn.Sequential(OrderedDict(backbone=nn.Sequential(parts), extra=_new_conv(832)))
    return _finish(features, NEW_CONV_UNITS, num_classes, pool, dropout,
                   ["features.extra", "classifier"], {"map_stride": 16})


def _resnet_gap(depth: int) -> _Builder:
    def build(num_classes: int, pool: str, pretrained: bool, last_stride: int = 1,
              dropout: float = 0.0) -> GapNet:
        import torchvision

        if last_stride not in (1, 2) or isinstance(last_stride, bool):
            raise ConfigError(f"last_stride={last_stride!r}: expected 1 (14x14 maps at 224) or 2 "
                              f"(7x7, torchvision's original)")
        name = f"resnet{depth}"
        base = _torchvision_pretrained(name) if pretrained \
            else torchvision.models.get_model(name, weights=None)
        if last_stride == 1:
            block = base.layer4[0]
            for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
                if conv is not None and conv.stride != (1, 1):
                    conv.stride = (1, 1)
            if block.downsample is not None:
                block.downsample[0].stride = (1, 1)
        features = nn.Sequential(OrderedDict(
            conv1=base.conv1, bn1=base.bn1, relu=base.relu, maxpool=base.maxpool,
            layer1=base.layer1, layer2=base.layer2, layer3=base.layer3, layer4=base.layer4))
        channels = base.fc.in_features
        return _finish(features, channels, num_classes, pool, dropout, ["classifier"],
                       {"map_stride": 16 if last_stride == 1 else 32})

    return build


for _depth in (18, 34, 50):
    _register(f"resnet{_depth}-gap",
              f"torchvision ResNet-{_depth}, layer4 stride 1 by default (14x14 @224) + pool + "
              f"linear",
              stride=16, options=("last_stride",))(_resnet_gap(_depth))


@_register("tiny-cnn", "4 conv blocks (width, 2w, 4w, 4w channels; ~240k params at width=32), "
                       "for CPU experiments", stride=8, options=("width",))
def _tiny_cnn(num_classes: int, pool: str, pretrained: bool, width: int = 32,
              dropout: float = 0.0) -> GapNet:
    if pretrained:
        raise WeightsError("tiny-cnn has no pretrained weights; train it without --pretrained")
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= MAX_TINY_WIDTH:
        raise ConfigError(f"width={width!r}: expected an integer from 1 to {MAX_TINY_WIDTH}")
    chans = [3, width, 2 * width, 4 * width, 4 * width]
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for i in range(4):
        block = [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False),
                 nn.BatchNorm2d(chans[i + 1]), nn.ReLU(inplace=True)]
        if i < 3:
            block.append(nn.MaxPool2d(2))
        layers[f"block{i + 1}"] = nn.Sequential(*block)
    features = nn.Sequential(layers)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return _finish(features, chans[-1], num_classes, pool, dropout, ["features", "classifier"],
                   {"map_stride": 8})


# --------------------------------------------------------------------------------------------------
# any: an existing GAP -> linear classifier
# --------------------------------------------------------------------------------------------------


class _TappedFeatures(nn.Module):
    """Runs ``model`` (whose classifier was replaced by Identity) and returns the output of
    ``model.<tap>``: the last spatial feature map, optionally through a ReLU."""

    def __init__(self, model: nn.Module, tap: str, post_relu: bool, layout: Any = None) -> None:
        super().__init__()
        self.model = model
        self.tap = tap
        self.post_relu = post_relu
        self.layout = layout  # a camloc.models.layers.MapLayout (channels-last maps, tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        box: list[torch.Tensor] = []
        handle = self.model.get_submodule(self.tap).register_forward_hook(
            lambda _m, _i, out: box.append(out))
        try:
            self.model(x)
        finally:
            handle.remove()
        f = box[-1]
        if self.layout is not None:
            f = self.layout.to_map(f, (x.shape[-2], x.shape[-1]), self.tap)
        return torch.relu(f) if self.post_relu else f


def _module_name(root: nn.Module, target: nn.Module) -> str | None:
    for n, m in root.named_modules():
        if m is target:
            return n
    return None


def _replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _build_any(target: str, num_classes: int, pool: str, pretrained: bool,
               dropout: float = 0.0) -> GapNet:
    import timm
    import torchvision

    from camloc.models.heads import find_gap_head
    from camloc.models.zoo import resolve_zoo_name

    try:
        lib, target = resolve_zoo_name(target, what="arch")
    except ConfigError as exc:
        raise ConfigError(f"{exc} Registered architectures: {', '.join(list_archs())}.") from None
    if lib == "tv":
        if target not in torchvision.models.list_models(module=torchvision.models):
            raise ConfigError(f"arch='tv:{target}': not a torchvision classification model")
        kwargs: dict[str, Any] = {}
        if target in ("googlenet", "inception_v3"):
            kwargs = {"aux_logits": False, "transform_input": True}
        if pretrained:
            model = _torchvision_pretrained(target, **kwargs)
        else:
            if kwargs:
                kwargs["init_weights"] = True
            model = torchvision.models.get_model(target, weights=None, **kwargs)
    else:
        if not timm.is_model(target):
            raise ConfigError(f"arch='timm:{target}': not a timm model")
        try:
            model = timm.create_model(target, pretrained=pretrained)
        except Exception as exc:  # noqa: BLE001
            if pretrained:
                raise WeightsError(
                    f"timm:{target}: could not load pretrained weights ({type(exc).__name__}: "
                    f"{exc}). Offline? Fetch them once where the Hugging Face hub is reachable "
                    f"(they are cached in ~/.cache/huggingface), or train without --pretrained."
                ) from exc
            raise ConfigError(f"arch='timm:{target}': timm cannot build it: {exc}") from exc
    model.eval()
    if lib == "timm":
        cfg_size = tuple((getattr(model, "pretrained_cfg", None) or {}).get("input_size",
                                                                             (3, 224, 224)))
        size = (int(cfg_size[1]), int(cfg_size[2]))
    else:  # torchvision CNNs take any size; a small probe is enough to find and verify the head
        size = (299, 299) if target == "inception_v3" else (128, 128)
    try:
        head = find_gap_head(model, size)
    except UnsupportedHeadError as exc:
        raise ConfigError(
            f"arch='any:{target}': its head is not global pooling -> one linear layer, so it "
            f"cannot be reused as is. Use a conversion instead ({', '.join(list_archs())})."
        ) from exc
    if head.norm is not None:
        raise ConfigError(
            f"arch='any:{target}': a normalisation sits between its pooling and classifier "
            f"(ConvNeXt-style head); camloc trains plain GAP -> linear networks. Use a conversion "
            f"({', '.join(list_archs())}) or `camloc probe` on the pretrained model.")
    if head.kind != "linear":
        raise ConfigError(f"arch='any:{target}': its classifier is a 1x1 convolution, not a linear "
                          f"layer; use a conversion ({', '.join(list_archs())}).")
    channels = head.num_channels
    clf_name = _module_name(model, head.classifier)
    tap = _module_name(model, head.feature_module) if head.feature_module is not None else None
    if clf_name is None or tap is None:
        raise ConfigError(f"arch='any:{target}': cannot locate its classifier / feature layer")
    _replace_module(model, clf_name, nn.Identity())
    features: nn.Module = _TappedFeatures(model, tap, head.post_relu,
                                          None if head.layout.kind == "nchw" else head.layout)
    model.train()
    net = _finish(features, channels, num_classes, pool, dropout, ["classifier"],
                  {"source": f"{lib}:{target}"})
    with torch.no_grad():  # the tapped / timm features must run inside the new network
        probe = net.eval()(torch.zeros(1, 3, *size))
    net.train()
    if probe.shape != (1, num_classes) or not math.isfinite(float(probe.abs().sum())):
        raise ConfigError(f"arch='any:{target}': the converted network does not run")
    return net
