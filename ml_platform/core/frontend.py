"""The front end's libraries and the import map that names every ES module for the browser.

The pages' modules import libraries by their npm names (``import { Chart } from "chart.js"``) and each
other by relative paths (``"./common.js"``). The import map in base.html turns a name into its static
URL, and, where collectstatic gave files hashed names (production), each module's plain URL into its
hashed one: a relative import resolves to the plain URL, and the map sends it to the file of this deploy.
Hashing through the map, rather than by rewriting the imports inside the files, also works for the import
cycles libraries have (d3-selection's), where no file's hash could be computed before the others'.

Only the files in ``VENDOR_FILES`` are served from node_modules (ml_platform.core.staticfiles): a
package's folder also holds builds for other module systems and plugins that nothing here loads.
"""

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.templatetags.static import static

# Static folder -> (folder under node_modules, glob patterns of the files served from it). Source maps are
# served with their files: collectstatic follows a file's sourceMappingURL and fails on a missing one.
VENDOR_FILES: dict[str, tuple[str, list[str]]] = {
    "vendor/htmx.org": ("htmx.org/dist", ["htmx.esm.js"]),
    "vendor/chart.js": ("chart.js/dist", ["chart.js", "chart.js.map", "chunks/index.js", "chunks/index.js.map"]),
    "vendor/kurkle-color": ("@kurkle/color/dist", ["color.esm.js"]),
    "vendor/d3-selection": ("d3-selection/src", ["**/*.js"]),
    # The ridgeline's scales and areas (training/view, js/components/ridgeline.js) and what they import.
    "vendor/d3-scale": ("d3-scale/src", ["**/*.js"]),
    "vendor/d3-shape": ("d3-shape/src", ["**/*.js"]),
    "vendor/d3-array": ("d3-array/dist", ["d3-array.mjs"]),
    "vendor/d3-color": ("d3-color/dist", ["d3-color.mjs"]),
    "vendor/d3-format": ("d3-format/dist", ["d3-format.mjs"]),
    "vendor/d3-interpolate": ("d3-interpolate/dist", ["d3-interpolate.mjs"]),
    "vendor/d3-path": ("d3-path/dist", ["d3-path.mjs"]),
    "vendor/d3-time": ("d3-time/dist", ["d3-time.mjs"]),
    "vendor/d3-time-format": ("d3-time-format/dist", ["d3-time-format.mjs"]),
}

# Bare module name -> the static file it means. Chart.js imports @kurkle/color by name.
IMPORTS: dict[str, str] = {
    "htmx.org": "vendor/htmx.org/htmx.esm.js",
    "chart.js": "vendor/chart.js/chart.js",
    "@kurkle/color": "vendor/kurkle-color/color.esm.js",
    "d3-selection": "vendor/d3-selection/index.js",
    "d3-scale": "vendor/d3-scale/index.js",
    "d3-shape": "vendor/d3-shape/index.js",
    "d3-array": "vendor/d3-array/d3-array.mjs",
    "d3-color": "vendor/d3-color/d3-color.mjs",
    "d3-format": "vendor/d3-format/d3-format.mjs",
    "d3-interpolate": "vendor/d3-interpolate/d3-interpolate.mjs",
    "d3-path": "vendor/d3-path/d3-path.mjs",
    "d3-time": "vendor/d3-time/d3-time.mjs",
    "d3-time-format": "vendor/d3-time-format/d3-time-format.mjs",
}

MODULE_FOLDERS = ("ml_platform/", "vendor/")

# The stylesheets every page links: the tokens, the base, then one file per component (in name order; no
# component's rules depend on another's).
_CSS = Path(__file__).resolve().parent.parent / "static" / "ml_platform" / "css"
STYLESHEETS = [
    "ml_platform/css/tokens.css",
    "ml_platform/css/base.css",
    *(f"ml_platform/css/components/{path.name}" for path in sorted((_CSS / "components").glob("*.css"))),
]


def import_map() -> dict:
    """The import map: the bare names, then each module's plain URL whose file has a hashed name."""
    imports = {name: static(path) for name, path in IMPORTS.items()}
    # The manifest's names (a manifest storage has them; the plain one of the tests and debug mode has none).
    for name in getattr(staticfiles_storage, "hashed_files", {}):
        if name.endswith((".js", ".mjs")) and name.startswith(MODULE_FOLDERS):
            plain, url = f"{settings.STATIC_URL}{name}", static(name)
            if url != plain:  # debug mode serves the plain names even with a manifest
                imports[plain] = url
    return {"imports": imports}
