"""One reader module per dataset format; :func:`camloc.data.open.open_dataset` dispatches."""
