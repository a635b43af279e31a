"""Serve the plotly.js bundled with the plotly package as static/vendor/plotly.min.js.

Charts must work on hospital networks without internet access, so no CDN; and
copying the file into the repository would let it drift from the installed version.
"""
from pathlib import Path

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_NAME = "vendor/plotly.min.js"


class PlotlyFinder(BaseFinder):
    def check(self, **kwargs):
        return []

    def find(self, path, find_all=False, **kwargs):
        if path == STATIC_NAME:
            return [str(PLOTLY_JS)] if find_all else str(PLOTLY_JS)
        return []  # Django's finders answer "not found" with an empty list, whatever find_all says

    def list(self, ignore_patterns):
        storage = FileSystemStorage(location=str(PLOTLY_JS.parent))
        storage.prefix = "vendor"
        yield PLOTLY_JS.name, storage
