"""Evaluation: scoring models, maps and box files against labelled datasets.

:mod:`camloc.evaluation.boxes` scores a box file (COCO instances, camloc ``results.jsonl``)
against a dataset's ground-truth boxes (``camloc score --boxes``).
"""
