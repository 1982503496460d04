"""The web page at `/`: draw or upload a digit and see what the model says.

The page is static HTML, CSS and JavaScript served by this app (serve/templates, serve/static):
no CDN, so it works offline. Its script calls the public POST /predict like any other client.
"""
from __future__ import annotations

from flask import Blueprint, make_response, render_template

bp = Blueprint("web", __name__)

# Everything the page loads comes from this origin; data: and blob: images are the 28x28 debug
# image in the API response and the preview of an uploaded file.
CSP = "; ".join([
    "default-src 'self'",
    "img-src 'self' data: blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])


@bp.get("/")
def index():
    response = make_response(render_template("index.html"))
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
