"""`make bench`: how fast training, the model, preprocessing and the HTTP service are on this machine."""
