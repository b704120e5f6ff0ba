"""Overlays and plots."""

from camloc.viz.overlay import BOX_GT, BOX_PRED, draw_boxes, heatmap_rgb, overlay, overlay_grid

__all__ = ["BOX_GT", "BOX_PRED", "draw_boxes", "heatmap_rgb", "overlay", "overlay_grid"]
