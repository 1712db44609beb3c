"""Serves the npm files the pages load (ml_platform.core.frontend.VENDOR_FILES) as static files, and no others."""

from pathlib import Path

from django.conf import settings
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

from ml_platform.core.frontend import VENDOR_FILES


class NodeModulesFinder(BaseFinder):
    """A static files finder for chosen files under node_modules, each under its ``vendor/…`` name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.files: dict[str, tuple[str, FileSystemStorage]] = {}  # static path -> (path in storage, storage)
        for prefix, (folder, patterns) in VENDOR_FILES.items():
            root = Path(settings.NODE_MODULES_DIR) / folder
            storage = FileSystemStorage(location=root)
            storage.prefix = prefix  # collectstatic writes the files under this folder
            for pattern in patterns:
                for path in sorted(root.glob(pattern)):
                    if path.is_file():
                        relative = path.relative_to(root).as_posix()
                        self.files[f"{prefix}/{relative}"] = (relative, storage)

    def find(self, path, find_all=False, **kwargs):
        if path not in self.files:
            return []
        relative, storage = self.files[path]
        return [storage.path(relative)] if find_all else storage.path(relative)

    def list(self, ignore_patterns):
        yield from self.files.values()
