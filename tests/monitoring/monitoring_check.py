#!/usr/bin/python3
"""Checks of the monitoring assets (monitoring/): dashboards, rule coverage and metric names.

Python standard library only. The rule files are read with a small line-based reader that
understands the subset of YAML they are written in (see read_rules); keep them in that style.

Subcommands (each exits 0 on success, 1 with one line per problem on failure, 2 on bad usage):
  dashboards     every dashboard is valid JSON with the expected panels, a datasource through
                 ${DS_PROMETHEUS}, unique ids, and PromQL that promtool accepts
  coverage       every alert has a promtool test where it fires and one where it stays silent;
                 every recording rule's value is asserted by a promtool test
  names-docs     every metric name the dashboards and rules use is documented in docs/metrics.md
  names-live F [FAMILY...]
                 every metric name they use is a family in the exposition file F (a scrape of a
                 live silo); NVML families and the documented event-driven ones may be absent,
                 except the FAMILYs given (the caller produced their event)
  selftest       the PromQL name extractor and the exposition comparison on known inputs
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MONITORING = os.path.join(ROOT, "monitoring")
DASHBOARD_DIR = os.path.join(MONITORING, "grafana", "dashboards")
RULE_FILES = [os.path.join(MONITORING, "prometheus", "rules", f) for f in ("recording.yml", "alerts.yml")]
RULE_TEST_DIR = os.path.join(MONITORING, "prometheus", "tests")
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")

# Panel titles each dashboard must have (the brief of what each dashboard shows).
EXPECTED_PANELS = {
    "overview.json": ["Silo up", "Grain call rate", "Grain call error rate", "Grain call latency p50 / p95 / p99",
                      "Fallbacks by reason", "Circuit breakers", "Devices up", "Devices"],
    "performance.json": ["Grain call latency p50 by type and method", "Grain call latency p95 by type and method",
                         "Grain call latency p99 by type and method", "Batch size (mean and p95)",
                         "Batch queue time (p50 and p99)", "Kernel duration (p50 and p99)", "Throughput per device"],
    "memory.json": ["Pool bytes in use", "Pool bytes reserved", "Device memory", "Host-device transfers",
                    "GPU memory used (NVML)"],
    "kernels.json": ["Kernel executions", "Kernel errors", "Kernel duration p50", "Kernel duration p95",
                     "Kernel duration p99", "Retries", "Faults injected"],
}

# Series Prometheus itself attaches to every scrape; no silo exports them.
PROMETHEUS_SYNTHESIZED = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                          "scrape_samples_post_metric_relabeling", "scrape_series_added"}

# Families that appear only after an event a plain demo run need not produce (docs/metrics.md:
# "a family that has nothing to report yet is absent"). Each must still be documented there.
EVENT_DRIVEN_FAMILIES = {
    "gpubridge_fallbacks_total",             # only once a call runs somewhere other than asked
    "gpubridge_breaker_state",               # only once a breaker exists for a (device, kernel)
    "gpubridge_breaker_transitions_total",   # only after a breaker changes state
    "gpubridge_bulkhead_rejections_total",   # only after a full bulkhead turns a call away
    "gpubridge_retries_total",               # only after a device execution is retried
    "gpubridge_faults_injected_total",       # only with the fault switch on
    "gpubridge_transfer_bytes_total",        # only when a non-CPU device copied data
    "gpubridge_grain_deactivations_total",   # only after idle collection or a deactivation
}

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
                   "and", "or", "unless", "inf", "nan", "atan2"}


class CheckError(Exception):
    """A problem with the inputs themselves (unreadable file, unparsable rule file)."""


# ---------------------------------------------------------------- PromQL

def metric_names(expr):
    """Returns the set of metric names a PromQL expression selects (Grafana variables allowed)."""
    names = set()
    for m in re.finditer(r'__name__\s*(=~|=)\s*"([^"]*)"', expr):
        for alt in (m.group(2).split("|") if m.group(1) == "=~" else [m.group(2)]):
            if not re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", alt):
                raise CheckError(f"__name__ matcher {m.group(2)!r} is not a plain list of names in: {expr}")
            names.add(alt)
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\$\{[^}]*\}|\$\w+", " ", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?\w+", " ", s)
    token = re.compile(r"(?P<num>[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)|(?P<id>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?")
    for m in token.finditer(s):
        ident = m.group("id")
        if not ident or m.group("call") or ident.lower() in PROMQL_KEYWORDS:
            continue
        names.add(ident)
    return names


def variable_query_names(query):
    """Metric names used by a Grafana Prometheus variable query (label_values, query_result, metrics)."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query, re.S)
    if m:
        return metric_names(m.group(1))
    if re.fullmatch(r"\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query):
        return set()
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    if m:
        return metric_names(m.group(1))
    raise CheckError(f"unsupported variable query: {query}")


# ---------------------------------------------------------------- rule files

def read_rules(path):
    """Reads `- record:`/`- alert:` entries and their `expr:` (one line or a `|`/`>` block)."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise CheckError(f"cannot read {path}: {e}")
    rules, current, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*-\s*(record|alert):\s*(\S+)\s*$", line)
        if m:
            current = {"kind": m.group(1), "name": m.group(2), "expr": None, "line": i + 1}
            rules.append(current)
        m = re.match(r"^(\s*)expr:\s*(.*?)\s*$", line)
        if m:
            if current is None or current["expr"] is not None:
                raise CheckError(f"{path}:{i + 1}: expr outside a rule")
            indent, value = len(m.group(1)), m.group(2)
            if value in ("|", ">", "|-", ">-"):
                block = []
                while i + 1 < len(lines) and (not lines[i + 1].strip() or
                                              len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                    i += 1
                    block.append(lines[i].strip())
                value = " ".join(x for x in block if x)
            current["expr"] = value
        i += 1
    for r in rules:
        if not r["expr"]:
            raise CheckError(f"{path}:{r['line']}: {r['kind']} {r['name']} has no expr")
    return rules


# ---------------------------------------------------------------- dashboards

def load_dashboards():
    boards = {}
    for name in sorted(os.listdir(DASHBOARD_DIR)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(DASHBOARD_DIR, name)
        try:
            with open(path, encoding="utf-8") as f:
                boards[name] = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckError(f"{path}: not valid JSON: {e}")
    return boards


def all_panels(board):
    for p in board.get("panels", []):
        yield p
        for nested in p.get("panels", []):  # collapsed rows hold their panels
            yield nested


def dashboard_exprs(board):
    """(where, expr) for every panel target and (where, query) for every query variable."""
    out = []
    for p in all_panels(board):
        for t in p.get("targets", []):
            if "expr" in t:
                out.append((f"panel '{p.get('title')}' target {t.get('refId')}", t["expr"]))
    return out


def variable_queries(board):
    out = []
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            out.append((f"variable '{v.get('name')}'", q.get("query") if isinstance(q, dict) else q))
    return out


def uses_prometheus_variable(ds):
    return isinstance(ds, dict) and ds.get("type") == "prometheus" and ds.get("uid") in ("${DS_PROMETHEUS}", "prometheus")


def check_dashboards():
    problems = []
    boards = load_dashboards()
    for expected in EXPECTED_PANELS:
        if expected not in boards:
            problems.append(f"dashboard {expected} is missing from {DASHBOARD_DIR}")
    uids = {}
    for name, board in boards.items():
        where = f"{name}:"
        for key in ("uid", "title", "panels", "templating", "schemaVersion"):
            if key not in board:
                problems.append(f"{where} no '{key}'")
        if not isinstance(board.get("schemaVersion"), int) or board.get("schemaVersion", 0) < 36:
            problems.append(f"{where} schemaVersion {board.get('schemaVersion')!r} is not an integer >= 36")
        if board.get("uid") in uids:
            problems.append(f"{where} uid {board['uid']!r} also used by {uids[board['uid']]}")
        uids[board.get("uid")] = name
        variables = {v.get("name"): v for v in board.get("templating", {}).get("list", [])}
        ds_var = variables.get("DS_PROMETHEUS")
        if not ds_var or ds_var.get("type") != "datasource" or ds_var.get("query") != "prometheus":
            problems.append(f"{where} no datasource variable DS_PROMETHEUS of plugin 'prometheus'")
        ids, titles = set(), set()
        for p in all_panels(board):
            title = p.get("title", "")
            pw = f"{where} panel '{title}'"
            if p.get("type") == "row":
                continue
            titles.add(title)
            if p.get("id") in ids:
                problems.append(f"{pw}: duplicate id {p.get('id')}")
            ids.add(p.get("id"))
            gp = p.get("gridPos", {})
            if not all(isinstance(gp.get(k), int) for k in ("x", "y", "w", "h")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                problems.append(f"{pw}: gridPos {gp} is not within the 24-column grid")
            if not uses_prometheus_variable(p.get("datasource")):
                problems.append(f"{pw}: datasource {p.get('datasource')} is not the Prometheus variable")
            targets = p.get("targets", [])
            if not targets:
                problems.append(f"{pw}: no targets")
            ref_ids = [t.get("refId") for t in targets]
            if len(set(ref_ids)) != len(ref_ids):
                problems.append(f"{pw}: duplicate refIds {ref_ids}")
            for t in targets:
                if not str(t.get("expr", "")).strip():
                    problems.append(f"{pw}: target {t.get('refId')} has no expr")
                if "datasource" in t and not uses_prometheus_variable(t["datasource"]):
                    problems.append(f"{pw}: target {t.get('refId')} datasource {t['datasource']} is not the Prometheus variable")
        for title in EXPECTED_PANELS.get(name, []):
            if title not in titles:
                problems.append(f"{where} expected panel '{title}' is missing")
    problems += promql_syntax_problems(boards)
    return problems


def substitute_grafana_variables(expr):
    expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m").replace("$__range", "1h")
    return re.sub(r"\$\{?(\w+)\}?", "x", expr)


def promql_syntax_problems(boards):
    """Has promtool parse every dashboard expression (as a recording rule in a temporary file)."""
    entries = []
    for name, board in boards.items():
        for where, expr in dashboard_exprs(board):
            entries.append((f"{name}: {where}", substitute_grafana_variables(expr)))
        for where, query in variable_queries(board):
            m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query or "", re.S)
            if m:
                entries.append((f"{name}: {where}", substitute_grafana_variables(m.group(1))))
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (where, expr) in enumerate(entries):
            path = os.path.join(tmp, "rules.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write("groups:\n  - name: dashboard\n    rules:\n")
                f.write(f"      - record: dashboard:expr{i}:check\n        expr: {json.dumps(expr)}\n")
            r = promtool(["check", "rules", path])
            if r.returncode != 0:
                problems.append(f"{where}: promtool rejects {expr!r}: {(r.stdout + r.stderr).strip()}")
    return problems


def promtool(args):
    try:
        return subprocess.run(["promtool"] + args, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise CheckError("promtool not found on PATH (Debian package 'prometheus'; run scripts/install-deps.sh)")


# ---------------------------------------------------------------- rule test coverage

def check_coverage():
    problems = []
    rules = [r for path in RULE_FILES for r in read_rules(path)]
    fires, silent, asserted = set(), set(), set()
    test_files = sorted(f for f in os.listdir(RULE_TEST_DIR) if f.endswith(".yml"))
    if not test_files:
        problems.append(f"no promtool test files in {RULE_TEST_DIR}")
    for f in test_files:
        lines = open(os.path.join(RULE_TEST_DIR, f), encoding="utf-8").read().splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^\s*alertname:\s*(\S+)\s*$", line)
            if m:
                following = next((l for l in lines[i + 1:] if re.match(r"^\s*exp_alerts:", l)), None)
                if following is None:
                    problems.append(f"{f}:{i + 1}: alertname {m.group(1)} without exp_alerts")
                elif re.match(r"^\s*exp_alerts:\s*\[\s*\]\s*$", following):
                    silent.add(m.group(1))
                else:
                    fires.add(m.group(1))
            m = re.match(r"^\s*-?\s*expr:\s*(.+?)\s*$", line)
            if m and "promql_expr_test" in "\n".join(lines[:i]):
                asserted |= metric_names(m.group(1))
    for r in rules:
        if r["kind"] == "alert":
            if r["name"] not in fires:
                problems.append(f"alert {r['name']}: no promtool test where it fires")
            if r["name"] not in silent:
                problems.append(f"alert {r['name']}: no promtool test where it stays silent")
        elif r["name"] not in asserted:
            problems.append(f"recording rule {r['name']}: no promql_expr_test asserts its value")
    return problems


# ---------------------------------------------------------------- metric names

def read_metrics_doc():
    """{family: (type, is_nvml)} from the table in docs/metrics.md."""
    try:
        text = open(METRICS_DOC, encoding="utf-8").read()
    except OSError as e:
        raise CheckError(f"cannot read {METRICS_DOC}: {e}")
    families = {}
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([A-Za-z_:][A-Za-z0-9_:]*)`\s*\|\s*(\w+)\s*\|(.*)\|(.*)\|\s*$", line)
        if m:
            families[m.group(1)] = (m.group(2), "NVML" in m.group(4))
    if not families:
        raise CheckError(f"{METRICS_DOC}: no metric table rows found")
    return families


def parse_exposition(text):
    """{family: type} from Prometheus text format; samples without a TYPE line count as untyped."""
    families, sample_names = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) != 4:
                raise CheckError(f"malformed TYPE line: {line!r}")
            families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)", line)
            if not m:
                raise CheckError(f"malformed sample line: {line!r}")
            sample_names.add(m.group(1))
    for name in sample_names:
        if name in families:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or families.get(base) not in ("histogram", "summary"):
            families.setdefault(name, "untyped")
    return families


def used_names():
    """{name: [where it is used]} over the dashboards' PromQL and the rule files."""
    uses = {}
    def note(names, where):
        for n in names:
            uses.setdefault(n, []).append(where)
    for name, board in load_dashboards().items():
        for where, expr in dashboard_exprs(board):
            note(metric_names(expr), f"{name} {where}")
        for where, query in variable_queries(board):
            note(variable_query_names(query), f"{name} {where}")
    for path in RULE_FILES:
        for r in read_rules(path):
            note(metric_names(r["expr"]), f"{os.path.basename(path)} {r['kind']} {r['name']}")
    return uses


def resolve_family(name, families):
    """The family `name` belongs to in `families` ({family: type}), or None."""
    if name in families:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and families.get(base) == "histogram":
            return base
        if name.endswith(suffix) and suffix != "_bucket" and families.get(base) == "summary":
            return base
    return None


def check_names(exported, documented, uses, recorded, allow_absent):
    """Problems with `uses` against `exported` ({family: type}). A used family absent from
    `exported` passes only when allow_absent(family, documented) says why."""
    problems, notes = [], []
    for name in sorted(uses):
        where = "; ".join(sorted(set(uses[name]))[:3])
        if ":" in name:
            if name not in recorded:
                problems.append(f"{name}: looks like a recording rule but recording.yml does not define it (used in {where})")
            continue
        if name in PROMETHEUS_SYNTHESIZED:
            continue
        if resolve_family(name, exported):
            continue
        doc_family = resolve_family(name, {f: t for f, (t, _) in documented.items()})
        reason = allow_absent(doc_family, documented) if doc_family else None
        if reason:
            notes.append(f"{name}: absent, allowed ({reason})")
        else:
            problems.append(f"{name}: not a family the silo exports (used in {where})")
    return problems, notes


def recorded_names():
    return {r["name"] for path in RULE_FILES for r in read_rules(path) if r["kind"] == "record"}


def live_absence_reason(required):
    def reason(family, documented):
        if family in required:
            return None
        if documented.get(family, (None, False))[1]:
            return "NVML family; NVML is not present"
        if family in EVENT_DRIVEN_FAMILIES:
            return "event-driven family, documented in docs/metrics.md"
        return None
    return reason


def check_names_docs():
    documented = read_metrics_doc()
    problems = [f"event-driven family {f} is not documented in docs/metrics.md"
                for f in sorted(EVENT_DRIVEN_FAMILIES) if f not in documented]
    p, _ = check_names({f: t for f, (t, _) in documented.items()}, documented, used_names(), recorded_names(),
                       lambda family, doc: None)
    return problems + [x.replace("not a family the silo exports", "not documented in docs/metrics.md") for x in p]


def check_names_live(exposition_path, required):
    try:
        text = open(exposition_path, encoding="utf-8").read()
    except OSError as e:
        raise CheckError(f"cannot read exposition {exposition_path}: {e}")
    exported = parse_exposition(text)
    if not any(f.startswith("gpubridge_") for f in exported):
        return [f"{exposition_path}: no gpubridge_ family in the scrape"]
    documented = read_metrics_doc()
    problems = [f"event-driven family {f} is not documented in docs/metrics.md"
                for f in sorted(EVENT_DRIVEN_FAMILIES) if f not in documented]
    problems += [f"{f}: required but absent from the scrape" for f in required if f not in exported]
    uses = used_names()
    p, notes = check_names(exported, documented, uses, recorded_names(), live_absence_reason(set(required)))
    for n in notes:
        print(f"note: {n}")
    checked = sum(1 for n in uses if ":" not in n)
    print(f"names-live: {checked} metric names used, {len(exported)} families exported, {len(notes)} allowed absent")
    return problems + p


# ---------------------------------------------------------------- self test

def selftest():
    problems = []
    def expect(got, want, what):
        if got != want:
            problems.append(f"{what}: got {sorted(got) if isinstance(got, set) else got}, want {sorted(want) if isinstance(want, set) else want}")
    expect(metric_names('histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))'),
           {"a_bucket"}, "quantile")
    expect(metric_names("sum(rate(a_total[5m] offset 1h)) / ignoring(x) group_left b:c:rate5m > 1e3 and on (i) up == bool 0"),
           {"a_total", "b:c:rate5m", "up"}, "binary ops")
    expect(metric_names('sum without (status) (rate({__name__=~"a_total|b_total"}[5m])) or vector(0)'),
           {"a_total", "b_total"}, "__name__ regex")
    expect(metric_names("max_over_time(gauge_x[10m:1m]) * -2.5"), {"gauge_x"}, "subquery")
    expect(variable_query_names('label_values(build_info{job=~"$job"}, instance)'), {"build_info"}, "label_values")
    exposition = ("# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
                  "h_sum 0.5\nh_count 1\n# TYPE c_total counter\nc_total{k=\"v\"} 3\nloose 1\n")
    fams = parse_exposition(exposition)
    expect(fams, {"h": "histogram", "c_total": "counter", "loose": "untyped"}, "exposition")
    documented = {"h": ("histogram", False), "c_total": ("counter", False), "g": ("gauge", True),
                  "ev_total": ("counter", False), "missing": ("gauge", False)}
    uses = {n: ["test"] for n in ("h_bucket", "h_sum", "c_total", "g", "up", "x:y:z", "missing", "c_total_count", "nope")}
    p, notes = check_names(fams, documented, uses, {"x:y:z"},
                           lambda f, d: "nvml" if d.get(f, (None, False))[1] else None)
    expect({x.split(":")[0] for x in p}, {"missing", "c_total_count", "nope"}, "missing families are reported")
    expect(len(notes), 1, "NVML absence is allowed")
    p, _ = check_names(fams, documented, {"a:b:c": ["t"]}, set(), lambda f, d: None)
    expect(len(p), 1, "undefined recording rule is reported")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: g\n    rules:\n      - record: a:b:c\n        expr: |\n          sum(x_total)\n"
                "            / sum(y_total)\n      - alert: A\n        expr: a:b:c > 1\n        for: 1m\n")
    try:
        rules = read_rules(f.name)
    finally:
        os.unlink(f.name)
    expect([(r["name"], r["expr"]) for r in rules], [("a:b:c", "sum(x_total) / sum(y_total)"), ("A", "a:b:c > 1")],
           "rule reader")
    return problems


def main(argv):
    commands = {"dashboards": check_dashboards, "coverage": check_coverage, "names-docs": check_names_docs,
                "selftest": selftest}
    if len(argv) == 2 and argv[1] in commands:
        run = commands[argv[1]]
    elif len(argv) >= 3 and argv[1] == "names-live":
        run = lambda: check_names_live(argv[2], argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        problems = run()
    except CheckError as e:
        print(f"{argv[1]}: error: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"{argv[1]}: FAIL: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"{argv[1]}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
