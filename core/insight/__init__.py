"""Stage 3, insight: what a model and a dataset say about themselves: evaluation, Grad-CAM, the embedding map, the health check."""
