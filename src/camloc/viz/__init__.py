"""Overlays and plots."""

from camloc.viz.overlay import (BOX_GT, BOX_PRED, draw_boxes, heatmap_rgb, map_at_size, overlay,
                                overlay_grid, render_explanation)

__all__ = ["BOX_GT", "BOX_PRED", "draw_boxes", "heatmap_rgb", "map_at_size", "overlay",
           "overlay_grid", "render_explanation"]
