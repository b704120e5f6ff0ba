"""Linear probes on a frozen network's pooled features: CAMs for new classes (``camloc probe``).

The globally pooled features of a network trained on one task are generic: a linear classifier
fitted on them for *new* classes, put in place of the network's classifier, gives class activation
maps for those classes, ``M_c = sum_k w_ck f_k`` (Zhou et al., CVPR 2016, section 4).

>>> import camloc
>>> from camloc.probe import extract_features, fit_probe, save_head
>>> # model = camloc.load_model("efficientnet_lite0")
>>> # X, y, ids = extract_features(model, dataset, cache_dir="~/.cache/camloc/features")
>>> # probe = fit_probe(X, y, "logistic", C="0.01,0.1,1", class_names=dataset.class_names)
>>> # save_head("my-head", probe, backbone="efficientnet_lite0", weights="DEFAULT")
>>> # camloc.load_model("efficientnet_lite0", head="my-head")  # explain / evaluate as usual
"""

from camloc.probe.features import (FailedImage, Features, default_cache_dir, extract_features,
                                   file_sha256, model_key, pooled_features)
from camloc.probe.fit import CLASSIFIERS, ProbeFit, fit_probe, parse_C, read_head, save_head
from camloc.probe.run import (CENTRE_BOX, ProbeResult, ProbeSettings, apply_head,
                              centre_box_baseline, check_classes, heldout_metrics, run_probe,
                              stratified_split)

__all__ = ["CENTRE_BOX", "CLASSIFIERS", "FailedImage", "Features", "ProbeFit", "ProbeResult",
           "ProbeSettings", "apply_head", "centre_box_baseline", "check_classes",
           "default_cache_dir", "extract_features", "file_sha256", "fit_probe", "heldout_metrics",
           "model_key", "parse_C", "pooled_features", "read_head", "run_probe", "save_head",
           "stratified_split"]
