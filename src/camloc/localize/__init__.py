"""Maps -> masks and boxes (the paper's threshold + connected-component rule)."""

from camloc.localize.boxes import (EMPTY_BOX, boxes_from_map, component_boxes, largest_box,
                                   largest_boxes, threshold_mask)

__all__ = ["EMPTY_BOX", "boxes_from_map", "component_boxes", "largest_box", "largest_boxes",
           "threshold_mask"]
