"""Model names, families, conditions, methods, metrics, data names, configs, versions and file names are user
text: they must reach the page as text, never as markup, and never break out of a <script> block."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from conftest import PROBE

from reports.html import BOOT_JS, RUNTIME_FILE, vega_bundle


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self.text: list[str] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script, self._buffer = dict(attrs), []

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._buffer)))
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self._buffer.append(data)
        else:
            self.text.append(data)


def _parse(page: Path) -> _Elements:
    parser = _Elements()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _pages(root: Path) -> list[Path]:
    return sorted(root.rglob("*.html"))


CHARTLESS = ("failures.html",)
"""Pages of sentences and tables only: they load no chart runtime at all."""


def _chart_pages(root: Path) -> list[Path]:
    return [p for p in _pages(root) if p.name not in CHARTLESS]


def test_probe_pages_exist_for_the_probe_file_names(probe_dir):
    names = [p.name for p in _pages(probe_dir)]
    assert any("<script>" in name for name in names), names  # the model slug became a file name


def test_probes_are_text_never_markup(probe_dir):
    for page in _pages(probe_dir):
        parsed = _parse(page)
        assert not [t for t in parsed.tags if t[0] == "img"], page.name
        assert not [t for t in parsed.tags if any(k.startswith("on") for k in t[1])], page.name
        # The only scripts: the shared runtime file, the bootstrap (executable), and inert JSON specs.
        for attrs, body in parsed.scripts:
            if attrs.get("type") == "application/json":
                assert "<" not in body and ">" not in body, page.name
                json.loads(body)
            elif "src" in attrs:
                assert attrs["src"] in (RUNTIME_FILE, "../" + RUNTIME_FILE) and body == "", page.name
            else:
                assert attrs == {} and body == BOOT_JS, page.name
    index_text = "".join(_parse(probe_dir / "index.html").text)
    assert PROBE in index_text
    probe_page = next(p for p in _pages(probe_dir) if "script" in p.name)
    assert f"fam{PROBE}" in "".join(_parse(probe_page).text)
    assert f"note{PROBE}" in "".join(_parse(probe_page).text)
    assert f"data{PROBE}" in "".join(_parse(probe_page).text) or f"data{PROBE}" in index_text


def test_probe_survives_into_chart_data_exactly(probe_dir):
    probe_page = next(p for p in _pages(probe_dir) if "script" in p.name)
    specs = [json.loads(body) for attrs, body in _parse(probe_page).scripts if attrs.get("type") == "application/json"]
    values = json.dumps(specs)
    assert json.dumps(f"zoo:{PROBE}")[1:-1] in values  # escaped only for transport, decoded intact


def test_no_external_urls_in_src_or_href(rendered_study, probe_dir):
    for root in (rendered_study, probe_dir):
        for page in _pages(root):
            for tag, attrs in _parse(page).tags:
                for key in ("src", "href", "action", "srcset", "poster", "data"):
                    value = attrs.get(key)
                    if value is not None and tag != "data":
                        assert not re.match(r"^\s*([a-z][a-z0-9+.-]*:|//)", value, re.I), (page.name, tag, value)


def test_every_link_resolves_to_a_file(rendered_study):
    from urllib.parse import unquote

    fragments = 0
    for page in _pages(rendered_study):
        for tag, attrs in _parse(page).tags:
            if tag == "a":
                path, _, fragment = attrs["href"].partition("#")
                target = (page.parent / unquote(path)).resolve()
                assert target.is_file(), (page.name, attrs["href"])
                if fragment:  # the front page's evidence links land on their chart
                    ids = {a.get("id") for _, a in _parse(target).tags}
                    assert fragment in ids, (page.name, attrs["href"])
                    fragments += 1
    assert fragments == 3


def test_content_security_policy_blocks_network_and_foreign_scripts(rendered_study):
    metas = [attrs for tag, attrs in _parse(rendered_study / "compare.html").tags if tag == "meta"]
    csp = next(m["content"] for m in metas if m.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp and "unsafe-eval" not in csp
    scripts = csp.split("script-src", 1)[1]
    assert "'unsafe-inline'" not in scripts and scripts.split()[0] == "'self'"  # the runtime file, then hashes


def test_runtime_written_once_beside_the_pages(rendered_study):
    """One copy of the ~0.9 MB runtime per report, loaded from disk by every page (no CDN, no network)."""
    bundle = vega_bundle()
    assert 500_000 < len(bundle) < 3_000_000
    assert (rendered_study / RUNTIME_FILE).read_bytes() == bundle.encode("utf-8")
    for name in CHARTLESS:
        text = (rendered_study / name).read_text(encoding="utf-8")
        assert bundle[:2000] not in text and 'src="' + RUNTIME_FILE not in text, name
    for page in _chart_pages(rendered_study):
        text = page.read_text(encoding="utf-8")
        assert bundle[:2000] not in text, page.name
        src = ("../" if page.parent.name == "models" else "") + RUNTIME_FILE
        assert [attrs["src"] for tag, attrs in _parse(page).tags if tag == "script" and "src" in attrs] == [src]
        assert len(text) < 600_000, (page.name, len(text))


def test_self_contained_pages_inline_it_once(rendered_study, tmp_path):
    import shutil

    import reports

    shutil.copytree(rendered_study / "results", tmp_path / "results")
    reports.render(tmp_path, self_contained=True)
    bundle = vega_bundle()
    for page in _chart_pages(tmp_path):
        parsed = _parse(page)
        assert [body for attrs, body in parsed.scripts if not attrs].count(bundle) == 1, page.name
        assert not [attrs for tag, attrs in parsed.tags if tag == "script" and "src" in attrs], page.name
        csp = next(a["content"] for t, a in parsed.tags if t == "meta" and a.get("http-equiv"))
        assert "'self'" not in csp  # nothing but the page's own inline scripts may run
