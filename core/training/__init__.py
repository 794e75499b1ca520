"""Stage 4, training: the run itself, its phases, continuing a run, and training across devices and workers."""
