"""Linear probes on a frozen network's pooled features (``camloc probe``)."""
