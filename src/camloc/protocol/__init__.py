"""The WSOL evaluation protocol's data side, shared by ``evaluate``, ``compare`` and the few-shot
localizer's fit: labelled datasets read in batches with their ground-truth boxes rescaled to the
evaluation grid (:mod:`camloc.protocol.batches`). It sits above ``data`` and ``metrics`` (it uses
both) and below the verbs' packages, so none of them imports another to read a dataset.
"""
