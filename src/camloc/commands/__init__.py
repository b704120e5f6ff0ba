"""One module per CLI verb; each defines ``register(app)`` and keeps its logic in the library."""
