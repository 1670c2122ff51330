"""Open the built book in headless Chromium and check what a reader would see.

Needs ``_build/html`` (``make book`` or ``make book-strict``) and a Chromium binary. Without
them the tests are skipped, unless ``REFIMPL_REQUIRE_BROWSER=1`` is set (``make test`` and CI
set it), in which case their absence is a failure.

Each page of ``_toc.yml`` is loaded from disk (``file://``, no network) with ``--dump-dom`` and
a virtual time budget so that MathJax finishes typesetting, then checked for:

- typeset math: one ``mjx-container`` per math element the page has, and no TeX errors;
- no raw TeX left in the visible text (``$...$``, ``\\(``, ``\\[``, ``\\begin{``);
- every ``<img>``, script and stylesheet pointing at a file that exists;
- in chapter and exercise pages, one ``<img>`` at least per figure the notebook stores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
REQUIRE = os.environ.get("REFIMPL_REQUIRE_BROWSER", "") not in ("", "0")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
RAW_TEX = [
    (re.compile(r"\$[^$\n]{1,200}?\$"), "$...$"),
    (re.compile(r"\\\(|\\\)"), r"\( or \)"),
    (re.compile(r"\\\[|\\\]"), r"\[ or \]"),
    (re.compile(r"\\begin\{|\\end\{"), r"\begin{...}"),
]


def _toc_pages() -> list[str]:
    text = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"^\s*(?:-\s*)?(?:file|root):\s*['\"]?([^\s'\"#]+)", text, re.MULTILINE)
    return [re.sub(r"\.(ipynb|md)$", "", f) for f in files]


PAGES = _toc_pages()


def _chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"{reason} (REFIMPL_REQUIRE_BROWSER=1, so this is an error)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (HTML / "index.html").is_file():
        _unavailable("no built book in _build/html: run `make book` first")
    exe = _chromium()
    if exe is None:
        _unavailable("no chromium binary found: run `make browser` (apt-get install chromium)")
    return exe


_DOM_CACHE: dict[str, str] = {}


def dump_dom(chromium: str, page: Path) -> str:
    """Return the DOM of ``page`` after scripts ran, as Chromium serializes it."""
    key = str(page)
    if key not in _DOM_CACHE:
        with tempfile.TemporaryDirectory(prefix="refimpl-chromium-") as profile:
            cmd = [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--dump-dom",
                page.as_uri(),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "<html" in proc.stdout, (
            f"chromium failed on {page}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        )
        _DOM_CACHE[key] = proc.stdout
    return _DOM_CACHE[key]


class _PageParser(HTMLParser):
    """Collect visible text (outside code, scripts and typeset math) and resource links."""

    SKIP = {"script", "style", "pre", "code", "mjx-container", "noscript", "template", "textarea"}
    VOID = {"img", "br", "hr", "meta", "link", "input", "source", "area", "base", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth_skip = 0
        self.stack: list[str] = []
        self.text: list[str] = []
        self.imgs: list[str] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.mjx = 0
        self.math_elements = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and "stylesheet" in a.get("rel", "") and a.get("href"):
            self.styles.append(a["href"])
        if tag == "mjx-container":
            self.mjx += 1
        if tag in ("span", "div") and "math" in a.get("class", "").split():
            self.math_elements += 1
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag in self.SKIP:
            self.depth_skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or tag not in self.stack:
            return
        while self.stack:
            top = self.stack.pop()
            if top in self.SKIP:
                self.depth_skip -= 1
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.depth_skip == 0:
            self.text.append(data)


def parse(html: str) -> _PageParser:
    p = _PageParser()
    p.feed(html)
    p.close()
    return p


def _local_target(page: Path, ref: str) -> Path | None:
    """Path that ``ref`` (as found on ``page``) points to, or None for data: URIs."""
    if ref.startswith("data:"):
        return None
    url = urlsplit(urljoin(page.as_uri(), ref))
    assert url.scheme == "file", f"{page.name} loads {ref!r} from the network; the book is offline"
    return Path(unquote(url.path))


def _notebook_figures(stem: str) -> int:
    nb_path = (ROOT / stem).with_suffix(".ipynb")
    if not nb_path.is_file():
        return 0
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum(
        1
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code"
        and "remove-output" not in c.get("metadata", {}).get("tags", [])
        for out in c.get("outputs", [])
        if "image/png" in out.get("data", {}) or "image/jpeg" in out.get("data", {})
    )


@pytest.mark.parametrize("stem", PAGES)
def test_page_renders(chromium: str, stem: str) -> None:
    page = HTML / f"{stem}.html"
    assert page.is_file(), f"{page} was not built"
    static = parse(page.read_text(encoding="utf-8"))
    dom = parse(dump_dom(chromium, page))

    # Math: MathJax replaced every math element with a typeset mjx-container.
    if static.math_elements:
        assert dom.mjx >= static.math_elements, (
            f"{stem}: {static.math_elements} math elements but only {dom.mjx} mjx-container "
            "after rendering; is MathJax loading (mathjax_path, book/_extra/mathjax)?"
        )

    # ...without TeX errors (MathJax shows those as mjx-merror, in red).
    html = dump_dom(chromium, page)
    m = re.search(r"<mjx-merror[^>]*>|data-mjx-error=\"([^\"]*)\"", html)
    assert m is None, f"{stem}: MathJax reports a TeX error: {m.group(0)[:200]}"

    # No raw TeX left in what the reader sees.
    visible = " ".join(" ".join(dom.text).split())
    for pattern, what in RAW_TEX:
        m = pattern.search(visible)
        assert m is None, (
            f"{stem}: raw TeX ({what}) in the visible text: "
            f"...{visible[max(0, m.start() - 60) : m.end() + 60]}..."
        )

    # Every image, script and stylesheet resolves to a file that exists.
    for kind, refs in (("img", dom.imgs), ("script", dom.scripts), ("stylesheet", dom.styles)):
        for ref in refs:
            target = _local_target(page, ref)
            if target is None:
                continue
            assert target.is_file() and target.stat().st_size > 0, (
                f"{stem}: {kind} {ref!r} does not resolve to a file ({target})"
            )

    # Figures stored in a notebook appear on its page.
    figures = _notebook_figures(stem)
    assert len(dom.imgs) >= figures, (
        f"{stem}: the notebook stores {figures} figures but the page shows {len(dom.imgs)} <img>"
    )


def test_some_page_has_typeset_math(chromium: str) -> None:
    """Guard against the math check above passing vacuously."""
    for stem in ("book/notation", "book/preface"):
        page = HTML / f"{stem}.html"
        dom = parse(dump_dom(chromium, page))
        assert dom.mjx > 0, f"{stem}: no mjx-container; MathJax did not typeset the page"


def test_index_redirects_to_root(chromium: str) -> None:
    dom = dump_dom(chromium, HTML / "index.html")
    assert "Preface" in dom, "index.html did not lead to the preface"
