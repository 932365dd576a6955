"""Build the book in fast mode and check every page in headless Chromium.

    python docs/check_book.py              # fresh build (-E: every lesson executed, NUMPY_RETINANET_FAST=1), then check
    python docs/check_book.py --no-build   # check the book already in docs/_build/html

Each page (the index and one per ``lessons/NN_*.py``) is opened in ``/usr/bin/chromium`` (driven by
playwright; no browser is downloaded) after MathJax has run. A page fails when

- an ``<img>`` did not load (``naturalWidth == 0``) or has no alt text;
- TeX is left as text: ``$``, ``$$``, ``\\(`` or ``\\[`` outside code, after MathJax ran;
- an output shows a Python traceback (a lesson that failed to execute);
- a lesson has no page.

Its screenshot (full page, 1100 px wide) goes to ``docs/_build/screenshots/NN.png``, and one line per page
says what was verified.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "docs" / "_build"
HTML = BUILD / "html"
SHOTS = BUILD / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# page name -> why it fails today. Lessons 8-10 are being rewritten elsewhere; remove an entry when it passes.

# Runs in the page: what the checks need, after MathJax (if the page has math) has typeset.
PAGE_REPORT = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  await document.fonts.ready;
  const imgs = Array.from(document.querySelectorAll('article img, main img'));
  const main = document.querySelector('article') || document.body;
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, .highlight, script, style, mjx-container, .MathJax').forEach(e => e.remove());
  return {
    title: document.title,
    images: imgs.map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,
                            alt: (i.getAttribute('alt') || '').trim()})),
    math: document.querySelectorAll('mjx-container').length,
    mathjax: !!(window.MathJax && MathJax.version),
    text: clone.innerText,
    outputs: Array.from(document.querySelectorAll('.cell_output')).map(e => e.innerText),
    hidden_checks: document.querySelectorAll('.cell.tag_hide-input').length,
  };
}
"""

RAW_TEX = re.compile(r"\$\$|\$[^$\n]{1,80}\$|\\\(|\\\[")
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\w+(Error|Exception)\s+Traceback")


def build():
    env = {**os.environ, "NUMPY_RETINANET_FAST": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "sphinx", "-E", "-b", "html", "-c", "docs", ".", str(HTML)]
    start = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    (BUILD / "build.log").write_text(log)
    failed = sorted(set(re.findall(r"lessons/(\d\d_\w+)\.py: WARNING: Executing notebook failed", log)))
    print(f"build: {time.monotonic() - start:.0f} s, exit {result.returncode}; log in {BUILD / 'build.log'}")
    for name in failed:
        print(f"build: lesson {name} failed to execute (its traceback is on its page)")
    if result.returncode != 0:
        print(log[-5000:])
        raise SystemExit("the book did not build")


def pages():
    lessons = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
    return [("index", HTML / "docs" / "index.html")] + [(n, HTML / "lessons" / f"{n}.html") for n in lessons]


def check_page(page, name, path):
    problems = []
    page.goto(path.as_uri(), wait_until="load")  # images loaded or failed; MathJax is awaited in PAGE_REPORT
    report = page.evaluate(PAGE_REPORT)
    for img in report["images"]:
        if not img["ok"]:
            problems.append(f"broken image {img['src']}")
        # docutils writes the image's own path as alt when none is given: that is no alt text
        if not img["alt"] or img["alt"] == img["src"] or re.fullmatch(r"\S+\.(png|jpe?g|svg|gif)", img["alt"]):
            problems.append(f"image without alt text {Path(img['src']).name[:16]}...")
    raw = RAW_TEX.findall(report["text"])
    if raw:
        problems.append(f"raw TeX left as text: {raw[:3]}")
    if report["math"] and not report["mathjax"]:
        problems.append("math on the page but MathJax did not load")
    for out in report["outputs"]:
        if TRACEBACK.search(out):
            first = next((line for line in out.splitlines() if re.search(r"(Error|Exception)\b", line)), "")
            problems.append(f"traceback in an output: {first.strip()[:120]}")
            break
    shot = SHOTS / f"{name[:2] if name[0].isdigit() else name}.png"
    page.screenshot(path=str(shot), full_page=True)
    verified = (f"{len(report['images'])} images loaded with alt text, {report['math']} formulas typeset, "
                f"no raw TeX, {len(report['outputs'])} outputs without traceback, "
                f"{report['hidden_checks']} check cells folded")
    return problems, shot, verified


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-build", action="store_true", help="check the book already built")
    args = parser.parse_args()
    if not args.no_build:
        build()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    failures, start = [], time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900}, offline=True)
        page = context.new_page()
        for name, path in pages():
            if not path.is_file():
                problems, line = [f"no page {path.relative_to(ROOT)}"], f"{name}: no page"
            else:
                problems, shot, verified = check_page(page, name, path)
                size = f"{shot.stat().st_size // 1024} KiB"
                line = f"{name}: screenshot {shot.relative_to(ROOT)} ({size}); {verified}"
            if problems:
                print(f"FAIL {line}\n    {'; '.join(problems)}")
                failures.append(name)
            else:
                print(f"ok   {line}")
        browser.close()
    print(f"browser check: {len(pages())} pages in {time.monotonic() - start:.0f} s, {len(failures)} failed")
    if failures:
        raise SystemExit(f"book check failed: {', '.join(failures)}")


if __name__ == "__main__":
    main()
