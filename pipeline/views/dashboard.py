"""The operator's dashboard: one static page (``static/dashboard.html``) that reads the public
API from the browser: live counts, a space's series, sensor health. No build step: plain HTML,
CSS and a small SVG chart of its own."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

from faust.web import Request, Response, View

from pipeline.app import app


@lru_cache(maxsize=1)
def page() -> str:
    return files("pipeline.views").joinpath("static/dashboard.html").read_text(encoding="utf-8")


def dashboard(view: View) -> Response:
    return view.html(page(), headers={"Cache-Control": "no-cache"})


@app.page("/dashboard")
class DashboardView(View):
    async def get(self, request: Request) -> Response:
        return dashboard(self)
