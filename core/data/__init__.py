"""Stage 1, data: what a user uploads, read safely (sources, limits, names), laid out, normalized and split into a dataset."""
