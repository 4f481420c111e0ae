"""The web page and the API reference as files over HTTP: what is served, with which type and headers,
and that the page speaks only the documented API. (What a browser does with them:
``test_webpage_browser.py``.)"""

from __future__ import annotations

import re

from facade.assets import CONTENT_TYPES
from facade.webpage import WEB_DIR
from tests.helpers.stack import Stack

REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')


def referenced(html: str) -> list[str]:
    """The URLs a page's tags load (scripts, styles, icons, images, links)."""
    return REFERENCE.findall(html)


async def test_the_page_is_served_at_the_root_with_its_security_headers(stack: Stack) -> None:
    r = await stack.http.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/web/app.js">' in r.text
    assert (await stack.http.head("/")).status_code == 200


async def test_every_file_the_page_loads_is_served_locally_with_its_own_type(stack: Stack) -> None:
    html = (await stack.http.get("/")).text
    local = [u for u in referenced(html) if u.startswith("/web/")]
    assert {"/web/app.js", "/web/style.css", "/web/favicon.svg"} <= set(local)
    assert [u for u in referenced(html) if "//" in u] == []  # nothing from another origin
    for url in local:
        r = await stack.http.get(url)
        assert r.status_code == 200, url
        assert r.headers["content-type"] == CONTENT_TYPES["." + url.rsplit(".", 1)[1]], url
        assert r.headers["x-content-type-options"] == "nosniff"
    # the modules the page imports are there too (every .js file of the page is)
    for path in WEB_DIR.glob("*.js"):
        r = await stack.http.get(f"/web/{path.name}")
        assert r.status_code == 200 and r.content == path.read_bytes()
        assert r.headers["content-type"] == "text/javascript; charset=utf-8"


async def test_a_current_copy_is_answered_304_and_an_unknown_file_404(stack: Stack) -> None:
    r = await stack.http.get("/web/app.js")
    etag = r.headers["etag"]
    assert r.headers["cache-control"] == "no-cache"
    again = await stack.http.get("/web/app.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    changed = await stack.http.get("/web/app.js", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == r.content
    for url in ("/web/nothing.js", "/web/index.html", "/web/..%2Fapp.py", "/web/"):
        assert (await stack.http.get(url)).status_code == 404, url


async def test_the_page_calls_only_documented_routes(stack: Stack) -> None:
    doc = (await stack.http.get("/openapi.json")).json()
    documented = [
        re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$") for path in doc["paths"]
    ]
    called: set[str] = set()
    for path in WEB_DIR.glob("*.js"):
        for literal in re.findall(r"""["'`](/api/[^"'`?]*)""", path.read_text()):
            called.add(re.sub(r"\$\{[^}]*\}", "x", literal))  # a template's ${…} is one path segment
    assert {"/api/chat/send", "/api/chat/stream", "/api/auth/nonce", "/api/images/generate"} <= called
    for url in called:
        assert any(p.match(url) for p in documented), f"{url} is not in the API document"


async def test_the_api_reference_loads_nothing_from_another_origin(stack: Stack) -> None:
    r = await stack.http.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["x-content-type-options"] == "nosniff"
    urls = referenced(r.text)
    assert urls and [u for u in urls if "//" in u] == []
    assert "validatorUrl" in r.text  # no badge asking an outside validator
    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "png": "image/png"}
    for url in urls:
        got = await stack.http.get(url)
        assert got.status_code == 200, url
        assert got.headers["content-type"] == types[url.rsplit(".", 1)[1]]
        assert got.headers["x-content-type-options"] == "nosniff"
    assert b"SwaggerUIBundle" in (await stack.http.get("/docs/ui/swagger-ui-bundle.js")).content
    assert (await stack.http.get("/docs/ui/index.html")).status_code == 404
