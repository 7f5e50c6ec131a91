"""A tiny Visivo-like API server with telemetry wired in (the Flask integration).

`python scripts/flask_app.py --port 8001` serves on 127.0.0.1 only. Tests shorten its request
windows with `VISIVO_EXAMPLE_WINDOW_S` (seconds; the library's default is 60).
"""

from __future__ import annotations

import argparse
import os

from flask import Flask, abort, jsonify

from visivo_telemetry import Telemetry
from visivo_telemetry.integrations.flask import instrument

VERSION = "1.4.0"
POSTHOG_KEY = "phc_visivo_example_public_project_key"
"""An application's public PostHog project key, passed in code as Visivo passes its own."""
POSTHOG_HOST = "https://us.i.posthog.com"
PROJECTS = {1: "sales", 2: "marketing"}

app = Flask(__name__)


@app.get("/api/health")
def health() -> object:
    """Liveness probe."""
    return jsonify(status="ok")


@app.route("/api/projects/<int:project_id>/", methods=["GET", "DELETE"])
def project(project_id: int) -> object:
    """One project, or 404."""
    if project_id not in PROJECTS:
        abort(404)
    return jsonify(id=project_id, name=PROJECTS[project_id])


@app.get("/api/boom")
def boom() -> object:
    """A handler that fails, for 500s."""
    raise RuntimeError("boom")


telemetry = instrument(
    app,
    Telemetry(VERSION, api_key=POSTHOG_KEY, host=POSTHOG_HOST, long_running=True),
    window_s=float(os.environ.get("VISIVO_EXAMPLE_WINDOW_S", "60")),
)


def main() -> None:
    """Serve on 127.0.0.1 with Flask's development server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
