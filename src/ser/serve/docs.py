"""``/docs`` (Swagger UI) and ``/redoc`` that work offline.

FastAPI's pages load their scripts, styles and fonts from CDNs, so they are blank on a
machine without internet. The ``fastapi-offline`` package ships the same Swagger UI and
ReDoc bundles; they are served from ``/docs-assets`` and the pages point there (no
Google fonts). Without that package the two pages say where the OpenAPI document is.

Example:
    >>> from fastapi import FastAPI
    >>> app = FastAPI(docs_url=None, redoc_url=None)
    >>> install_docs(app)
    >>> sorted(r.path for r in app.routes if r.path in ("/docs", "/redoc"))
    ['/docs', '/redoc']
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs-assets"
FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path | None:
    """The folder of bundled Swagger UI / ReDoc files (fastapi-offline's), without importing it."""
    spec = importlib.util.find_spec("fastapi_offline")
    for root in (spec.submodule_search_locations or []) if spec else []:
        static = Path(root) / "static"
        if all((static / f).is_file() for f in FILES):
            return static
    return None


def install_docs(app: FastAPI, title: str = "ser") -> None:
    """Add ``/docs``, ``/redoc`` and their assets to ``app`` (created with ``docs_url=None, redoc_url=None``)."""
    static = assets_dir()
    openapi = app.openapi_url or "/openapi.json"
    if static is not None:
        app.mount(ASSETS, StaticFiles(directory=static), name="docs-assets")

    @app.api_route("/docs", methods=["GET", "HEAD"], include_in_schema=False)
    async def swagger() -> HTMLResponse:
        if static is None:
            return _missing(openapi)
        return get_swagger_ui_html(openapi_url=openapi, title=f"{title} - Swagger UI",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")

    @app.api_route("/redoc", methods=["GET", "HEAD"], include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if static is None:
            return _missing(openapi)
        return get_redoc_html(openapi_url=openapi, title=f"{title} - ReDoc", redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)


def _missing(openapi: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><title>ser API</title><p>The interactive docs need the "
                        f"<code>fastapi-offline</code> package (pip install fastapi-offline). The OpenAPI "
                        f"document is at <a href=\"{openapi}\">{openapi}</a>.</p>")
