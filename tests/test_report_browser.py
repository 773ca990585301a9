"""The quickstart report in a real browser (headless Chromium + Selenium at 1,400 px): readable and explained.

The report is built by :func:`metricanything.eval.html.quickstart_report` from the small stand-in run of
``report_fixture.py`` (real corpus, shards and baseline evaluation; chosen training numbers), not from a whole
quickstart. Checked through the DOM: every picture loads and keeps its aspect ratio, nothing is wider than its
box or the page, figures are shown at least 400 px wide and not shrunk much below their drawn size (their text
stays readable), no table has an empty header cell, every section opens with an explanation written from the
numbers, and a click enlarges a figure. A full-page screenshot goes to the test's temporary folder.
"""

from __future__ import annotations

import pytest

from app_browser import browser_unavailable, make_driver
from report_fixture import make_quickstart_record

_why = browser_unavailable()
if _why:
    pytest.skip(f"browser tests need Chromium + chromedriver + Selenium: {_why}", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402

from metricanything.eval.html import quickstart_report  # noqa: E402

WIDTH = 1400
#: figures may be shown down to this share of the width they were drawn at (their text stays readable)
MIN_SCALE = 0.85


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    record = make_quickstart_record(out / "run")
    path = out / "run" / "report.html"
    path.write_text(quickstart_report(record), encoding="utf-8")
    driver = make_driver(out, width=WIDTH, height=1000)
    try:
        driver.get(path.as_uri())
        driver.execute_script("return document.fonts.ready")
        yield driver, out
    finally:
        driver.quit()


def test_every_picture_loads_keeps_its_shape_and_is_large_enough(page):
    driver, _ = page
    imgs = driver.execute_script("""
      return [...document.images].map(i => { const r = i.getBoundingClientRect();
        return {alt: i.alt, complete: i.complete, nw: i.naturalWidth, nh: i.naturalHeight, w: r.width, h: r.height,
                px: i.classList.contains('px'), box: i.parentElement.getBoundingClientRect().width}; });""")
    content = driver.execute_script("const b = document.body, s = getComputedStyle(b); "
                                    "return b.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);")
    assert len(imgs) >= 10 and content >= 1100
    for i in imgs:
        assert i["complete"] and i["nw"] > 0 and i["nh"] > 0, f"{i['alt']} did not load"
        assert i["w"] == pytest.approx(i["h"] * i["nw"] / i["nh"], rel=0.02, abs=2), f"{i['alt']} is distorted"
        assert i["w"] <= i["box"] + 1, f"{i['alt']} is wider than its figure"
        assert i["w"] >= 400, f"{i['alt']} is shown only {i['w']:.0f} px wide"
        if i["px"]:  # small training panels: enlarged to the full content width
            assert i["w"] >= content - 4 and i["w"] >= 2 * i["nw"], i["alt"]
        else:  # drawn about as wide as the page: shown at (almost) their own size
            assert i["w"] >= MIN_SCALE * min(i["nw"], content), f"{i['alt']}: drawn {i['nw']} px, shown {i['w']:.0f} px"


def test_nothing_overflows_its_box_or_the_page(page):
    driver, _ = page
    assert driver.execute_script("return document.documentElement.scrollWidth") <= driver.execute_script("return window.innerWidth")
    bad = driver.execute_script("""
      const body = document.body.getBoundingClientRect(), s = getComputedStyle(document.body);
      const left = body.left + parseFloat(s.paddingLeft) - 1, right = body.right - parseFloat(s.paddingRight) + 1;
      const out = [];
      for (const el of document.querySelectorAll('section, table, figure, img, pre, p, div, h2, h3, td, th, figcaption')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0) continue;
        if (r.left < left || r.right > right) out.push(`${el.tagName} ${r.left.toFixed(0)}-${r.right.toFixed(0)} outside ${left}-${right}: ${el.textContent.slice(0, 60)}`);
        if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) out.push(`${el.tagName} scrolls ${el.scrollWidth} > ${el.clientWidth}: ${el.textContent.slice(0, 60)}`);
      }
      return out;""")
    assert not bad, "\n".join(bad[:10])


def test_tables_have_no_empty_header_cells_or_columns(page):
    driver, _ = page
    tables = driver.find_elements(By.TAG_NAME, "table")
    assert len(tables) >= 6
    for t in tables:
        heads = t.find_elements(By.CSS_SELECTOR, "thead th")
        assert all(h.text.strip() for h in heads), [h.text for h in heads]
        rows = [[c.text.strip() for c in r.find_elements(By.TAG_NAME, "td")] for r in t.find_elements(By.CSS_SELECTOR, "tbody tr")]
        assert rows and all(any(r[c] for r in rows) for c in range(len(rows[0]))), f"an empty column in {rows[:2]}"


def _sections(driver) -> dict[str, str]:
    """{section id: text of its explanation paragraph}, in page order."""
    pairs = driver.execute_script("""
      return [...document.querySelectorAll('section')].map(s => {
        const p = s.querySelector(':scope > p.explain');
        return [s.id, p ? p.textContent : ''];
      });""")
    return dict(pairs)


def test_every_section_explains_itself_from_the_numbers(page):
    driver, _ = page
    text = _sections(driver)
    assert list(text) == ["stages", "corpus", "pretrain", "pseudo", "distill", "evaluate", "infer", "reproduce"]
    for key, t in text.items():
        assert len(t) >= 60, f"section {key} has no explanation: {t!r}"
        if key != "reproduce":
            assert any(ch.isdigit() for ch in t), f"section {key}'s explanation quotes no number: {t!r}"
    # what the stand-in run's numbers say, and only that
    assert "longest is distill: 160 s" in text["stages"]
    assert "sfm" in text["corpus"] and "untrusted scale" in text["corpus"]
    assert "ends higher than it starts" in text["pretrain"] and "ends higher" not in text["distill"]
    assert "The loss falls" in text["distill"] and "prompt-free samples have a median loss" in text["pretrain"]
    assert "its metric scale comes from the prompts" in text["pretrain"]
    assert "one flat colour" in text["distill"] and "flat colour" not in text["pretrain"]
    ev = text["evaluate"]
    assert "below the constant median baseline" in ev and "better than the best prompt-completion baseline (baseline:linear" in ev
    assert "about the same focal for every image" in text["infer"] and "depth is nearly constant on 3 of 3" in text["infer"]


def test_a_click_enlarges_a_figure_and_a_second_click_shrinks_it(page):
    driver, _ = page
    img = driver.find_element(By.CSS_SELECTOR, "#evaluate figure img")
    driver.execute_script("arguments[0].scrollIntoView()", img)
    before = img.rect["width"]
    img.click()
    assert "zoomed" in img.get_attribute("class")
    big, window = img.rect, driver.execute_script("return [window.innerWidth, window.innerHeight]")
    assert big["width"] >= 0.95 * window[0] and big["height"] >= 0.95 * window[1]  # the picture fits this box
    assert driver.execute_script("return getComputedStyle(arguments[0]).objectFit", img) == "contain"
    img.click()
    assert "zoomed" not in img.get_attribute("class") and img.rect["width"] == pytest.approx(before, abs=1)


def test_full_page_screenshot(page):
    driver, out = page
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(height + 100, 30000))
    path = out / "report_screenshot.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 100_000
    print(f"screenshot: {path}")
