"""The figures of a bench run, and the budgets they are checked against.

Each figure is a name with metrics (rps, p50, p99 in ms, non2xx, tps, ms, seconds, mb),
one JSON line per figure in the results file. Subcommands:

    figures.py RESULTS wrk NAME REPORT        # parse a `wrk --latency` report
    figures.py RESULTS pgbench NAME REPORT    # parse a pgbench report (tps)
    figures.py RESULTS put NAME METRIC VALUE  # any other figure
    figures.py RESULTS startup NAME URL CMD…  # seconds from exec until URL answers 200
    figures.py RESULTS alternate URL ROUNDS NAME=BODY…  # POSTs taking turns, one at a time
    figures.py RESULTS check BUDGETS [--short] [--tasks]

`check` prints every budget with the ratio it measured and exits 1 naming each one that
fell short (or whose figures are missing). With `--tasks` it holds the task bench's
figures (those named `tasks_*`), without it every other one.
"""

import json
import os
import re
import http.client
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def load(results):
    figures = {}
    if os.path.exists(results):
        with open(results) as f:
            for line in f:
                item = json.loads(line)
                figures.setdefault(item.pop("name"), {}).update(item)
    return figures


def save(results, name, **metrics):
    with open(results, "a") as f:
        f.write(json.dumps({"name": name, **metrics}) + "\n")


def parse_wrk(text):
    def ms(label):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\b" % label, text, re.M)
        if not m:
            return None
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        sys.exit(f"bench: not a wrk report:\n{text}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": float(rps.group(1)),
        "p50": ms("50"),
        "p99": ms("99"),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


def show(name, m):
    parts = [f"{name:<32}"]
    if "rps" in m:
        parts.append(f"{m['rps']:>9.0f} req/s")
    if m.get("p50") is not None:
        parts.append(f"p50 {m['p50']:>7.2f} ms   p99 {m['p99']:>7.2f} ms")
    if "tps" in m:
        parts.append(f"{m['tps']:>9.0f} tx/s")
    for key, unit in (("ms", "ms"), ("seconds", "s"), ("mb", "MB")):
        if key in m:
            parts.append(f"{m[key]:>9.3f} {unit}")
    if m.get("non2xx"):
        parts.append(f"(non-2xx: {m['non2xx']})")
    if m.get("errors"):
        parts.append(f"(socket errors: {m['errors']})")
    print("   ".join(parts), flush=True)


def startup(url, cmd):
    """Seconds from exec until `url` answers 200; the process is then stopped."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                sys.exit(f"bench: {cmd[0]} exited before it was ready:\n"
                         + proc.stderr.read().decode(errors="replace"))
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() - started > 30:
                sys.exit(f"bench: {cmd[0]} was not ready at {url} within 30 s")
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def alternate(url, rounds, named_bodies):
    """Median and p99 latency (ms) of POSTing each body to `url`, one request at a time
    and taking turns, so a drift in the machine's speed moves every body alike."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    times = {name: [] for name, _ in named_bodies}
    for _ in range(rounds):
        for name, body in named_bodies:
            started = time.perf_counter()
            conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
            conn.getresponse().read()
            times[name].append((time.perf_counter() - started) * 1000)
    return {
        name: {"p50": statistics.median(t), "p99": sorted(t)[int(len(t) * 0.99)]}
        for name, t in times.items()
    }


BUDGET = re.compile(
    r"^(?P<fig>[\w.]+)\.(?P<metric>\w+)\s+(?P<op><=|>=)\s+"
    r"(?:(?P<factor>[\d.]+)\s*(?:x|×)\s*(?P<ref>[\w.]+)\.(?P<refmetric>\w+)|(?P<limit>[\d.]+))"
    r"(?:\s+short\s+(?P<short>[\d.]+))?\s*(?:#.*)?$"
)


def check(figures, budgets_path, short, tasks):
    failed = []
    with open(budgets_path) as f:
        lines = [(n, l.strip()) for n, l in enumerate(f, 1)]
    for n, line in lines:
        if not line or line.startswith("#"):
            continue
        m = BUDGET.match(line)
        if not m:
            sys.exit(f"bench: {budgets_path}:{n}: not a budget: {line}")
        fig, metric, op = m["fig"], m["metric"], m["op"]
        if fig.startswith("tasks_") != tasks:
            continue  # the other bench's figure
        bound = float(m["short"]) if short and m["short"] else float(m["factor"] or m["limit"])
        value = figures.get(fig, {}).get(metric)
        if m["ref"]:
            ref = figures.get(m["ref"], {}).get(m["refmetric"])
            what = f"{fig}.{metric} / {m['ref']}.{m['refmetric']}"
            ratio = None if value is None or not ref else value / ref
        else:
            what, ratio = f"{fig}.{metric}", value
        if ratio is None:
            print(f"MISSING {what}: no figure measured", flush=True)
            failed.append(what)
            continue
        ok = ratio <= bound if op == "<=" else ratio >= bound
        print(f"{'ok     ' if ok else 'SHORT  '} {what:<58} {ratio:>10.3f} {op} {bound:g}", flush=True)
        if not ok:
            failed.append(f"{what} = {ratio:.3f}, budget {op} {bound:g}")
    if failed:
        print("bench: over budget: " + "; ".join(failed), file=sys.stderr)
        sys.exit(1)
    print("bench: every figure within its budget")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    results, command, args = argv[1], argv[2], argv[3:]
    if command == "wrk":
        name, report = args
        metrics = parse_wrk(open(report).read())
    elif command == "pgbench":
        name, report = args
        text = open(report).read()
        tps = re.search(r"^tps = ([\d.]+)", text, re.M)
        if not tps:
            sys.exit(f"bench: not a pgbench report:\n{text}")
        metrics = {"tps": float(tps.group(1))}
    elif command == "put":
        name, metric, value = args
        metrics = {metric: float(value)}
    elif command == "startup":
        name, url, cmd = args[0], args[1], args[2:]
        metrics = {"seconds": startup(url, cmd)}
    elif command == "alternate":
        url, rounds = args[0], int(args[1])
        named = [arg.split("=", 1) for arg in args[2:]]
        for name, metrics in alternate(url, rounds, named).items():
            save(results, name, **metrics)
            show(name, metrics)
        return
    elif command == "check":
        check(load(results), args[0], "--short" in args[1:], "--tasks" in args[1:])
        return
    else:
        sys.exit(__doc__)
    save(results, name, **metrics)
    show(name, metrics)


if __name__ == "__main__":
    main(sys.argv)
