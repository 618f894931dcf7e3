#!/usr/bin/env python3
"""Print the PromQL expression of every panel of the ddpm Grafana dashboard, ready to send to Prometheus.

Dashboard variables are substituted: $run / ${run} by --run, $rank / ${rank} by --rank (both regexes, matched
with =~; default ".*"), and $__rate_interval / ${__rate_interval} (and $__interval, $__range) by --interval
(default 1m). Examples:

    python3 launch/monitoring/dashboard_queries.py            # one expression per line
    python3 launch/monitoring/dashboard_queries.py --run fashion_mnist --rank 0 --json
    python3 launch/monitoring/dashboard_queries.py --rules-file /tmp/dashboard_rules.yml && \\
        promtool check rules /tmp/dashboard_rules.yml         # syntax check of every expression

--json prints a JSON list of {"panel": <panel title>, "expr": <expression>}. --rules-file PATH also writes a
Prometheus rules file with every expression as a recording rule (JSON, which is valid YAML), for
`promtool check rules`. Standard library only.
"""

import argparse
import json
import os
import re
import sys

DEFAULT_DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana", "ddpm-dashboard.json")

# ${name}, ${name:format} or $name
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)")


def iter_panels(panels):
    """Yields every panel, descending into rows (collapsed rows keep their panels in "panels")."""
    for panel in panels or []:
        yield panel
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels"))


def dashboard_queries(dashboard):
    """[(panel title, raw expression)] for every non-hidden Prometheus target, in dashboard order."""
    queries = []
    for panel in iter_panels(dashboard.get("panels")):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not expr or target.get("hide"):
                continue
            queries.append((panel.get("title", ""), expr))
    return queries


def substitute(expr, values):
    """Replaces the dashboard variables in expr; raises KeyError naming any variable it does not know."""
    def replace(match):
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(name)
        return values[name]
    return _VARIABLE.sub(replace, expr)


def rules_document(queries):
    rules = [{"record": "ddpm_dashboard:query_%d" % i, "expr": q["expr"],
              "labels": {"panel": q["panel"]}} for i, q in enumerate(queries)]
    return {"groups": [{"name": "ddpm_dashboard_queries", "interval": "5s", "rules": rules}]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dashboard", default=DEFAULT_DASHBOARD, help="dashboard JSON (default: %(default)s)")
    parser.add_argument("--run", default=".*", help="value of $run, a regex (default: %(default)s)")
    parser.add_argument("--rank", default=".*", help="value of $rank, a regex (default: %(default)s)")
    parser.add_argument("--interval", default="1m",
                        help="value of $__rate_interval, $__interval and $__range (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help='print a JSON list of {"panel": ..., "expr": ...}')
    parser.add_argument("--rules-file", metavar="PATH",
                        help="also write a rules file with every expression as a recording rule")
    args = parser.parse_args(argv)

    with open(args.dashboard, encoding="utf-8") as f:
        dashboard = json.load(f)
    values = {"run": args.run, "rank": args.rank, "__rate_interval": args.interval,
              "__interval": args.interval, "__range": args.interval}

    queries = []
    for title, expr in dashboard_queries(dashboard):
        try:
            queries.append({"panel": title, "expr": substitute(expr, values)})
        except KeyError as e:
            print("dashboard_queries.py: panel %r uses unknown variable $%s: %s" % (title, e.args[0], expr),
                  file=sys.stderr)
            return 1
    if not queries:
        print("dashboard_queries.py: no queries in %s" % args.dashboard, file=sys.stderr)
        return 1

    if args.rules_file:
        with open(args.rules_file, "w", encoding="utf-8") as f:
            json.dump(rules_document(queries), f, indent=2, ensure_ascii=False)
            f.write("\n")

    if args.json:
        json.dump(queries, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for q in queries:
            print(q["expr"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
