"""The HTML report at fleet scale: what the page says, that it escapes everything, and a real browser on 10,000 rows.

The fleet is what the four product roles record (the `sources` of rotation_report) for a realistic day: mostly tokens with
nothing to do, some rotated, DPA refresh tokens inside warn_before and fail_before, Open Payments grants waiting for consent,
Secret Server users who need a one-time code, interrupted rotations, failures, and the same DAS audit finding on every tenant.
Every result also carries secret fields a module must never hand on; none may reach the page.
"""

import datetime
import html
import json
import os
import random
import re
import shutil
import time
import zlib
from pathlib import Path

import pytest

from ansible_collections.tokenops.rotation.plugins.module_utils import report as rep
from ansible_collections.tokenops.rotation.plugins.module_utils import report_html

NOW = datetime.datetime(2027, 1, 15, 8, 0, 0, tzinfo=datetime.timezone.utc)
REPO = Path(__file__).resolve().parents[4]
ARTIFACTS = REPO / ".build" / "test-artifacts" / "report-html"
CHROMIUM = os.environ.get("TOKENOPS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOSTILE_TOKEN = '</script><script>alert("token")</script>'
HOSTILE_ENDPOINT = 'pam-<img src=x onerror=alert(1)>'
LEAK = re.compile(r"canary-\d{6}-x7Qz")
OUTCOME_KEYS = [key for key, _mark, _title in report_html.OUTCOMES]


def at(**delta):
    return (NOW + datetime.timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


class Canaries(object):
    """Secret values put into the results, as a leaking module would: none may appear in a report (all match LEAK)."""

    def __init__(self):
        self.issued = []

    def __call__(self):
        value = "canary-%06d-%s" % (len(self.issued), "x7Qz")
        self.issued.append(value)
        return value


def result(canary, token_id, action="none", **extra):
    """One token's module result, with the secret fields a careless module might return."""
    out = {"id": token_id, "action": action, "changed": action in ("created", "rotated", "recovered", "revoked"),
           "token_id": token_id, "fingerprint": "sha256:%012x" % zlib.crc32(token_id.encode()),
           "rotated_at": at(days=-3), "store_path": "tokenops/%s" % token_id,
           "secret": canary(), "refresh_token": canary(), "previous": {"secret": canary()}}
    out.update(extra)
    return out


def source(product, endpoint, results, configured=None, removing=(), cleanup=None, **extra):
    src = {"product": product, "endpoint": endpoint, "url": "https://%s.example.net" % endpoint, "check_mode": False,
           "configured": configured if configured is not None else [r["id"] for r in results], "removing": list(removing),
           "rotate": {"changed": any(r["changed"] for r in results), "results": results}}
    if cleanup is not None:
        src["cleanup"] = {"changed": True, "results": cleanup}
    src.update(extra)
    return src


def _expiry(rng):
    """Days left on a token of a fleet rotated on schedule: spread over 90 days, a few close or past."""
    roll = rng.random()
    if roll < 0.01:
        return rng.uniform(-3, -0.1)
    if roll < 0.03:
        return rng.uniform(0.05, 0.99)
    if roll < 0.09:
        return rng.uniform(1, 7)
    if roll < 0.30:
        return rng.uniform(7, 30)
    return rng.uniform(30, 90)


def fleet_sources(canary, rows=10000, seed=20):
    """What the roles record for a fleet of `rows` token rows over four products (DAS 35%, DPA 20%, Secret Server 22%, OP 23%)."""
    rng = random.Random(seed)
    plan = [("das", 50, 3500), ("dpa", 40, 2000), ("secretserver", 44, 2200), ("openpayments", 46, rows - 7700)]
    sources = []
    for product, endpoints, total in plan:
        per = [total // endpoints + (1 if i < total % endpoints else 0) for i in range(endpoints)]
        for number, count in enumerate(per):
            endpoint = {"das": "das-tenant-%02d", "dpa": "dpa-%02d.corp.example", "secretserver": "pam-%02d",
                        "openpayments": "auth-%02d.wallet.example"}[product] % (number + 1)
            if product == "secretserver" and number == 7:
                endpoint = HOSTILE_ENDPOINT
            sources.append(_endpoint_source(rng, canary, product, endpoint, number, count))
    return sources


def _endpoint_source(rng, canary, product, endpoint, number, count):
    results, removing, cleanup = [], [], None
    if product == "das" and number % 5 == 0:   # a tenant that removes one token this run: a cleanup row
        removing = ["retired-%02d" % number]
        cleanup = [result(canary, removing[0], "revoked", expires_at=None, fingerprint=None)]
        count -= 1
    for index in range(count):
        if product == "das":
            token_id = ("systems/%024x/opa-bundle-reader" % rng.getrandbits(96)) if index % 3 == 0 else "svc-%s-%03d" % (
                rng.choice(["billing", "ci-deployer", "payments-api", "audit-export", "catalog"]), index)
        elif product == "dpa":
            token_id = "dpa-report-%s-%03d" % (rng.choice(["nightly", "capacity", "sla", "oncall"]), index)
        elif product == "secretserver":
            token_id = "svc_%s_%03d" % (rng.choice(["backup", "deploy", "scanner", "ldap-sync"]), index)
        else:
            token_id = "grant-%s-%03d" % (rng.choice(["payouts", "invoicing", "refunds"]), index)
        if product == "secretserver" and number == 7 and index == 0:   # ids and messages are data, never markup
            results.append(result(canary, HOSTILE_TOKEN, "failed", failed=True, msg='<b onmouseover="alert(2)">HTTP 500</b> & </script>'))
            continue
        results.append(_token_result(rng, canary, product, token_id, endpoint))
    configured = [r["id"] for r in results]
    if product == "secretserver" and number == 3:   # a server the store could not be reached for: the task failed as a whole
        return {"product": product, "endpoint": endpoint, "url": "https://%s.example.net" % endpoint, "check_mode": False,
                "configured": configured, "removing": [],
                "rotate": {"failed": True, "msg": "Delinea Secret Server: store (vault): connection refused to https://bao.example:8200"}}
    extra = {}
    if product == "das":
        audit = [{"id": "tokenops-admin", "managed": False, "allows_all_paths": True, "never_expires": True, "expires_at": None,
                  "description": "created by hand at setup"}]
        if number % 4 == 1:
            audit.append({"id": "legacy-ci", "managed": False, "allows_all_paths": False, "never_expires": False,
                          "expires_at": at(days=200)})
        extra["audit"] = {"audit": audit}
    return source(product, endpoint, results, configured=configured, removing=removing, cleanup=cleanup, **extra)


def _token_result(rng, canary, product, token_id, endpoint):
    days = _expiry(rng)
    base = {"expires_at": at(days=days)}
    roll = rng.random()
    if product == "das" and roll < 0.04:
        return result(canary, token_id, "rotated", expires_at=at(days=30), rotated_at=at(minutes=-2))
    if product == "das" and roll < 0.045:
        return result(canary, token_id, "needs_reconcile", fingerprint=None,
                      reconcile_steps=["Revoke the token %s-next in DAS if it exists" % token_id, "Run the job again with das_state: rotated"])
    if product == "dpa":
        status = "fail" if days < 7 else ("warn" if days < 21 else "ok")
        return result(canary, token_id, "none", expiry_status=status, days_left=int(days), failed=status == "fail",
                      access_token=canary(), **base)
    if product == "secretserver" and roll < 0.01:
        return result(canary, token_id, "needs_interaction", failed=True, msg="a fresh one-time code is needed: run with otp", **base)
    if product == "secretserver" and roll < 0.05:
        return result(canary, token_id, "rotated", expires_at=at(hours=8), rotated_at=at(minutes=-1))
    if product == "openpayments" and roll < 0.02:
        return result(canary, token_id, "needs_interaction", fingerprint=None, expires_at=None,
                      redirect="https://%s/interact/%s?finish=%d&x=1" % (endpoint, token_id, rng.getrandbits(20)),
                      grant_requested_at=at(hours=-rng.choice([1, 5, 30, 70])))
    if product == "openpayments" and roll < 0.025:
        return result(canary, token_id, "none", backed_off=True, fingerprint=None, holder="awx-job-%d" % rng.randint(100, 999),
                      lease_expires_at=at(seconds=rng.choice([-600, 45])), msg="another run holds it")
    if roll < 0.052:
        return result(canary, token_id, "failed", failed=True, msg="%s: HTTP 503 from https://%s.example.net (retried 3 times)" % (
            rep.PRODUCTS[product], endpoint), **base)
    return result(canary, token_id, "none", **base)


# ------------------------------------------------------------------ what the page must say, from the JSON report

def outcome_of(row):
    """A row's outcome as the page names it, from the JSON report's own fields."""
    if row["fails_job"]:
        return "fail"
    if row["needs_person"]:
        return "todo"
    if row["changed"]:
        return "changed"
    if row["backed_off"]:
        return "held"
    return "ok"


def bucket_of(row):
    """When a kept token (a row of the rotate stage) expires, from the JSON report's seconds_left."""
    if row["stage"] != "rotate" or not row["token"]:
        return None
    left = row["seconds_left"]
    if left is None:
        return "none"
    return "expired" if left < 0 else "day" if left < 86400 else "week" if left < 7 * 86400 else "month" if left < 30 * 86400 else "later"


def expected_counts(document):
    outcomes, buckets = {}, {}
    for row in document["rows"]:
        outcomes.setdefault(row["product"], dict.fromkeys(OUTCOME_KEYS, 0))[outcome_of(row)] += 1
        bucket = bucket_of(row)
        if bucket:
            buckets.setdefault(row["product"], dict.fromkeys([b[0] for b in report_html.BUCKETS], 0))[bucket] += 1
    return outcomes, buckets


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


# ------------------------------------------------------------------ a real browser

def _browser():
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


def test_the_page_in_a_browser_at_10000_rows(fleet_report):
    sync_api, chromium = _browser()
    expect = sync_api.expect
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
            assert [t for t in page.locator("#rows tr td:nth-child(4)").all_inner_texts()] == [r["token"] for r in expected][:report_html.TABLE_PAGE]
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
