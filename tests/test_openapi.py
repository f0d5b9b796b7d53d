"""The OpenAPI document describes every route the worker serves, and nothing else."""

from __future__ import annotations

FAUST_OWN = ("/router", "/table")
"""Faust's own blueprints (its table router's pages), not part of our API."""


def test_every_route_is_described_and_every_description_is_a_route():
    import pipeline.views  # noqa: F401  (registers the routes on the Faust app)
    from pipeline.app import app
    from pipeline.views.openapi import document

    served = {(route.method, route.resource.canonical)
              for route in app.web.web_app.router.routes()
              if route.method not in ("HEAD", "OPTIONS", "*")
              and not route.resource.canonical.startswith(FAUST_OWN)}
    doc = document()
    described = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    # Faust registers the methods a view defines, and no other (HEAD aside).
    assert served == described, (served - described, described - served)
    for path, ops in doc["paths"].items():
        for op in ops.values():
            for ref in _refs(op):
                name = ref.rsplit("/", 1)[1]
                assert name in doc["components"]["schemas"] or \
                    name in doc["components"]["responses"], ref


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
