"""Serving stage: a Flask app under gunicorn that classifies digit images with Paddle Inference."""
