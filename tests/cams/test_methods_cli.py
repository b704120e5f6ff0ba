"""``camloc methods``: every registered method listed, JSON metadata matches the classes."""

from __future__ import annotations

import json

from camloc.cli import main


def test_methods_json_lists_every_method_with_its_metadata(capsys):
    from camloc.cams import METHODS

    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(METHODS)
    by_name = {r["name"]: r for r in rows}
    assert [n for n, r in by_name.items() if r["needs_head"]] == ["cam"]
    for name, cls in METHODS.items():
        assert by_name[name]["needs_grad"] == cls.info.needs_grad
        assert by_name[name]["family"] in ("exact", "gradient", "perturbation", "projection")
        assert by_name[name]["paper"] and by_name[name]["cost"]


def test_methods_table(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("cam", "gradcam++", "scorecam", "eigencam", "smoothgradcam++"):
        assert name in out
