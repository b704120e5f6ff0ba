"""Overlays and plots; the fast PNG encoder and the ordered background writer of the overlays."""

from camloc.viz.overlay import (BOX_GT, BOX_PRED, draw_boxes, heatmap_rgb, map_at_size, overlay,
                                overlay_grid, render_explanation)
from camloc.viz.png import png_bytes
from camloc.viz.writer import Done, OrderedWriter

__all__ = ["BOX_GT", "BOX_PRED", "Done", "OrderedWriter", "draw_boxes", "heatmap_rgb",
           "map_at_size", "overlay", "overlay_grid", "png_bytes", "render_explanation"]
