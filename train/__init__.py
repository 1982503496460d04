"""Training stage: MNIST IDX files -> dygraph training -> self-describing checkpoints in runs/."""
