"""The documentation site (mkdocs.yml, docs/): it builds strictly and offline, and it works in a browser.

The site is built once for this module into a temporary folder. Its pictures come
from a real run (scripts/docs_images.py), cached in .cache/docs-images/ like the
build of `make docs`: the first build on a machine trains a small model on the
digits (about a minute), later ones take seconds.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from imgclf.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["index.html", "getting-started.html", "guide/training.html", "guide/evaluation.html", "reference/cli.html",
         "reference/api.html", "benchmarks.html", "architecture.html", "howto/phone.html"]
# What a page must not load from the network: scripts, stylesheets, fonts, pictures (links to elsewhere are fine).
ONLINE = re.compile(r"""<(?:script|img|iframe)[^>]+src=["']https?://|<link[^>]+href=["']https?://|fonts\.(?:googleapis|gstatic)\.com"""
                    r"""|@import\s+url\(["']?https?://""", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with `mkdocs build --strict` into a temporary folder: (folder, seconds it took)."""
    if not shutil.which("mkdocs", path=str(Path(sys.executable).parent)) and not _has("mkdocs"):
        pytest.skip("mkdocs is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env=_env(), timeout=900)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    print(f"\ndocs built in {seconds:.1f} s")
    return out, seconds


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _env() -> dict:
    import os

    return dict(os.environ, NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(ROOT / "src"))


def test_strict_build_makes_every_page(site):
    out, _ = site
    for page in PAGES:
        assert (out / page).is_file(), page
    if shutil.which("chromium"):
        assert (out / "images" / "report.png").stat().st_size > 10_000  # a real screenshot, not the placeholder
    assert (out / "search" / "search_index.js").is_file()  # the offline plugin's index, readable from file://


def test_the_cli_reference_is_the_parser(site):
    """Every command and every option of the parser is on the page, as `--help` prints it."""
    out, _ = site
    html = (out / "reference" / "cli.html").read_text()
    parser = build_parser()
    commands = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    for name, sub in commands.items():
        assert f'id="imgclf-{name}"' in html, name
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in html, (name, flag)


def test_the_api_reference_documents_the_public_names(site):
    import imgclf

    out, _ = site
    html = (out / "reference" / "api.html").read_text()
    for name, (module, attr) in imgclf._LAZY.items():
        assert f'id="{module}.{attr}"' in html, name
    assert html.count("<span class=\"gp\">&gt;&gt;&gt; </span>") > 10  # docstring examples render as highlighted code


def test_the_benchmarks_page_includes_bench_results(site):
    out, _ = site
    html = (out / "benchmarks.html").read_text()
    first = next(line for line in (ROOT / "bench" / "RESULTS.md").read_text().splitlines() if line.startswith("## "))
    assert first[3:].split(":")[0] in html
    for picture in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", (ROOT / "bench" / "RESULTS.md").read_text()):
        assert (out / picture).is_file(), picture


def test_the_site_loads_nothing_from_the_network(site):
    out, _ = site
    offenders = []
    for path in list(out.rglob("*.html")) + list(out.rglob("*.css")) + list(out.rglob("*.js")):
        for match in ONLINE.finditer(path.read_text(errors="replace")):
            offenders.append(f"{path.relative_to(out)}: {match.group(0)}")
    assert not offenders, offenders[:10]


# --- in headless Chromium, from the disk (file://), with the network unreachable -------------------------------

@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromium-driver are not installed (scripts/ensure-system-deps.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tmp_path_factory.mktemp("docs-chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1400,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}"):  # no name resolves: offline
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


def _open(browser, site, page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, _ = site
    browser.get((out / page).as_uri())
    WebDriverWait(browser, 20).until(lambda b: b.execute_script("return document.readyState") == "complete")
    return By


def _screenshot_checks(browser, path: Path) -> Image.Image:
    """Save a screenshot; check the page drew: the theme's header bar on top, and more than a blank page."""
    browser.save_screenshot(str(path))
    img = Image.open(path).convert("RGB")
    assert img.width >= 1200, img.size
    r, g, b = img.getpixel((img.width // 2, 10))  # the header: Material's indigo, so its CSS loaded offline
    assert b > 150 and r < 120, (r, g, b)
    assert len(img.resize((200, 150)).getcolors(maxcolors=100_000) or []) > 50  # text, code and pictures
    return img


def _no_errors(browser):
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_home_page_in_chromium(site, browser, tmp_path):
    by = _open(browser, site, "index.html")
    assert browser.title.startswith("imgclf")
    nav = [a.get_attribute("textContent").strip() for a in browser.find_elements(by.CSS_SELECTOR, ".md-nav--primary a")]
    for entry in ("Getting started", "Your data", "Training", "Python API", "Command line", "Benchmarks"):
        assert entry in nav, (entry, nav)
    assert browser.find_elements(by.CSS_SELECTOR, "pre code"), "no code block"
    report = browser.find_element(by.CSS_SELECTOR, "img[src$='report.png']")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", report) > 500
    _screenshot_checks(browser, tmp_path / "home.png")
    _no_errors(browser)


def test_api_reference_in_chromium(site, browser, tmp_path):
    by = _open(browser, site, "reference/api.html")
    assert browser.find_element(by.TAG_NAME, "h1").text == "Python API"
    heading = browser.find_element(by.ID, "imgclf.training.api.train")
    assert "train" in heading.text
    assert len(browser.find_elements(by.CSS_SELECTOR, ".doc-signature, .highlight")) > 10  # signatures and examples
    toc = [a.get_attribute("textContent").strip() for a in browser.find_elements(by.CSS_SELECTOR, ".md-nav--secondary a")]
    assert "load" in toc and "evaluate" in toc, toc[:20]
    _screenshot_checks(browser, tmp_path / "api.png")
    _no_errors(browser)


def test_guide_page_with_pictures_in_chromium(site, browser, tmp_path):
    by = _open(browser, site, "guide/training.html")
    assert "Training" in browser.title
    grid = browser.find_element(by.CSS_SELECTOR, "img[src$='augment-light.png']")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", grid) > 300
    assert len(browser.find_elements(by.CSS_SELECTOR, "pre code")) >= 1
    _screenshot_checks(browser, tmp_path / "training.png")
    _no_errors(browser)


def test_search_works_offline(site, browser):
    """Type in the search box of a page opened from the disk; a result leads to the page that holds the word."""
    from selenium.webdriver.support.ui import WebDriverWait

    by = _open(browser, site, "index.html")
    box = browser.find_element(by.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys("quarantine")
    results = WebDriverWait(browser, 20).until(
        lambda b: b.find_elements(by.CSS_SELECTOR, ".md-search-result__item a") or False)
    target = results[0].get_attribute("href")
    results[0].click()
    WebDriverWait(browser, 20).until(lambda b: b.current_url.split("#")[0] == target.split("#")[0])
    assert "quarantine" in browser.find_element(by.TAG_NAME, "article").text.lower()
    _no_errors(browser)
