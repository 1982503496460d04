"""Export stage: a training checkpoint -> a verified, versioned model folder under models/."""
