"""The WordNet grouping of ImageNet classes and the centre-box baseline on the dev set."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from camloc.errors import ConfigError
from camloc.probe.imagenet_groups import GROUPS, derive_groups, imagenet_groups

FAKE_DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by
  2 Princeton University under the following license.
00000001 03 n 01 entity 0 000 | that which exists
00000002 05 n 02 animal 0 beast 0 001 @ 00000001 n 0000 | a living organism
00000003 05 n 01 dog 0 002 @ 00000002 n 0000 ~ 00000004 n 0000 | a dog
00000004 05 n 01 puppy 0 001 @ 00000003 n 0000 | a young dog
00000005 06 n 01 Ford 0 001 @i 00000001 n 0000 | an instance, not under animal
00000006 06 n 01 dogfood 0 002 + 00000003 n 0101 @ 00000001 n 0000 | not a dog: '+' is no hypernym
"""


def test_derive_groups_follows_hypernyms_in_priority_order(tmp_path: Path) -> None:
    f = tmp_path / "data.noun"
    f.write_text(FAKE_DATA_NOUN)
    groups = (("dog", ("n00000003",)), ("animal", ("n00000002",)), ("thing", ("n00000001",)))
    assert derive_groups(f, ["n00000004", "n00000002", "n00000005", "n00000006"], groups) == \
        ["dog", "animal", "thing", "thing"]
    assert derive_groups(f, ["n00000004"], (("animal", ("n00000002",)),)) == ["animal"]
    assert derive_groups(f, ["n00000001"], groups[:2]) == [None]
    with pytest.raises(ConfigError, match="not in"):
        derive_groups(f, ["n09999999"], groups)
    with pytest.raises(ConfigError, match="not found"):
        derive_groups(tmp_path / "missing", ["n00000001"], groups)


def test_shipped_imagenet_groups() -> None:
    names, groups = imagenet_groups()
    assert names == [n for n, _ in GROUPS] and len(groups) == 1000
    counts = Counter(groups)
    assert counts["dog"] == 118 and counts["bird"] == 59  # the well-known ImageNet subtrees
    assert groups[207] == "dog" and groups[94] == "bird" and groups[1] == "other_animal"
    assert groups[817] == "vehicle" and groups[954] == "food" and groups[0] == "other_animal"
    assert all(g is None or g in names for g in groups)


WORDNET = Path("/usr/share/wordnet/data.noun")


@pytest.mark.skipif(not WORDNET.is_file(), reason="WordNet 3.0 (Debian wordnet-base) not installed")
def test_shipped_table_matches_wordnet() -> None:
    assert derive_groups(WORDNET) == imagenet_groups()[1]


def test_centre_box_baseline_matches_the_dev_set_reference(dev_set: Path) -> None:
    from camloc.data.datasets import open_dataset
    from camloc.probe import centre_box_baseline

    res = centre_box_baseline(open_dataset(dev_set))
    assert res["count"] == 511
    assert res["gt_known_loc"] == pytest.approx(17.42, abs=0.005)  # dev-set README
