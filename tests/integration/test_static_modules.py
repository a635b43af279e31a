"""Page scripts are ES modules that the browser loads as they are (no build step): each template
loads its page module, and every import a module makes must name a file that collectstatic puts
where the browser will look for it, under the project's storage and under a hashing one."""
import json
import re
from pathlib import Path
from urllib.parse import urljoin

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.templatetags.static import static
from django.test import override_settings
from whitenoise.storage import CompressedManifestStaticFilesStorage

TEMPLATES = Path(settings.BASE_DIR) / "frontend" / "templates"
SOURCES = Path(settings.BASE_DIR) / "frontend" / "static"
STATIC_TAG = re.compile(r"""\{%\s*static\s+['"]([^'"]+)['"]\s*%\}""")
MODULE_TAG = re.compile(r"""<script\s+type="module"\s+src="\{%\s*static\s+'([^']+)'\s*%\}"></script>""")
PLOTLY_TAG = "<script src=\"{% static 'vendor/plotly.min.js' %}\"></script>"
# import … from "x"; export … from "x"; import "x"; import("x")
IMPORTS = (
    re.compile(r"""^\s*(?:import|export)\b[^"'`;]*?\bfrom\s*["']([^"']+)["']""", re.MULTILINE),
    re.compile(r"""^\s*import\s*["']([^"']+)["']""", re.MULTILINE),
    re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)"""),
)

class HashingStorage(CompressedManifestStaticFilesStorage):
    """What the settings would need to hash file names: Django rewrites the modules' imports
    to the hashed names only when asked to."""

    support_js_module_import_aggregation = True


def found(name: str) -> Path | None:
    """Where the finders have a static file. (find_all: frontend.finders.PlotlyFinder answers a
    plain find() of any other name with None, which finders.find() turns into a truthy [None].)"""
    paths = finders.find(name, find_all=True)
    return Path(paths[0]) if paths else None


def imports_of(source: str) -> list[str]:
    return [match.group(1) for pattern in IMPORTS for match in pattern.finditer(source)]


def page_templates() -> dict[str, str]:
    """Every page's template: not base.html, nor the parts pages include (named _*.html)."""
    return {path.name: path.read_text() for path in (TEMPLATES / "frontend").glob("*.html")
            if path.name != "base.html" and not path.name.startswith("_")}


def page_modules() -> list[str]:
    return [MODULE_TAG.findall(text)[0] for text in page_templates().values()]


def module_graph(entry: str) -> set[str]:
    """The static names of a page module and of every module it reaches, from the sources."""
    seen, todo = set(), [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = found(name).read_text()
        todo.extend(urljoin(name, specifier) for specifier in imports_of(source))
    return seen


def test_app_js_is_gone_and_no_template_loads_it():
    assert found("frontend/app.js") is None
    for path in TEMPLATES.rglob("*.html"):
        assert "app.js" not in path.read_text(), path


def test_each_page_loads_one_module_of_its_own_and_plotly_where_it_draws_charts():
    modules = {}
    for name, text in page_templates().items():
        tags = MODULE_TAG.findall(text)
        assert len(tags) == 1, f"{name} loads {len(tags)} page modules"
        module = modules[name] = tags[0]
        assert module.startswith("frontend/js/pages/") and found(module), f"{name}: {module}"
        draws_charts = "frontend/js/charts.js" in module_graph(module)
        assert (PLOTLY_TAG in text) == draws_charts, f"{name}: Plotly is loaded where, and only where, charts are drawn"
        if draws_charts:
            assert text.index(PLOTLY_TAG) < text.index(module), f"{name}: Plotly must be there before the module runs"
    assert len(set(modules.values())) == len(modules), "one module per page"
    for path in TEMPLATES.rglob("*.html"):
        for name in STATIC_TAG.findall(path.read_text()):
            assert found(name), f"{path.name} names {name}, which no finder has"


def test_modules_import_by_relative_path_only_and_each_is_used():
    """The browser resolves an import against the module's own address: a bare name ("plotly")
    needs a build step or an import map, and an absolute one misses STATIC_URL."""
    reached = set().union(*(module_graph(entry) for entry in page_modules()))
    for name in reached:
        for specifier in imports_of(found(name).read_text()):
            assert specifier.startswith(("./", "../")) and specifier.endswith(".js"), f"{name} imports {specifier!r}"
    written = {path.relative_to(SOURCES).as_posix() for path in (SOURCES / "frontend" / "js").rglob("*.js")}
    assert written == reached, f"modules no page loads: {sorted(written - reached)}"


@pytest.mark.parametrize("backend", [settings.STORAGES["staticfiles"]["BACKEND"], f"{__name__}.HashingStorage"])
def test_every_import_resolves_in_the_collected_files(backend, tmp_path):
    """Follows each page's module and its imports as a browser would, from the address the template
    gives it, through the files collectstatic wrote."""
    storages = {**settings.STORAGES, "staticfiles": {"BACKEND": backend}}
    collected = tmp_path / "collected"
    with override_settings(STATIC_ROOT=collected, STORAGES=storages):
        call_command("collectstatic", "--noinput", verbosity=0)
        entries = [static(name) for name in page_modules()]
    manifest = collected / "staticfiles.json"
    hashed = set(json.loads(manifest.read_text())["paths"].values()) if manifest.exists() else None
    seen, todo = set(), entries
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        assert url.startswith(settings.STATIC_URL), url
        name = url.removeprefix(settings.STATIC_URL)
        assert (collected / name).is_file(), f"{url} is not among the collected files"
        if hashed is not None:
            assert name in hashed, f"{url}: a module reached by its unhashed name escapes cache busting"
        todo.extend(urljoin(url, specifier) for specifier in imports_of((collected / name).read_text()))
    assert len(seen) == len(list((SOURCES / "frontend" / "js").rglob("*.js"))), sorted(seen)
