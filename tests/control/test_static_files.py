"""Static files as production serves them: hashed names from collectstatic's manifest (so a deploy never
serves a stale script), an import map that sends every module's plain URL to its hashed file, and nothing
of node_modules but the files the pages load. The other tests serve plain names from the finders."""

import json
import posixpath
import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

HASHED = re.compile(r"\.[0-9a-f]{12}\.(m?js|css)$")
# The relative module specifiers of an ES module: import … from "./x.js", export … from "../y.js", import("./z.js").
RELATIVE_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["'](\.\.?/[^"']+)["']""")


@pytest.fixture
def collected(settings, tmp_path):
    """collectstatic into a fresh folder, with the manifest storage of production (as `make up` runs it)."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def import_map(html: str) -> dict[str, str]:
    return json.loads(re.search(r'<script type="importmap"[^>]*>(.*?)</script>', html, re.S)[1])["imports"]


def page_of(olivia, project) -> tuple[Client, str]:
    browser = Client()  # a new client: its whitenoise reads the collected folder
    browser.force_login(olivia)
    return browser, browser.get(f"/projects/{project.id}/").content.decode()


def test_a_page_links_its_stylesheets_and_scripts_by_hashed_names(collected, olivia, project):
    browser, html = page_of(olivia, project)
    urls = [
        *re.findall(r'<link rel="stylesheet" href="([^"]+)"', html),
        *re.findall(r'<script type="module" src="([^"]+)"', html),
    ]
    assert len(urls) > 3 and all(HASHED.search(url) for url in urls), urls
    for url in urls:
        answer = browser.get(url)
        assert answer.status_code == 200, url
        assert "immutable" in answer["Cache-Control"]  # a hashed name never changes its content


def test_the_import_map_sends_every_module_to_its_hashed_file(collected, olivia, project):
    browser, html = page_of(olivia, project)
    imports = import_map(html)
    assert {"htmx.org", "chart.js", "@kurkle/color", "d3-selection"} <= set(imports)
    assert all(HASHED.search(url) for url in imports.values())
    # Each module's relative imports resolve to a plain URL the map knows, so none loads an unhashed file.
    for url in set(imports.values()):
        answer = browser.get(url)
        assert answer.status_code == 200, url
        source = b"".join(answer.streaming_content).decode()
        for specifier in RELATIVE_IMPORT.findall(source):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(url), specifier))
            assert resolved in imports, f"{url} imports {specifier} ({resolved}), which the import map lacks"


# The d3 packages published as one ES module each (dist/<name>.mjs), imported by d3-scale and d3-shape.
D3_BUNDLES = ("d3-array", "d3-color", "d3-format", "d3-interpolate", "d3-path", "d3-time", "d3-time-format")


def test_the_tests_serve_plain_names_and_the_map_names_only_the_libraries(olivia, project):
    _, html = page_of(olivia, project)
    assert import_map(html) == {
        "htmx.org": "/static/vendor/htmx.org/htmx.esm.js",
        "chart.js": "/static/vendor/chart.js/chart.js",
        "@kurkle/color": "/static/vendor/kurkle-color/color.esm.js",
        "d3-selection": "/static/vendor/d3-selection/index.js",
        "d3-scale": "/static/vendor/d3-scale/index.js",
        "d3-shape": "/static/vendor/d3-shape/index.js",
        **{name: f"/static/vendor/{name}/{name}.mjs" for name in D3_BUNDLES},
    }


def test_only_the_npm_files_the_pages_load_are_static_files():
    served = {
        f"{getattr(storage, 'prefix', None) or ''}/{path}".lstrip("/")
        for finder in finders.get_finders()
        for path, storage in finder.list([])
    }
    vendor = {path for path in served if path.startswith("vendor/")}
    assert {"vendor/chart.js/chart.js", "vendor/d3-selection/selection/index.js"} <= vendor
    assert not {path for path in vendor if path.endswith((".cjs", ".umd.js", ".min.js", ".d.ts", ".json"))}
    assert not any(path.startswith("vendor/htmx.org/ext/") for path in vendor)  # plugins importing ../htmx
    assert finders.find("vendor/chart.js/chart.umd.js") is None
