"""HTML report benchmark: the page at 10,000 tokens, as the collection writes it and as one plain table.

    .venv/bin/python benchmarks/report_html.py [--rows 10000] [--repeat 3] [--no-write]

One report of a realistic fleet (tests/fixtures/report_fleet.py) rendered two ways, each opened in the distribution's Chromium
(headless, /usr/bin/chromium or TOKENOPS_CHROMIUM) through Playwright, alternately --repeat times:

  (a) the page the collection writes: the table's rows travel as JSON in the page, a script renders the matching ones,
      100 at a time, and rows that need nothing stay collapsed;
  (b) the other way considered: the same page with every row as an HTML table row, and a filter that hides rows.

For each: file size, time from navigation to a usable page (the script done, the first layout made), elements and
layout objects after load (Chromium's Performance.getMetrics), JS heap, and the time one filter change takes to lay out.
It prints a table (medians) and writes it to benchmarks/RESULTS-report-html.md (unless --no-write), with the core count and
load average: ratios measured side by side in one run mean something; absolute seconds do not. Not part of `make test`.
"""

import argparse
import html
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# The work tree importable as the collection, as in the unit tests.
import tests.conftest  # noqa: E402,F401  pylint: disable=unused-import
from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep  # noqa: E402
from ansible_collections.tokenops.rotation.plugins.module_utils import report_html  # noqa: E402
from tests.fixtures.report_fleet import NOW, Canaries, fleet_sources  # noqa: E402

CHROMIUM = os.environ.get("TOKENOPS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

# (b): every row in the HTML; the filter hides the rows that do not match (product select only, as the measured change).
PLAIN_SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll("#rows tr"));
  var product = document.getElementById("f-product");
  product.addEventListener("change", function () {
    var p = product.value;
    rows.forEach(function (tr) { tr.hidden = p !== "" && tr.getAttribute("data-p") !== p; });
  });
  document.body.setAttribute("data-ready", "1");
}());
"""


def plain_page(report, page):
    """(b): the collection's page with every row rendered as HTML and the script above instead of the collection's."""
    products = [p for p in rep.PRODUCT_ORDER if any(r["product"] == p for r in report["rows"])]
    out = []
    for row in report["rows"]:
        rank = rep._rank(row)  # pylint: disable=protected-access
        todo = "<ul>%s</ul>" % "".join("<li>%s</li>" % html.escape(t) for t in row["todo"]) if row["todo"] else ""
        out.append('<tr class="r%d" data-p="%d"><td><span class="pill %s">%s</span></td><td>%s</td><td>%s</td><td><code>%s</code></td>'
                   '<td>%s</td><td><div class="tl">%s</div><div class="at">%s</div></td><td>%s</td></tr>' % (
                       rank, products.index(row["product"]), report_html.OUTCOMES[rank][0], report_html.OUTCOMES[rank][1],
                       html.escape(row["product_name"]), html.escape(row["endpoint"]), html.escape(row["token"]), html.escape(row["action"]),
                       html.escape(row["time_left"]), html.escape(row.get("expires_at") or ""), todo))
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    page = page.replace('<tbody id="rows"></tbody>', '<tbody id="rows">%s</tbody>' % "".join(out))
    page = re.sub(r'<script type="application/json" id="report-data">.*?</script>\n<script>.*?</script>',
                  lambda _m: "<script>%s</script>" % PLAIN_SCRIPT.strip(), page, flags=re.S)
    return page


def measure(browser, path):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(600000)   # (b) takes long on a loaded machine
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Performance.enable")
    started = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.evaluate("document.body.offsetHeight")
    loaded = time.perf_counter() - started
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    elements = page.evaluate("document.getElementsByTagName('*').length")
    filtered = page.evaluate("""() => { var s = document.getElementById('f-product'), t = performance.now();
        s.value = '1'; s.dispatchEvent(new Event('change')); document.body.offsetHeight; return performance.now() - t; }""")
    context.close()
    return {"bytes": path.stat().st_size, "load_s": loaded, "elements": elements, "layout_objects": metrics.get("LayoutObjects", 0),
            "heap_mb": metrics.get("JSHeapUsedSize", 0) / 1e6, "filter_ms": filtered}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    report = rep.build(fleet_sources(Canaries(), rows=args.rows), now=NOW)
    folder = Path(tempfile.mkdtemp(prefix="tokenops-report-bench-"))
    pages = {"(a) rows as JSON, rendered 100 at a time": folder / "a.html", "(b) every row in the HTML, rows hidden by the filter": folder / "b.html"}
    collection_page = rep.to_html(report)
    (folder / "a.html").write_text(collection_page, encoding="utf-8")
    (folder / "b.html").write_text(plain_page(report, collection_page), encoding="utf-8")
    runs = {name: [] for name in pages}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _round in range(args.repeat):
            for name, path in pages.items():
                runs[name].append(measure(browser, path))
        browser.close()

    keys = (("bytes", "file size (bytes)", "%d"), ("load_s", "load to usable (s)", "%.2f"), ("elements", "elements", "%d"),
            ("layout_objects", "layout objects", "%d"), ("heap_mb", "JS heap (MB)", "%.1f"), ("filter_ms", "one filter change (ms)", "%.0f"))
    names = list(pages)
    medians = {n: {k: statistics.median(r[k] for r in runs[n]) for k, _t, _f in keys} for n in names}
    lines = ["# HTML report at %d rows" % len(report["rows"]), "",
             "`benchmarks/report_html.py --rows %d --repeat %d`, %d cores, load average %s; medians of %d runs each, alternating." % (
                 args.rows, args.repeat, os.cpu_count() or 0, " ".join("%.1f" % v for v in os.getloadavg()), args.repeat), "",
             "| | %s | %s | (b) / (a) |" % tuple(names), "|---|---:|---:|---:|"]
    for key, title, fmt in keys:
        a, b = medians[names[0]][key], medians[names[1]][key]
        lines.append("| %s | %s | %s | %s |" % (title, fmt % a, fmt % b, "%.1f" % (b / a) if a else "-"))
    lines += ["", "Every run (a; b): " + "; ".join("%s %s" % (k, [round(r[k], 2) for n in names for r in runs[n]]) for k, _t, _f in keys[1:]),
              "", "Python %s on %s." % (platform.python_version(), platform.platform())]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (REPO / "benchmarks" / "RESULTS-report-html.md").write_text(text)


if __name__ == "__main__":
    main()
