"""The HTML report at fleet scale: what the page says, that it escapes everything, and a real browser on 10,000 rows.

The fleet (tests/fixtures/report_fleet.py) is what the four product roles record for a realistic day, secrets and markup included.
"""

import html
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep
from ansible_collections.tokenops.rotation.plugins.module_utils import report_html
from tests.fixtures.report_fleet import (
    BUCKET_KEYS,
    HOSTILE_ENDPOINT,
    HOSTILE_TOKEN,
    LEAK,
    NOW,
    OUTCOME_KEYS,
    Canaries,
    at,
    bucket_of,
    expected_counts,
    fleet_sources,
    outcome_of,
    result,
    source,
)

REPO = Path(__file__).resolve().parents[4]
ARTIFACTS = REPO / ".build" / "test-artifacts" / "report-html"
CHROMIUM = os.environ.get("TOKENOPS_CHROMIUM", "/usr/bin/chromium")
LOADED_MACHINE_MS = 180000   # how long a step may take on a shared 2-core machine; an idle one needs about a second
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def fleet_report():
    canary = Canaries()
    sources = fleet_sources(canary)
    started = time.perf_counter()
    report = rep.build(sources, now=NOW)
    built = time.perf_counter()
    page = rep.RENDERERS["html"][1](report)
    rendered = time.perf_counter()
    document = json.loads(rep.RENDERERS["json"][1](report))
    print("\n10,000-row report: build %.2fs, HTML render %.2fs, HTML %d bytes (JSON report %d bytes)" % (
        built - started, rendered - built, len(page.encode()), len(rep.to_json(report).encode())))
    return {"report": report, "document": document, "page": page, "canaries": canary.issued}


# ------------------------------------------------------------------ the page as text

def test_the_fleet_is_the_size_and_shape_the_browser_test_claims(fleet_report):
    document = fleet_report["document"]
    assert tuple(o[0] for o in report_html.OUTCOMES) == OUTCOME_KEYS and tuple(b[0] for b in report_html.BUCKETS) == BUCKET_KEYS
    assert len(document["rows"]) == 10000
    assert {r["product"] for r in document["rows"]} == set(rep.PRODUCT_ORDER)
    outcomes = {outcome_of(r) for r in document["rows"]}
    assert outcomes == set(OUTCOME_KEYS)
    assert {bucket_of(r) for r in document["rows"]} >= {b[0] for b in report_html.BUCKETS}


def test_no_secret_and_nothing_unescaped_in_the_page(fleet_report):
    page = fleet_report["page"]
    assert fleet_report["canaries"] and all(LEAK.fullmatch(c) for c in fleet_report["canaries"][:10])
    assert not LEAK.search(page)
    # The hostile id and endpoint appear only escaped: as HTML text, and as JSON that cannot close its script element.
    assert HOSTILE_TOKEN not in page and "<img" not in page and "onerror=alert(1)>" not in page
    assert html.escape(HOSTILE_TOKEN, quote=True) in page
    assert page.count("</script>") == 2 and page.count("<script") == 2
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in data and ">" not in data and "&" not in data
    decoded = json.loads(data)
    assert HOSTILE_TOKEN in {r[3] for r in decoded["rows"]} and HOSTILE_ENDPOINT in decoded["endpoints"]


def test_nothing_is_loaded_from_outside_the_file(fleet_report):
    page = fleet_report["page"]
    assert not re.search(r"<(link|img|image|use|iframe|object|embed|audio|video|source|base)\b", page, re.I)
    assert not re.search(r"<[^>]*\s(src|srcset|poster|data|xlink:href|background)=", page, re.I)   # escaped text has no raw <
    style = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    assert not re.search(r"url\(|@import|@font-face", style)
    script = re.search(r"<script>(.*?)</script>", page, re.S).group(1)
    assert not re.search(r"fetch\(|XMLHttpRequest|WebSocket|EventSource|import\(|new Image|sendBeacon|\.src\b", script)
    # The only URLs are the links a person follows (consent, the endpoints' messages) and the SVG namespace.
    hrefs = set(re.findall(r'href="([^"#][^"]*)"', page))
    assert all(h.startswith("https://") for h in hrefs)
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp


def test_identical_findings_are_grouped_with_their_endpoints(fleet_report):
    page, document = fleet_report["page"], fleet_report["document"]
    tenants = sorted({a["endpoint"] for a in document["audit"] if a["token"] == "tokenops-admin"})
    assert len(tenants) == 50
    group = re.search(r'<li class="group" data-endpoints="50" data-tokens="1">.*?</details></li>', page, re.S).group(0)
    assert "50 tenants" in group and "tokenops-admin" in group and "never expires" in group
    assert all(html.escape(t) in group for t in tenants)
    assert page.count('data-q="tokenops-admin"') == 1   # once, not once per tenant
    legacy = [a for a in document["audit"] if a["token"] == "legacy-ci"]
    assert '<li class="group" data-endpoints="%d" data-tokens="1">' % len(legacy) in page and "%d tenants" % len(legacy) in page
    # Many tokens of one endpoint with the same finding: the Secret Server whose store was down, once with its tokens.
    down = [r for r in document["rows"] if "connection refused to https://bao.example" in " ".join(r["todo"])]
    assert len(down) == 50 and len({r["endpoint"] for r in down}) == 1
    group = re.search(r'<li class="group" data-endpoints="1" data-tokens="50">.*?</details></li>', page, re.S).group(0)
    assert "pam-04: <strong class=\"n\">50 tokens</strong>" in group and all('data-q="%s"' % r["token"] in group for r in down)


def test_the_page_stays_small_at_10000_rows(fleet_report):
    """The rows travel as compact JSON: the page is smaller than the JSON report and the table is not in the HTML."""
    page = fleet_report["page"]
    size = len(page.encode())
    assert size < len(rep.to_json(fleet_report["report"]).encode()) / 4
    assert page.count("<tr") < 20   # the counts table; the token table is rendered by the script, a page at a time


def test_a_small_report_renders_without_findings_or_errors():
    report = rep.build([source("das", "tenant-a", [result(Canaries(), "app", "none", expires_at=at(days=40))])], now=NOW)
    page = rep.to_html(report)
    assert "Nothing: no token needs a person." in page and "Stages that failed" not in page
    assert 'data-product="das" data-bucket="later" data-count="1"' in page
    assert 'data-product="all" data-bucket="later" data-count="1"' in page
    # No rows at all, and a role that failed before any token: still a page, saying so.
    assert "Nothing: no token needs a person." in rep.to_html(rep.build([], now=NOW))
    failed = rep.to_html(rep.build([{"product": "das", "endpoint": "tenant-z", "error": "das_url is required"}], now=NOW))
    assert "Stages that failed" in failed and "tenant-z, stage role: das_url is required" in failed
    # Warnings of the run itself, where the report has them (a metrics push that failed), escaped like the rest.
    warned = rep.build([], now=NOW)
    warned["warnings"] = ["push to https://pushgateway.example:9091 failed: <503>", {"msg": "second"}]
    page = rep.to_html(warned)
    assert "<h2>Warnings</h2>" in page and "failed: &lt;503&gt;" in page and "<li>second</li>" in page


# ------------------------------------------------------------------ a real browser

@pytest.fixture
def browser_tools():
    """Playwright for Python driving the distribution's Chromium; the test skips, saying what is missing, elsewhere."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python package playwright is not installed (tests/requirements.txt)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        if not found:
            pytest.skip("no Chromium at %s or on PATH (Debian package chromium, tests/system-packages.txt)" % CHROMIUM)
        return sync_api, found
    return sync_api, CHROMIUM


def _numbers(text):
    return int(text.strip().replace(",", ""))


@pytest.mark.slow
def test_the_page_in_a_browser_at_10000_rows(browser_tools, fleet_report):
    sync_api, chromium = browser_tools
    expect = sync_api.expect
    expect.set_options(timeout=LOADED_MACHINE_MS)
    document, page_text = fleet_report["document"], fleet_report["page"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    html_path = ARTIFACTS / "tokenops-rotation.html"
    html_path.write_text(page_text, encoding="utf-8")
    (ARTIFACTS / "tokenops-rotation.json").write_text(json.dumps(document), encoding="utf-8")
    url = html_path.as_uri()
    outcomes, buckets = expected_counts(document)
    rows = document["rows"]

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
            context.set_default_timeout(LOADED_MACHINE_MS)
            requests, dialogs, errors = [], [], []
            context.on("request", lambda request: requests.append(request.url))
            page = context.new_page()
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
            started = time.perf_counter()
            page.goto(url)
            page.wait_for_selector("body[data-ready='1']")
            print("\nloaded %s in %.2fs" % (url, time.perf_counter() - started))

            # Counts by product and outcome, as the JSON says.
            for product in rep.PRODUCT_ORDER:
                cells = page.locator("#counts tr[data-product='%s'] td" % product).all_inner_texts()
                assert [_numbers(c) for c in cells] == [outcomes[product][k] for k in OUTCOME_KEYS] + [sum(outcomes[product].values())]
            total_cells = page.locator("#counts tr[data-product='all'] td").all_inner_texts()
            assert _numbers(total_cells[-1]) == len(rows)
            assert _numbers(page.inner_text("#card-fails-job .num")) == sum(1 for r in rows if r["fails_job"]) + sum(
                1 for a in document["audit"] if a["fails_job"])
            assert _numbers(page.inner_text("#card-needs-person .num")) == sum(1 for r in rows if r["needs_person"]) + len(document["audit"])
            assert "incl. %d audit findings" % len(document["audit"]) in page.inner_text("#card-needs-person")
            within = [sum(b[k] for b in buckets.values()) for k in ("expired", "day", "week", "month")]
            assert [_numbers(page.inner_text("#card-%s .num" % c)) for c in ("expired", "within-day", "within-week", "within-month")] == [
                within[0], within[1], within[1] + within[2], within[1] + within[2] + within[3]]

            # The picture: one bar per product and bucket, its count and length from the JSON, its label the number.
            bars = page.eval_on_selector_all("#expiry rect.bar", "els => els.map(e => [e.dataset.product, e.dataset.bucket, "
                                                                 "+e.dataset.count, e.getBBox().width])")
            labels = dict(((p, b), t) for p, b, t in page.eval_on_selector_all(
                "#expiry text.count", "els => els.map(e => [e.dataset.product, e.dataset.bucket, e.textContent])"))
            assert len(bars) == (len(rep.PRODUCT_ORDER) + 1) * len(report_html.BUCKETS)
            for product, bucket, count, width in bars:
                if product == "all":
                    expected = sum(buckets[p][bucket] for p in buckets)
                    peak = expected
                else:
                    expected = buckets[product][bucket]
                    peak = max(buckets[p][bucket] for p in buckets)
                assert count == expected, (product, bucket)
                assert _numbers(labels[(product, bucket)]) == expected
                assert width == pytest.approx(report_html.BAR_MAX * expected / max(peak, 1), abs=0.02), (product, bucket)
            box = page.locator("#expiry").bounding_box()
            assert box["height"] > 100 and box["width"] > 500   # visible, not squeezed

            # The table opens with the rows that need a person; the rest are collapsed.
            needing = [r for r in rows if r["needs_person"]]
            assert page.locator("#rows tr").count() == min(report_html.TABLE_PAGE, len(needing))
            assert page.locator("#rows tr.r4, #rows tr.r2, #rows tr.r3").count() == 0
            assert "%s that need nothing are collapsed" % format(len(rows) - len(needing), ",") in page.inner_text("#status")
            _assert_no_overflow(page)
            _screenshot(page, "report-10000-overview.png", full_page=False)

            # Filters: product and outcome, then "needs a person".
            page.select_option("#f-product", label="SolarWinds DPA")
            page.select_option("#f-outcome", index=2)   # All, Fails the job, A person's task, ...
            dpa_todo = [r for r in rows if r["product"] == "dpa" and outcome_of(r) == "todo"]
            assert _shown(page) == len(dpa_todo) > 0
            assert set(page.locator("#rows tr td:nth-child(2)").all_inner_texts()) == {"SolarWinds DPA"}
            assert set(page.locator("#rows tr td:first-child").all_inner_texts()) == {"TODO"}
            page.select_option("#f-outcome", value="")
            page.select_option("#f-person", value="no")
            assert _shown(page) == sum(1 for r in rows if r["product"] == "dpa" and not r["needs_person"])
            assert page.locator("#rows tr.r0, #rows tr.r1").count() == 0
            page.click("#reset")

            # Search by token: a token nobody needs to look at is found although its row is collapsed.
            quiet = next(r for r in reversed(rows) if outcome_of(r) == "ok" and r["token"].startswith("svc_scanner"))
            page.fill("#q", quiet["token"])
            expected = [r for r in rows if quiet["token"].lower() in (r["token"] + "\n" + r["endpoint"]).lower()]
            expect(page.locator("#status")).to_contain_text("of %s matching" % format(len(expected), ","))
            assert page.locator("#rows tr td:nth-child(4)").all_inner_texts() == [r["token"] for r in expected][:report_html.TABLE_PAGE]
            # ... and by endpoint.
            page.fill("#q", "dpa-17.corp")
            expected = [r for r in rows if "dpa-17.corp" in r["endpoint"]]
            expect(page.locator("#status")).to_contain_text("of %s matching" % format(len(expected), ","))
            assert set(page.locator("#rows tr td:nth-child(3)").all_inner_texts()) == {"dpa-17.corp.example"}
            # A hostile id is text, nothing more.
            page.fill("#q", "</script>")
            expect(page.locator("#status")).to_contain_text("of 1 matching")
            assert page.inner_text("#rows tr td:nth-child(4)") == HOSTILE_TOKEN
            assert page.inner_text("#rows tr td:nth-child(3)") == HOSTILE_ENDPOINT
            assert page.locator("img, script:not([id='report-data'])").count() == 1   # the page's own script, no image
            page.fill("#q", "")

            # A finding's token searches the table; a count opens those rows.
            page.click("#findings a[data-q='tokenops-admin']")
            assert page.input_value("#q") == "tokenops-admin"
            page.click("#counts tr[data-product='openpayments'] td.o-todo a")
            assert _shown(page) == outcomes["openpayments"]["todo"]
            page.click("#reset")

            # Everything, expanded page by page: long ids wrap, nothing runs off a 1280 px window.
            page.click("#collapsed")
            assert _shown(page) == len(rows)
            page.click("#more")
            assert page.locator("#rows tr").count() == 2 * report_html.TABLE_PAGE
            _assert_no_overflow(page)
            dom = page.evaluate("document.getElementsByTagName('*').length")
            print("DOM elements with %d table rows shown: %d" % (2 * report_html.TABLE_PAGE, dom))
            assert dom < 8000

            content = page.content()
            assert not LEAK.search(content) and not LEAK.search(page.inner_text("body"))
            assert dialogs == [] and errors == []
            assert set(requests) == {url}, sorted(set(requests))[:5]
            page.click("#reset")
            page.select_option("#f-product", label="Open Payments")
            page.select_option("#f-person", value="yes")
            page.fill("#q", "auth-0")
            expected = [r for r in rows if r["product"] == "openpayments" and r["needs_person"] and "auth-0" in r["endpoint"]]
            expect(page.locator("#status")).to_contain_text("of %s matching" % format(len(expected), ","))
            page.locator("#tokens").scroll_into_view_if_needed()
            page.evaluate("window.scrollTo(0, document.getElementById('tokens').offsetTop - 8)")
            _screenshot(page, "report-10000-table.png", full_page=False)
            page.click("#reset")
            _screenshot(page, "report-10000-page.png", full_page=True)

            # The page's Content-Security-Policy would block a load before it became a request: without it, still none.
            bare = browser.new_context(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
            bare.set_default_timeout(LOADED_MACHINE_MS)
            attempts = []
            bare.on("request", lambda request: attempts.append(request.url))
            again = bare.new_page()
            again.goto(url)
            again.wait_for_selector("body[data-ready='1']")
            again.click("#collapsed")
            again.click("#more")
            again.fill("#q", "</script>")
            expect(again.locator("#status")).to_contain_text("of 1 matching")
            assert set(attempts) == {url}, sorted(set(attempts))[:5]
        finally:
            browser.close()


def _shown(page):
    text = page.inner_text("#status")
    return _numbers(re.search(r"of ([\d,]+) matching", text).group(1))


def _assert_no_overflow(page):
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth, window.innerWidth]")
    assert widths[0] <= widths[1] <= 1280, widths
    wide = page.evaluate("Array.from(document.querySelectorAll('main *')).filter(e => e.getBoundingClientRect().right > "
                         "document.documentElement.clientWidth + 0.5).length")
    assert wide == 0
    # Nor inside: no cell or line whose text runs past its box (a long id that does not wrap spills over its neighbours).
    spilled = page.evaluate("Array.from(document.querySelectorAll('main td, main th, main li, main p, main summary, main div'))"
                            ".filter(e => e.getClientRects().length && e.scrollWidth > e.clientWidth + 1).map(e => e.outerHTML.slice(0, 120))")
    assert spilled == []


def _screenshot(page, name, full_page):
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    print("screenshot: %s" % path)
