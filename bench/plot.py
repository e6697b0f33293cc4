#!/usr/bin/env python3
"""Plots a bench/compare result: throughput and p99 latency against
connections, one line per server, one panel per (message size, users) of
the LMTP cases; and the IMAP cases as bars. Error bars are the min and max
over runs; points are medians.

    python3 bench/plot.py bench/results/<date>-compare.json [OUT_PREFIX]

writes OUT_PREFIX-lmtp-throughput.png, -lmtp-p99.png, -imap.png (a panel
per IMAP row, five to a line) and -mixed.png (whole IMAP sessions/s against
concurrent clients, a line per server)
(OUT_PREFIX defaults to the JSON's path without .json). Installs
matplotlib with pip (--user) if it is missing.
"""

import json
import re
import subprocess
import sys
from pathlib import Path


def matplotlib_pyplot():
    try:
        import matplotlib
    except ImportError:
        print("plot: installing matplotlib with pip", file=sys.stderr)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--user", "matplotlib"],
            check=False,
        )
        try:
            import matplotlib
        except ImportError:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet",
                 "--break-system-packages", "matplotlib"],
                check=True,
            )
            import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CASE = re.compile(r"^lmtp (\d+)KB, (\d+) conn, (\d+) users?$")
COLOURS = {"postern": "tab:blue", "postern-nocache": "tab:cyan", "dovecot": "tab:orange", "cyrus": "tab:green"}


def spread(summary, key):
    value = summary[key]
    return value["median"], value["median"] - value["min"], value["max"] - value["median"]


def lmtp_panels(summaries):
    """{(size_kb, users): {server: [(connections, summary)]}}"""
    panels = {}
    for summary in summaries:
        match = CASE.match(summary["name"])
        if summary.get("workload") != "lmtp" or not match:
            continue
        size_kb, connections, users = (int(group) for group in match.groups())
        panel = panels.setdefault((size_kb, users), {})
        panel.setdefault(summary["server"], []).append((connections, summary))
    return dict(sorted(panels.items()))


def plot_lmtp(plt, panels, key, ylabel, title, path, meta):
    if not panels:
        return None
    figure, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False
    )
    for axis, ((size_kb, users), servers) in zip(axes[0], panels.items()):
        for server, points in servers.items():
            points.sort(key=lambda point: point[0])
            xs = [connections for connections, _ in points]
            values = [spread(summary, key) for _, summary in points]
            axis.errorbar(
                xs,
                [median for median, _, _ in values],
                yerr=[[low for _, low, _ in values], [high for _, _, high in values]],
                marker="o",
                capsize=3,
                label=server,
                color=COLOURS.get(server),
            )
        axis.set_title(f"{size_kb} KB, {users} user{'s' if users != 1 else ''}")
        axis.set_xlabel("LMTP connections")
        axis.set_xscale("log", base=2)
        axis.set_xticks(sorted({x for points in servers.values() for x, _ in points}))
        axis.get_xaxis().set_major_formatter(plt.ScalarFormatter())
        axis.set_yscale("log")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend()
    figure.suptitle(f"{title} ({meta.get('date', '')}, commit {meta.get('git_commit', '')[:7]})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_imap(plt, summaries, path, meta):
    cases = {}
    for summary in summaries:
        if summary.get("workload", "").startswith("imap"):
            cases.setdefault(summary["name"], {})[summary["server"]] = summary
    if not cases:
        return None
    columns = min(len(cases), 5)
    rows = (len(cases) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4 * rows), squeeze=False)
    flat = [axis for row in axes for axis in row]
    for axis in flat[len(cases):]:
        axis.set_visible(False)
    for axis, (name, servers) in zip(flat, cases.items()):
        names = list(servers)
        values = [spread(servers[server], "latency_ms_p50") for server in names]
        axis.bar(
            names,
            [median for median, _, _ in values],
            yerr=[[low for _, low, _ in values], [high for _, _, high in values]],
            capsize=4,
            color=[COLOURS.get(server, "tab:gray") for server in names],
        )
        axis.set_title(name, fontsize=8)
        axis.set_ylabel("p50 latency per command, ms (lower is better)", fontsize=7)
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(f"IMAP ({meta.get('date', '')}, commit {meta.get('git_commit', '')[:7]})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_mixed(plt, summaries, path, meta):
    """Sessions per second against concurrent clients, a line per server."""
    lines = {}
    for summary in summaries:
        match = re.match(r"imap mixed, (\d+) clients: session$", summary.get("name", ""))
        if summary.get("workload") == "imap-mixed" and match:
            lines.setdefault(summary["server"], []).append((int(match.group(1)), summary))
    if not lines:
        return None
    figure, axis = plt.subplots(figsize=(6, 4))
    for server, points in lines.items():
        points.sort(key=lambda point: point[0])
        clients = [count for count, _ in points]
        values = [spread(summary, "throughput_per_second") for _, summary in points]
        axis.errorbar(
            clients,
            [median for median, _, _ in values],
            yerr=[[low for _, low, _ in values], [high for _, _, high in values]],
            marker="o",
            capsize=4,
            label=server,
            color=COLOURS.get(server, "tab:gray"),
        )
    axis.set_xscale("log")
    axis.set_xlabel("concurrent clients")
    axis.set_ylabel("whole sessions/s (median, min-max)")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.suptitle(
        f"IMAP mixed sessions ({meta.get('date', '')}, commit {meta.get('git_commit', '')[:7]})",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    source = Path(sys.argv[1])
    prefix = sys.argv[2] if len(sys.argv) == 3 else str(source.with_suffix(""))
    document = json.loads(source.read_text())
    summaries, meta = document["summaries"], document.get("meta", {})
    plt = matplotlib_pyplot()
    panels = lmtp_panels(summaries)
    written = [
        plot_lmtp(plt, panels, "throughput_per_second", "deliveries/s (median, min-max)",
                  "LMTP delivery throughput", f"{prefix}-lmtp-throughput.png", meta),
        plot_lmtp(plt, panels, "latency_ms_p99", "p99 latency, ms (median, min-max)",
                  "LMTP delivery p99 latency", f"{prefix}-lmtp-p99.png", meta),
        plot_imap(plt, summaries, f"{prefix}-imap.png", meta),
        plot_mixed(plt, summaries, f"{prefix}-mixed.png", meta),
    ]
    for path in written:
        if path:
            print(f"plot: wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
