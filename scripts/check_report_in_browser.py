"""Open a robustness report page (``python -m helpers.evaluate ... --out report.html``) in headless Chromium and
check that it renders: every embedded figure decodes to an image of non-zero size, the tables are there, and the
page asks for nothing over the network.  Takes a screenshot of the whole page.

Usage: ``python scripts/check_report_in_browser.py report.html [--shot report.png]``.  Needs Debian's ``chromium``
and ``chromium-driver`` and ``pip install selenium`` (not course requirements), as
``scripts/check_html_in_browser.py``; networking features are off, as for a file opened from disk.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page")
    parser.add_argument("--shot", default=None, help="screenshot file (default: the page's name with .png)")
    args = parser.parse_args(argv)
    page = Path(args.page).resolve()
    shot = Path(args.shot or page.with_suffix(".png")).resolve()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])")
        tables = len(driver.find_elements(By.TAG_NAME, "table"))
        rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table tr")]
        external = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'))")
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(max(height + 100, 800), 8000))
        driver.save_screenshot(str(shot))
        title = driver.title
    finally:
        driver.quit()
    print(f"title: {title!r}; {tables} tables, {len(rows)} rows; page height {height} px; screenshot {shot}")
    for alt, complete, width, h in images:
        print(f"figure {alt!r}: loaded {complete}, {width}×{h} px")
    print(f"requests other than the page and its data URIs: {external or 'none'}")
    ok = len(images) >= 2 and all(c and w > 0 and h > 0 for _, c, w, h in images) and tables >= 3 and not external
    print("OK: the page renders with its figures" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
