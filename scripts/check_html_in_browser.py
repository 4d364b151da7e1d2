"""Open the exported course in headless Chromium, move the ε slider of notebook 02, and take screenshots.

Usage: ``python scripts/check_html_in_browser.py [build/html] [--shots DIR]`` after ``python -m helpers.course
build``.  Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium`` (not course
requirements).  The browser runs with networking features off, as a student opening the files from disk would.
Exits non-zero if a page fails to show its slider, moving the slider does not change the image, or a formula on
any page fails to typeset.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def visible_frame(slider_root):
    frames = slider_root.find_elements(By.CSS_SELECTOR, "img.fs-frame")
    shown = [i for i, f in enumerate(frames) if f.is_displayed()]
    return shown, frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", default="build/html")
    parser.add_argument("--shots", default="build/screenshots")
    args = parser.parse_args(argv)
    html, shots = Path(args.html).resolve(), Path(args.shots).resolve()
    shots.mkdir(parents=True, exist_ok=True)

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)
    ok = True
    try:
        driver.get((html / "index.html").as_uri())
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "li.nb a")]
        print(f"index: {len(links)} notebooks linked")
        driver.save_screenshot(str(shots / "index.png"))
        ok &= len(links) >= 6

        driver.get((html / "02_untargeted_attack.html").as_uri())
        root = driver.find_element(By.CSS_SELECTOR, ".course-frame-slider")
        driver.execute_script("arguments[0].scrollIntoView();", root)
        slider = root.find_element(By.CSS_SELECTOR, "input[type=range]")
        before, frames = visible_frame(root)
        label_before = root.find_element(By.CSS_SELECTOR, ".fs-val[style=''], .fs-val:not([style])").text
        driver.save_screenshot(str(shots / "02_slider_start.png"))
        slider.click()                    # focus, then move it as a user would: keyboard arrows
        for _ in range(4):
            slider.send_keys(Keys.ARROW_RIGHT)
        after, _ = visible_frame(root)
        label_after = [v.text for v in root.find_elements(By.CSS_SELECTOR, ".fs-val") if v.is_displayed()]
        driver.save_screenshot(str(shots / "02_slider_moved.png"))
        print(f"02 slider: {len(frames)} frames; visible frame {before} -> {after}; "
              f"ε label {label_before!r} -> {label_after}; value {slider.get_attribute('value')}")
        ok &= len(before) == 1 and len(after) == 1 and before != after
        math = driver.execute_script("return document.querySelectorAll('.MathJax, .MathJax_CHTML, mjx-container')"
                                     ".length")
        print(f"02 formulas typeset by the bundled MathJax: {math}")
        ok &= math > 0

        # Every page: formulas must typeset, not fail ("[Math Processing Error]" when MathJax lacks a font).
        for page in sorted(html.glob("*.html")):
            driver.get(page.as_uri())
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "return !window.MathJax || !MathJax.Hub || MathJax.Hub.queue.pending === 0 "
                "&& MathJax.Hub.queue.running === 0"))
            errors = driver.execute_script(
                "return (document.body.innerText.match(/Math Processing Error|Math input error/g) || []).length")
            typeset = driver.execute_script("return document.querySelectorAll('.MathJax, mjx-container').length")
            print(f"{page.name}: {typeset} formulas typeset, {errors} errors")
            ok &= errors == 0
    finally:
        driver.quit()
    print("browser check", "passed" if ok else "FAILED", f"(screenshots in {shots})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
