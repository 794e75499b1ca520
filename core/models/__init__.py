"""Stage 2, models: backbones and their weights, the classifier built on them, the embedding cache and the runtimes that compute it (Keras, LiteRT), prediction, and the plan of a run."""
