# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The report as one self-contained HTML page that stays usable at 10,000 tokens.

The page opens with what a person looks for first: counts by product and outcome, how many tokens
expire within a day, a week and a month (an inline SVG per product), and what needs a person with
identical findings grouped ("8 tenants: tokenops-admin never expires"). Below is the table of every
row. Its rows travel as compact JSON inside the page and a small inline script renders only the
rows that match the filters, a page at a time, so 10,000 rows stay a few hundred table rows in the
DOM. Rows that need nothing are collapsed until asked for or searched.

Nothing is loaded from outside the file: no stylesheet, font, image or script, and a
Content-Security-Policy that allows only this page's own style and script (by hash) says so to
the browser. Every text is escaped: HTML-escaped where written as HTML, and the embedded JSON
escapes <, > and & so no value can close its script element; the script writes text only with
textContent.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import hashlib
import html
import json
import re

# A row's outcome is its urgency rank (report._rank): what the table's marks, filters and counts use.
OUTCOMES = (("fail", "FAIL", "Fails the job"), ("todo", "TODO", "A person's task"), ("changed", "changed", "Changed by this run"),
            ("held", "held", "Held by another run"), ("ok", "ok", "Nothing to do"))

# Expiry buckets of the picture: (key, heading, upper bound in seconds, colour). Rows of the rotate stage only:
# a token being removed no longer expires for anyone.
DAY = 86400
BAR_MAX = 105           # the longest bar of a column of the picture, in SVG units (about pixels at 1280 px)
BUCKETS = (("expired", "Expired", 0, "#c62828"), ("day", "Within 1 day", DAY, "#ef6c00"),
           ("week", "1 to 7 days", 7 * DAY, "#f9a825"), ("month", "7 to 30 days", 30 * DAY, "#7cb342"),
           ("later", "Beyond 30 days", None, "#2e7d32"), ("none", "Never or unknown", None, "#90a4ae"))

# How a finding reads in a list: "tokenops-admin never expires".
SHORT = {
    "failed": "failed", "needs_reconcile": "needs reconciling by a person", "dpa_fail_before": "inside fail_before or expired",
    "consent_overdue": "consent overdue", "needs_interaction": "needs a login with a one-time code",
    "backed_off_stale": "held by a run that died", "consent_waiting": "waiting for consent", "dpa_warn_before": "inside warn_before",
    "manual_step": "needs a step in the product's interface", "das_unmanaged": "is managed by no inventory host",
    "das_all_paths": "allows every API path", "das_never_expires": "never expires", "backed_off": "held by another run",
}
TABLE_NAMES = {"secretserver": "Secret Server"}   # short enough for the table's product column
ENDPOINT_NOUN = {"das": ("tenant", "tenants"), "dpa": ("DPA server", "DPA servers"), "secretserver": ("Secret Server", "Secret Servers"),
                 "openpayments": ("authorization server", "authorization servers")}
INLINE = 3              # a group of up to this many endpoints or tokens names them in its line; a larger one lists them below
TABLE_PAGE = 100        # table rows the script adds at a time: the DOM stays small


def bucket_of(row):
    """The picture's bucket of a row, or None when the row is not a kept token."""
    if row.get("stage") != "rotate" or not row.get("token"):
        return None
    left = row.get("seconds_left")
    if left is None:
        return "none"
    for key, _title, bound, _colour in BUCKETS:
        if bound is not None and left < bound:
            return key
    return "later"


def _h(text):
    return html.escape("" if text is None else str(text), quote=True)


_URL = re.compile(r"(https?://[^\s<>\"']+)")


def _h_linked(text):
    """Escaped text whose http(s) URLs are links (a consent URL must be one click away)."""
    parts = _URL.split("" if text is None else str(text))
    out = []
    for index, part in enumerate(parts):
        if index % 2:
            url = part.rstrip(".,;)")
            out.append('<a href="%s" rel="noreferrer">%s</a>%s' % (_h(url), _h(url), _h(part[len(url):])))
        else:
            out.append(_h(part))
    return "".join(out)


def _token_link(token):
    """A token's name that searches the table for it."""
    if not token:
        return "the whole endpoint"
    return '<a class="tok" href="#tokens" data-q="%s"><code>%s</code></a>' % (_h(token), _h(token))


def _capital(text):
    return text[:1].upper() + text[1:]


def _n(number):
    return "{:,}".format(number)


def _plural(count, one, many):
    return "%s %s" % (_n(count), one if count == 1 else many)


def _script_json(value):
    """JSON that can sit inside <script>: no <, > or & survives, so neither </script> nor <!-- can appear."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, sort_keys=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


# ------------------------------------------------------------------ the parts of the page

class _Page(object):
    def __init__(self, report, products, product_order, conditions, rank):
        self.report = report
        self.conditions = conditions
        self.rank = rank
        self.names = dict(products)
        present = {r["product"] for r in report["rows"]} | {a["product"] for a in report["needs_person"]}
        self.products = [p for p in product_order if p in present] + sorted(p for p in present if p not in product_order)
        self.ranks = [rank(r) for r in report["rows"]]

    def name(self, product):
        return self.names.get(product, product)

    # -- summary

    def outcome_counts(self):
        """{product: [count per outcome rank]}, and the total."""
        counts = {p: [0] * len(OUTCOMES) for p in self.products}
        for row, rank in zip(self.report["rows"], self.ranks):
            counts[row["product"]][rank] += 1
        return counts

    def expiry_counts(self):
        counts = {p: dict((b[0], 0) for b in BUCKETS) for p in self.products}
        for row in self.report["rows"]:
            bucket = bucket_of(row)
            if bucket:
                counts[row["product"]][bucket] += 1
        return counts

    def header(self):
        report, counts = self.report, self.report["counts"]
        label = {"failed": "Fails: a person must act", "attention": "A person has something to do", "ok": "All fine"}
        check = ' <span class="check">check mode: what a real run would do</span>' if report["check_mode"] else ""
        title = "Token rotation report" + (": prediction (check mode, nothing was changed)" if report.get("prediction") else "")
        return ('<header><h1>' + _h(title) + '</h1><span class="badge outcome-%s" id="outcome">%s</span>%s'
                '<p class="sub">Run at %s &middot; %s on %s &middot; %s changed &middot; %s &middot; %s</p></header>' % (
                    _h(report["outcome"]), _h(label.get(report["outcome"], report["outcome"])), check,
                    _h(report["generated_at"].replace("T", " ").replace("Z", " UTC")), _plural(counts["tokens"], "token", "tokens"),
                    _plural(counts["endpoints"], "endpoint", "endpoints"), _n(counts["changed"]),
                    _plural(counts["needs_person"], "item needs a person", "items need a person"),
                    _plural(counts["fails_job"], "fails the job", "fail the job")))

    def cards(self, expiry):
        totals = dict((b[0], sum(expiry[p][b[0]] for p in self.products)) for b in BUCKETS)
        counts = self.report["counts"]
        audit = len(self.report["audit"])
        cards = [("fails-job", "Fail the job", counts["fails_job"], "fail"),
                 ("needs-person", "Need a person", counts["needs_person"], "todo"),
                 ("changed", "Changed by this run", counts["changed"], "changed"),
                 ("expired", "Expired", totals["expired"], "expired"),
                 ("within-day", "Expire within 1 day", totals["day"], "day"),
                 ("within-week", "Expire within 7 days", totals["day"] + totals["week"], "week"),
                 ("within-month", "Expire within 30 days", totals["day"] + totals["week"] + totals["month"], "month")]
        notes = {"needs-person": "incl. %s" % _plural(audit, "audit finding", "audit findings") if audit else ""}
        return '<div class="cards">%s</div>' % "".join(
            '<div class="card c-%s%s" id="card-%s"><div class="num">%s</div><div class="what">%s%s</div></div>' % (
                kind, " zero" if not value else "", key, _n(value), _h(title),
                '<span class="incl">%s</span>' % _h(notes[key]) if notes.get(key) else "") for key, title, value, kind in cards)

    def counts_table(self, outcomes):
        head = "".join('<th class="num">%s</th>' % _h(title) for _key, _mark, title in OUTCOMES)
        body = []
        for product in self.products + [""]:
            values = outcomes[product] if product else [sum(outcomes[p][i] for p in self.products) for i in range(len(OUTCOMES))]
            cells = []
            for index, value in enumerate(values):
                if value:
                    cells.append('<td class="num o-%s"><a href="#tokens" data-fp="%s" data-fo="%d">%s</a></td>' % (
                        OUTCOMES[index][0], _h(product), index, _n(value)))
                else:
                    cells.append('<td class="num zero">0</td>')
            total = '<a href="#tokens" data-fp="%s" data-fo="">%s</a>' % (_h(product), _n(sum(values)))
            body.append('<tr%s data-product="%s"><th>%s</th>%s<td class="num total">%s</td></tr>' % (
                ' class="all"' if not product else "", _h(product or "all"), _h(self.name(product) if product else "All products"),
                "".join(cells), total))
        by_action = self.report["counts"]["by_action"]
        actions = " &middot; ".join("%s %s" % (_h(a), _n(by_action[a])) for a in sorted(by_action, key=lambda a: (-by_action[a], a)))
        return ('<section class="panel counts"><h2>Tokens by product and outcome</h2><table class="counts" id="counts"><thead><tr><th>Product</th>'
                '%s<th class="num">Total</th></tr></thead><tbody>%s</tbody></table><p class="note">Actions: %s. '
                'A number shows those rows in the table below.</p></section>' % (head, "".join(body), actions or "none"))

    def expiry_picture(self, expiry):
        """Per product, how many kept tokens expire when: one bar per bucket, each column scaled to its own largest count."""
        label_w, col_w, row_h, top = 190, 165, 30, 34
        rows = self.products + [""]
        width, height = label_w + col_w * len(BUCKETS), top + row_h * len(rows) + 6
        totals = dict((b[0], sum(expiry[p][b[0]] for p in self.products)) for b in BUCKETS)
        out = ['<svg id="expiry" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="100%%" role="img" '
               'aria-labelledby="expiry-title"><title id="expiry-title">Tokens by when they expire, per product</title>' % (width, height)]
        for index, (key, title, _bound, colour) in enumerate(BUCKETS):
            x = label_w + index * col_w
            out.append('<rect x="%d" y="4" width="12" height="12" rx="2" fill="%s"/><text x="%d" y="15" class="colhead">%s</text>' % (
                x, colour, x + 17, _h(title)))
        for line, product in enumerate(rows):
            y = top + line * row_h
            values = expiry[product] if product else totals
            if line % 2 == 0:
                out.append('<rect x="0" y="%d" width="%d" height="%d" fill="#f6f7f9"/>' % (y - 2, width, row_h))
            noun = self.name(product) if product else "All products"
            out.append('<text x="6" y="%d" class="rowhead%s">%s</text>' % (y + 17, "" if product else " all", _h(noun)))
            for index, (key, title, _bound, colour) in enumerate(BUCKETS):
                count = values[key]
                peak = max(totals[key] if not product else max(expiry[p][key] for p in self.products), 1)
                length = round(BAR_MAX * count / float(peak), 2) if count else 0
                x = label_w + index * col_w
                out.append('<rect class="bar" data-product="%s" data-bucket="%s" data-count="%d" x="%d" y="%d" width="%s" height="16" '
                           'rx="2" fill="%s"><title>%s: %s %s</title></rect>' % (
                               _h(product or "all"), key, count, x, y + 5, length, colour, _h(noun),
                               _plural(count, "token", "tokens"), _h(title.lower())))
                out.append('<text x="%s" y="%d" class="count%s" data-product="%s" data-bucket="%s">%s</text>' % (
                    x + length + 5, y + 18, " zero" if not count else "", _h(product or "all"), key, _n(count)))
        out.append("</svg>")
        return ('<section class="panel expiry"><h2>When the tokens expire</h2>%s<p class="note">Tokens the run keeps, by the time left '
                'on their stored secret. Each column is scaled to its own largest count; the last row is all products.</p>'
                '</section>' % "".join(out))

    # -- what needs a person, identical findings grouped

    def findings(self):
        """needs_person with identical findings grouped, by kind (the most severe condition), failing kinds first.

        Identical means the same product, conditions and what to do: for one token found on many endpoints (the tenant
        audit's tokenops-admin on every tenant), or for many tokens of one endpoint (a store that was down for all of them).
        """
        order = list(self.conditions)
        by_token, groups = {}, []
        for item in self.report["needs_person"]:
            key = (item["product"], item["token"], tuple(item["conditions"]), tuple(item["todo"]), bool(item["fails_job"]))
            if key not in by_token:
                by_token[key] = {"item": item, "endpoints": [], "tokens": [item["token"]]}
                groups.append(by_token[key])
            if item["endpoint"] not in by_token[key]["endpoints"]:
                by_token[key]["endpoints"].append(item["endpoint"])
        merged, by_endpoint = [], {}
        for group in groups:
            item = group["item"]
            if len(group["endpoints"]) > 1 or not item["token"]:
                merged.append(group)
                continue
            key = (item["product"], item["endpoint"], tuple(item["conditions"]), tuple(item["todo"]), bool(item["fails_job"]))
            if key in by_endpoint:
                by_endpoint[key]["tokens"].append(item["token"])
            else:
                by_endpoint[key] = group
                merged.append(group)
        kinds = {}
        for group in merged:
            item = group["item"]
            conds = [c for c in order if c in item["conditions"]] or ["failed"]
            kinds.setdefault((not item["fails_job"], order.index(conds[0])), []).append(group)
        return [(order[index], not later, kinds[(later, index)]) for later, index in sorted(kinds)]

    def findings_section(self):
        kinds = self.findings()
        if not kinds:
            return '<section id="findings"><h2>What needs a person</h2><p class="none">Nothing: no token needs a person.</p></section>'
        parts = ['<section id="findings"><h2>What needs a person</h2><p class="note">Identical findings are grouped: one token '
                 'on many endpoints, or many tokens of one endpoint. A token&rsquo;s name finds its rows in the table.</p>']
        for condition, fails, groups in kinds:
            items = sum(len(g["endpoints"]) * len(g["tokens"]) for g in groups)
            parts.append('<details class="kind%s" data-condition="%s"%s><summary><span class="pill %s">%s</span> %s '
                         '<span class="count">%s</span></summary><ul class="groups">' % (
                             " fails" if fails else "", _h(condition), " open" if len(groups) <= 10 else "",
                             "fail" if fails else "todo", "fails the job" if fails else "a person's task",
                             _h(_capital(self.conditions.get(condition, (condition,))[0])),
                             _h(_plural(items, "item", "items") + ("" if len(groups) == items else
                                                                   " in %s" % _plural(len(groups), "group", "groups")))))
            parts.extend(self.group_html(group) for group in groups)
            parts.append("</ul></details>")
        parts.append("</section>")
        return "".join(parts)

    def group_html(self, group):
        item, endpoints, tokens = group["item"], group["endpoints"], group["tokens"]
        one, many = ENDPOINT_NOUN.get(item["product"], ("endpoint", "endpoints"))
        what = ", ".join(SHORT.get(c, c) for c in item["conditions"])
        audit = " (tenant audit)" if item.get("action") == "audit" else ""
        product = '<span class="prod">%s</span>' % _h(self.name(item["product"]))
        listed = ""
        if 1 < len(endpoints) <= INLINE:
            head = "%s %s: %s" % (product, ", ".join(_h(e) for e in endpoints), _token_link(item["token"]))
        elif 1 < len(tokens) <= INLINE:
            head = "%s %s: %s" % (product, _h(endpoints[0]), ", ".join(_token_link(t) for t in tokens))
        elif len(endpoints) > 1:
            head = '%s <strong class="n">%s</strong>: %s' % (product, _h(_plural(len(endpoints), one, many)), _token_link(item["token"]))
            listed = '<details class="where"><summary>the %s</summary><p>%s</p></details>' % (
                _h(_plural(len(endpoints), one, many)), ", ".join(_h(e) for e in endpoints))
        elif len(tokens) > 1:
            head = '%s %s: <strong class="n">%s</strong>' % (product, _h(endpoints[0]), _h(_plural(len(tokens), "token", "tokens")))
            listed = '<details class="where"><summary>the %s</summary><p>%s</p></details>' % (
                _h(_plural(len(tokens), "token", "tokens")), " ".join(_token_link(t) for t in tokens))
        else:
            head = "%s %s: %s" % (product, _h(endpoints[0]), _token_link(item["token"]))
        todo = "".join("<li>%s</li>" % _h_linked(t) for t in item["todo"])
        return '<li class="group" data-endpoints="%d" data-tokens="%d">%s %s%s%s%s</li>' % (
            len(endpoints), len(tokens), head, _h(what), audit, '<ul class="todo">%s</ul>' % todo if todo else "", listed)

    def warnings_section(self):
        """Warnings of the run itself (report["warnings"], when the report has them: a metrics push that failed, ...)."""
        warnings = self.report.get("warnings")
        if not isinstance(warnings, list) or not warnings:
            return ""
        texts = [w.get("msg") if isinstance(w, dict) and w.get("msg") else w for w in warnings]
        return '<section id="warnings"><h2>Warnings</h2><ul class="errors">%s</ul></section>' % "".join(
            "<li>%s</li>" % _h_linked(t if isinstance(t, str) else json.dumps(t, sort_keys=True, default=str)) for t in texts)

    def errors_section(self):
        errors = self.report["errors"]
        if not errors:
            return ""
        groups = {}
        for error in errors:
            groups.setdefault((error["product"], error["stage"], error["msg"]), []).append(error["endpoint"])
        items = "".join('<li><span class="prod">%s</span> %s, stage %s: %s</li>' % (
            _h(self.name(product)), ", ".join(_h(e) for e in endpoints), _h(stage), _h_linked(msg))
            for (product, stage, msg), endpoints in groups.items())
        return '<section id="errors"><h2>Stages that failed</h2><ul class="errors">%s</ul></section>' % items

    # -- the table

    def table_data(self):
        endpoints, actions = {}, {}
        rows = []
        index = {p: i for i, p in enumerate(self.products)}
        conds = list(self.conditions)
        for row, rank in zip(self.report["rows"], self.ranks):
            endpoint = endpoints.setdefault(row["endpoint"], len(endpoints))
            action = "backed off" if row["backed_off"] else row["action"] + (" (predicted)" if row["check_mode"] else "")
            action = actions.setdefault(action, len(actions))
            note = ""
            if row["backed_off"] and not row["todo"]:
                note = "another run (%s) was changing it" % (row.get("holder") or "unknown")
            cells = [rank, index[row["product"]], endpoint, row["token"], action, row.get("expires_at") or "", row["time_left"],
                     [conds.index(c) for c in row["conditions"] if c in conds], list(row["todo"])]
            if note:
                cells.append(note)
            elif not cells[-1]:
                cells.pop()
                if not cells[-1]:
                    cells.pop()
            rows.append(cells)
        return {
            "products": [[p, self.name(p), TABLE_NAMES.get(p, self.name(p))] for p in self.products],
            "endpoints": sorted(endpoints, key=endpoints.get),
            "actions": sorted(actions, key=actions.get),
            "outcomes": [[key, mark, title] for key, mark, title in OUTCOMES],
            "conditions": [[c, SHORT.get(c, c)] for c in conds],
            "page": TABLE_PAGE,
            "rows": rows,
        }

    def table_section(self, outcomes):
        totals = [sum(outcomes[p][i] for p in self.products) for i in range(len(OUTCOMES))]
        products = "".join('<option value="%d">%s</option>' % (i, _h(self.name(p))) for i, p in enumerate(self.products))
        kinds = "".join('<option value="%d">%s (%s)</option>' % (i, _h(title), _n(totals[i])) for i, (_k, _m, title) in enumerate(OUTCOMES))
        return (
            '<section id="tokens"><h2>Tokens, most urgent first</h2>'
            '<div class="filters" role="search">'
            '<input id="q" type="search" placeholder="Search token or endpoint (press /)" aria-label="Search token or endpoint" '
            'autocomplete="off" spellcheck="false">'
            '<label>Product <select id="f-product"><option value="">All</option>%s</select></label>'
            '<label>Outcome <select id="f-outcome"><option value="">All</option>%s</select></label>'
            '<label>Needs a person <select id="f-person"><option value="">Either</option><option value="yes">Yes</option>'
            '<option value="no">No</option></select></label>'
            '<button type="button" id="reset">Reset</button><span id="status" aria-live="polite"></span></div>'
            '<noscript><p class="note">The table needs JavaScript; everything that needs a person is listed above, and the '
            'JSON report holds every row.</p></noscript>'
            '<table class="rows"><colgroup><col class="c-mark"><col class="c-product"><col class="c-endpoint"><col class="c-token">'
            '<col class="c-action"><col class="c-expires"><col class="c-todo"></colgroup>'
            '<thead><tr><th></th><th>Product</th><th>Endpoint</th><th>Token</th><th>Action</th><th>Expires</th>'
            '<th>What a person must do</th></tr></thead><tbody id="rows"></tbody></table>'
            '<div class="after"><button type="button" id="more" hidden></button><button type="button" id="collapsed" hidden></button>'
            '</div></section>' % (products, kinds))


def render(report, products, product_order, conditions, rank):
    """The page. `products` names each product, `conditions` describes each condition, `rank` is a row's outcome index."""
    page = _Page(report, products, product_order, conditions, rank)
    outcomes, expiry = page.outcome_counts(), page.expiry_counts()
    style, script = _CSS.strip(), _JS.strip()
    csp = ("default-src 'none'; style-src %s; script-src %s; img-src 'none'; base-uri 'none'; form-action 'none'"
           % (_csp_hash(style), _csp_hash(script)))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="%s">' % html.escape(csp, quote=False),
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        "<title>Token rotation report %s: %s%s</title>" % (
            _h(report["generated_at"]), _h(report["outcome"]), " (prediction)" if report.get("prediction") else ""),
        "<style>%s</style></head><body><main>" % style,
        page.header(),
        page.cards(expiry),
        '<div class="overview">%s%s</div>' % (page.counts_table(outcomes), page.expiry_picture(expiry)),
        page.warnings_section(),
        page.errors_section(),
        page.findings_section(),
        page.table_section(outcomes),
        "</main>",
        '<script type="application/json" id="report-data">%s</script>' % _script_json(page.table_data()),
        "<script>%s</script>" % script,
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg2:#f6f8fa;--fail:#c62828;--todo:#b26a00;--changed:#2e7d32;--held:#6e7781}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff}
main{max-width:1400px;margin:0 auto;padding:20px 24px 48px}
header{display:flex;flex-wrap:wrap;align-items:center;gap:6px 14px;margin-bottom:14px}
h1{font-size:22px;margin:0}h2{font-size:16px;margin:0 0 10px}
.sub{flex-basis:100%;margin:0;color:var(--muted)}
.badge{padding:3px 10px;border-radius:12px;font-weight:600;font-size:13px;color:#fff}
.outcome-failed{background:var(--fail)}.outcome-attention{background:var(--todo)}.outcome-ok{background:var(--changed)}
.check{padding:3px 10px;border-radius:12px;font-size:13px;background:#ddf4ff;color:#0550ae}
.cards{display:grid;grid-template-columns:repeat(7,minmax(0,1fr));gap:10px;margin-bottom:16px}
.card{border:1px solid var(--line);border-left:5px solid var(--held);border-radius:6px;padding:8px 12px;background:#fff}
.card .num{font-size:26px;line-height:1.2;font-weight:650;font-variant-numeric:tabular-nums}.card .what{color:var(--muted);font-size:12.5px}
.card.c-fail{border-left-color:var(--fail)}.card.c-todo{border-left-color:var(--todo)}.card.c-changed{border-left-color:var(--changed)}
.card.c-expired{border-left-color:#c62828}.card.c-day{border-left-color:#ef6c00}.card.c-week{border-left-color:#f9a825}
.card.c-month{border-left-color:#7cb342}.card .incl{display:block;font-size:11.5px}.card.zero .num{color:#8c959f}
.overview{display:grid;grid-template-columns:minmax(0,1fr);gap:14px;margin-bottom:18px}
.panel{border:1px solid var(--line);border-radius:6px;padding:12px 14px}
.note{color:var(--muted);font-size:12.5px;margin:8px 0 0}
table{border-collapse:collapse;width:100%}
table.counts th,table.counts td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left}
table.counts thead th{font-size:12px;color:var(--muted);font-weight:600;vertical-align:bottom}
.num{text-align:right!important;font-variant-numeric:tabular-nums}
table.counts td.zero{color:#afb8c1}table.counts tr.all th,table.counts tr.all td{font-weight:650;border-bottom:0;border-top:2px solid var(--line)}
table.counts a{color:inherit;text-decoration:none;border-bottom:1px dotted currentColor}
.o-fail a{color:var(--fail);font-weight:650}.o-todo a{color:var(--todo);font-weight:650}.o-changed a{color:var(--changed)}
svg text{font-family:inherit;font-size:13px;fill:var(--fg)}svg .colhead{font-size:12.5px;fill:var(--muted)}
svg .rowhead.all{font-weight:650}svg .count{font-variant-numeric:tabular-nums}svg .count.zero{fill:#afb8c1}
section{margin-bottom:18px}
details.kind{border:1px solid var(--line);border-radius:6px;margin:6px 0;background:#fff}
details.kind>summary{cursor:pointer;padding:7px 10px;background:var(--bg2);border-radius:6px;font-weight:600}
details.kind>summary .count{font-weight:400;color:var(--muted);margin-left:6px}
details.kind.fails{border-color:#f0b4b4}
ul.groups{margin:0;padding:4px 12px 8px 30px}ul.groups>li{margin:6px 0;overflow-wrap:anywhere}
ul.todo{margin:2px 0;padding-left:18px;color:#3a4048}
.where{margin:2px 0}.where>summary{cursor:pointer;color:#0969da;font-size:12.5px}.where p{margin:4px 0;color:var(--muted);font-size:12.5px}
.prod{font-weight:600}a.tok{text-decoration:none}code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--bg2);
padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
.pill{display:inline-block;padding:1px 7px;border-radius:10px;font-size:11.5px;font-weight:650;color:#fff;background:var(--held)}
.pill.fail{background:var(--fail)}.pill.todo{background:var(--todo)}.pill.changed{background:var(--changed)}.pill.held{background:var(--held)}
.pill.ok{background:#eaeef2;color:var(--muted)}
.filters{position:sticky;top:0;z-index:2;display:flex;flex-wrap:wrap;align-items:center;gap:8px 14px;padding:8px 10px;background:var(--bg2);
border:1px solid var(--line);border-radius:6px;margin-bottom:8px}
.filters input{flex:1 1 260px;min-width:200px;padding:6px 9px;border:1px solid #afb8c1;border-radius:6px;font:inherit}
.filters select,.filters button,.after button{font:inherit;padding:4px 8px;border:1px solid #afb8c1;border-radius:6px;background:#fff}
.filters button,.after button{cursor:pointer}#status{color:var(--muted);font-size:12.5px}
table.rows{table-layout:fixed;font-size:13px}
table.rows th{background:#fff;text-align:left;font-size:12px;color:var(--muted);border-bottom:2px solid var(--line);
padding:6px}
table.rows td{padding:6px;border-bottom:1px solid var(--line);vertical-align:top;overflow-wrap:anywhere;word-break:break-word}
table.rows td ul{margin:0;padding-left:16px}
col.c-mark{width:64px}col.c-product{width:120px}col.c-endpoint{width:14%}col.c-token{width:17%}col.c-action{width:128px}
col.c-expires{width:150px}
tr.r0{background:#fff5f5}tr.r1{background:#fffaf0}
td .at{color:var(--muted);font-size:12px}td .tl{font-variant-numeric:tabular-nums}td .tl.past{color:var(--fail);font-weight:600}
td .quiet{color:var(--muted)}td.none{text-align:center;color:var(--muted);padding:18px}
.after{display:flex;gap:10px;margin-top:10px}
"""

_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var rows = data.rows, outcomes = data.outcomes, conds = data.conditions;
  var el = function (id) { return document.getElementById(id); };
  var q = el("q"), fProduct = el("f-product"), fOutcome = el("f-outcome"), fPerson = el("f-person");
  var body = el("rows"), status = el("status"), more = el("more"), collapsed = el("collapsed");
  var state = {expanded: false, limit: data.page};
  var keys = rows.map(function (r) { return (r[3] + "\n" + data.endpoints[r[2]]).toLowerCase(); });
  var fmt = function (n) { return n.toLocaleString("en-US"); };
  var URL_RE = /(https?:\/\/[^\s<>"']+)/;

  function node(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function linked(parent, text) {
    text.split(URL_RE).forEach(function (part, i) {
      if (i % 2) {
        var url = part.replace(/[.,;)]+$/, ""), a = node("a", null, url);
        a.href = url; a.rel = "noreferrer";
        parent.appendChild(a);
        if (part.length > url.length) { parent.appendChild(document.createTextNode(part.slice(url.length))); }
      } else if (part) {
        parent.appendChild(document.createTextNode(part));
      }
    });
  }

  function rowNode(r) {
    var tr = node("tr", "r" + r[0]), o = outcomes[r[0]], td;
    td = node("td"); td.appendChild(node("span", "pill " + o[0], o[1])); td.title = o[2]; tr.appendChild(td);
    td = node("td", null, data.products[r[1]][2]); td.title = data.products[r[1]][1]; tr.appendChild(td);
    tr.appendChild(node("td", null, data.endpoints[r[2]]));
    td = node("td"); td.appendChild(node("code", null, r[3] || "(the whole endpoint)")); tr.appendChild(td);
    tr.appendChild(node("td", null, data.actions[r[4]]));
    td = node("td");
    if (r[6]) { td.appendChild(node("div", "tl" + (r[6].indexOf("expired") === 0 ? " past" : ""), r[6])); }
    if (r[5]) { td.appendChild(node("div", "at", r[5].replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, " UTC"))); td.title = r[5]; }
    tr.appendChild(td);
    td = node("td");
    var todo = r[8] || [];
    if (todo.length) {
      var ul = node("ul");
      todo.forEach(function (t) { var li = node("li"); linked(li, t); ul.appendChild(li); });
      td.appendChild(ul);
    } else if (r[9]) {
      td.appendChild(node("span", "quiet", r[9]));
    } else if ((r[7] || []).length) {
      td.appendChild(node("span", "quiet", r[7].map(function (c) { return conds[c][1]; }).join(", ")));
    }
    tr.appendChild(td);
    return tr;
  }

  function render() {
    var text = q.value.trim().toLowerCase(), p = fProduct.value, o = fOutcome.value, n = fPerson.value;
    var asked = text !== "" || o !== "" || n !== "";   // a search or filter that may ask for rows needing nothing shows them
    var shown = [], hidden = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (p !== "" && r[1] !== +p) { continue; }
      if (o !== "" && r[0] !== +o) { continue; }
      if (n === "yes" && r[0] > 1) { continue; }
      if (n === "no" && r[0] <= 1) { continue; }
      if (text && keys[i].indexOf(text) < 0) { continue; }
      if (r[0] > 1 && !asked && !state.expanded) { hidden++; continue; }
      shown.push(i);
    }
    var frag = document.createDocumentFragment(), upto = Math.min(state.limit, shown.length);
    for (var k = 0; k < upto; k++) { frag.appendChild(rowNode(rows[shown[k]])); }
    if (!shown.length) {
      var tr = node("tr"), td = node("td", "none", hidden ? "Nothing here needs a person." : "No token matches.");
      td.colSpan = 7; tr.appendChild(td); frag.appendChild(tr);
    }
    body.replaceChildren(frag);
    status.textContent = "Showing " + fmt(upto) + " of " + fmt(shown.length) + " matching row" + (shown.length === 1 ? "" : "s") +
      (hidden ? "; " + fmt(hidden) + " that need nothing are collapsed" : "");
    more.hidden = upto >= shown.length;
    more.textContent = "Show " + fmt(Math.min(data.page, shown.length - upto)) + " more (" + fmt(shown.length - upto) + " left)";
    collapsed.hidden = !(hidden || (state.expanded && !asked));
    collapsed.textContent = hidden ? "Show the " + fmt(hidden) + " rows that need nothing" : "Collapse the rows that need nothing";
  }

  function refilter() { state.limit = data.page; render(); }

  var typing = null;
  q.addEventListener("input", function () { clearTimeout(typing); typing = setTimeout(refilter, 120); });
  [fProduct, fOutcome, fPerson].forEach(function (s) { s.addEventListener("change", refilter); });
  more.addEventListener("click", function () { state.limit += data.page; render(); });
  collapsed.addEventListener("click", function () { state.expanded = !state.expanded; refilter(); });
  el("reset").addEventListener("click", function () {
    q.value = ""; fProduct.value = ""; fOutcome.value = ""; fPerson.value = ""; state.expanded = false; refilter();
  });
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[data-fp], a[data-q]") : null;
    if (!a) { return; }
    if (a.hasAttribute("data-q")) {
      q.value = a.getAttribute("data-q"); fProduct.value = ""; fOutcome.value = ""; fPerson.value = "";
    } else {
      var prod = a.getAttribute("data-fp"), idx = "";
      data.products.forEach(function (pr, i) { if (pr[0] === prod) { idx = String(i); } });
      q.value = ""; fProduct.value = idx; fOutcome.value = a.getAttribute("data-fo"); fPerson.value = "";
    }
    refilter();
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "/" && document.activeElement !== q && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      ev.preventDefault(); q.focus();
    }
  });
  render();
  document.body.setAttribute("data-ready", "1");
}());
"""
