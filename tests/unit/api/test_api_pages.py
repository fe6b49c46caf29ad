"""Page CSPs allow exactly the page's own inline blocks, by hash."""

from __future__ import annotations

import base64
import hashlib
import re

from gridpilot.api.pages import (
    CONSOLE_ASSETS,
    CONSOLE_ASSETS_URL,
    CONSOLE_DIR,
    CONSOLE_PAGES,
    build_console_page,
    page_csp,
    workflow_url,
)


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _directives(csp: str) -> dict[str, list[str]]:
    parts = [d.split() for d in csp.split(";")]
    return {p[0]: p[1:] for p in parts}


def test_page_csp_hashes_each_inline_script_and_style_and_nothing_else() -> None:
    html = (
        "<html><head><style>\nbody{margin:0}\n</style>"
        '<script src="/a.js"></script></head>'
        "<body><script>\nconst x = 1;\n</script><SCRIPT type='module'>go()</SCRIPT></body></html>"
    )
    d = _directives(page_csp(html))
    assert d["script-src"] == ["'self'", _sha("\nconst x = 1;\n"), _sha("go()")]
    assert d["style-src"] == ["'self'", _sha("\nbody{margin:0}\n")]
    assert d["default-src"] == ["'none'"] and d["frame-ancestors"] == ["'none'"]
    assert d["connect-src"] == ["'self'"]


def test_page_without_inline_code_allows_only_its_origin() -> None:
    d = _directives(page_csp('<script src="/x.js"></script>'))
    assert d["script-src"] == ["'self'"] and d["style-src"] == ["'self'"]


def test_console_pages_load_only_the_console_assets_the_package_serves() -> None:
    for name in CONSOLE_PAGES:
        html = build_console_page(name)
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        local = [r for r in refs if r.startswith(CONSOLE_ASSETS_URL + "/")]
        for shared in ("console.css", "console.js", "favicon.svg"):
            assert f"{CONSOLE_ASSETS_URL}/{shared}" in local, name
        # every file a page loads is one the package serves; links go to pages
        assert {r.rsplit("/", 1)[1] for r in local} <= set(CONSOLE_ASSETS), name
        assert "http://" not in html and "https://" not in html
        # style="" attributes would need 'unsafe-inline': the CSP allows none
        assert "style=" not in html, name
    for asset in CONSOLE_ASSETS:
        assert (CONSOLE_DIR / asset).is_file()
    for script in ("console.js", "chart.js"):
        assert "style=" not in (CONSOLE_DIR / script).read_text()


def test_the_workflow_link_is_the_temporal_uis_workflow_page_less_the_id() -> None:
    assert workflow_url(None, "default") is None
    assert workflow_url("", "default") is None
    base = workflow_url("http://ui.example:8233/", "prod/eu")
    assert base == "http://ui.example:8233/namespaces/prod%2Feu/workflows/"
    page = build_console_page("dispatch", 'http://x/"><script>')
    assert 'data-workflow-url="http://x/&quot;&gt;&lt;script&gt;"' in page
    assert "data-workflow-url" not in build_console_page("dispatch")
