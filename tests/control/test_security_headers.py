"""Security headers on every answer: a CSP that runs only the platform's own scripts, no framing, no
referrer to other sites, no content sniffing; HSTS only when the platform is served over HTTPS."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

APP = Path(settings.BASE_DIR) / "ml_platform"


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in policy.split(";") if part.strip())}


NONCE = re.compile(r"'nonce-[A-Za-z0-9+/]{22}=='")  # 16 random bytes, base64


def assert_secured(response) -> None:
    csp = directives(response)
    # The platform's own scripts, and on a page the one inline script its nonce allows (the import map).
    script_src = csp["script-src"]
    assert script_src[0] == "'self'" and len(script_src) <= 2 and all(NONCE.fullmatch(v) for v in script_src[1:])
    assert csp["style-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Strict-Transport-Security" not in response  # plain HTTP by default


def test_pages_send_security_headers(olivia, project):
    assert_secured(Client().get("/login/"))
    browser = Client()
    browser.force_login(olivia)
    assert_secured(browser.get(f"/projects/{project.id}/"))


def test_api_answers_send_security_headers(api, project):
    assert_secured(api.get(f"/api/projects/{project.id}/"))
    assert_secured(api.get("/api/datasets/999999/"))  # errors too


def test_api_answers_allow_no_inline_script(api, project):
    assert directives(api.get(f"/api/projects/{project.id}/"))["script-src"] == ["'self'"]


def import_map_nonce(html: str) -> str:
    return re.search(r'<script type="importmap" nonce="([^"]+)">', html)[1]


def test_a_pages_import_map_carries_the_nonce_its_answer_allows(olivia, project):
    browser = Client()
    browser.force_login(olivia)
    first, second = (browser.get(f"/projects/{project.id}/") for _ in range(2))
    nonce = import_map_nonce(first.content.decode())
    assert directives(first)["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert import_map_nonce(second.content.decode()) != nonce  # a new one on every answer


HSTS_PROBE = """
import json, django
django.setup()
from django.test import Client
answer = Client().get("/healthz", secure=True, headers={"host": "localhost"})
print(json.dumps({"status": answer.status_code, "hsts": answer.get("Strict-Transport-Security")}))
"""


def hsts_header(tmp_path, **env) -> str | None:
    clean = {k: v for k, v in os.environ.items() if k not in ("ML_PLATFORM_SECURE_COOKIES", "DATABASE_URL")}
    clean.update(env, DJANGO_SETTINGS_MODULE="ml_platform.settings", ML_PLATFORM_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", HSTS_PROBE], env=clean, cwd=settings.BASE_DIR, capture_output=True, text=True, check=True
    )
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["status"] == 200
    return answer["hsts"]


def test_hsts_only_with_secure_cookies(tmp_path):
    assert hsts_header(tmp_path) is None
    assert hsts_header(tmp_path, ML_PLATFORM_SECURE_COOKIES="true") == "max-age=31536000"


# The one inline script the CSP lets run: the import map, with the answer's nonce (browsers take no other kind).
NONCED_IMPORT_MAP = '<script type="importmap" nonce="{{ request.csp_nonce }}">'


def test_templates_and_scripts_have_nothing_inline_the_csp_would_refuse():
    """No inline <script> but the nonce'd import map (JSON data blocks are not run), no onclick=..., no
    style="..." in a template or in markup a script writes: the CSP above refuses them, so the page would
    silently lose them."""
    found, import_maps = [], []
    for path in [*APP.glob("**/templates/**/*.html"), *APP.glob("static/ml_platform/**/*.js")]:
        text = path.read_text()
        import_maps += [path.relative_to(APP).as_posix()] * text.count(NONCED_IMPORT_MAP)
        text = text.replace(NONCED_IMPORT_MAP, "")
        for pattern in (
            r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>",
            r"\son[a-z]+\s*=\s*[\"']",
            r"\sstyle\s*=\s*[\"']",
            r"javascript:",
            r"\s(data-)?hx-on",
            r"\snonce=",
        ):
            found += [f"{path.relative_to(APP)}: {m[0].strip()}" for m in re.finditer(pattern, text)]
    assert found == []
    assert import_maps == ["templates/base.html"]


def test_the_api_docs_load_only_the_platforms_own_scripts(olivia):
    """Swagger UI is served from django-ninja's static files: under the CSP a CDN's script would not run."""
    browser = Client()
    browser.force_login(olivia)
    docs = browser.get("/api/docs")
    assert docs.status_code == 200
    html = docs.content.decode()
    scripts = re.findall(r"<script([^>]*)>", html)
    sources = [re.search(r'src="([^"]+)"', s)[1] for s in scripts if "src=" in s]
    assert sources and all(src.startswith("/static/ninja/") for src in sources)
    assert all("src=" in s or "application/json" in s for s in scripts)
    assert not re.search(r'(src|href)="(https?:)?//', html)  # its stylesheet and icons too
    for src in sources:
        assert browser.get(src).status_code == 200, src
