"""Markdown table from a pytest-benchmark JSON file (``--benchmark-json``).

Usage::

    python benchmarks/report.py results.json [more.json ...]

One row per baseline of each group: the medians of ``ours`` and of the
baseline, the ratio baseline/ours (> 1: ours is faster) and the throughput in
GB/s (10⁹ bytes per second) of entries that record ``extra_info['bytes']``.
Groups without an ``ours`` entry are listed one row per entry.
"""

from __future__ import annotations

import json
import sys


def _impl(bench: dict) -> str:
    params = bench.get("params") or {}
    if "impl" in params:
        return str(params["impl"])
    name = bench.get("name", "")
    return name[name.find("[") + 1 : name.rfind("]")] if "[" in name else name


def _seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


def _gbps(bench: dict) -> str:
    nbytes = (bench.get("extra_info") or {}).get("bytes")
    return f"{nbytes / bench['stats']['median'] / 1e9:.2f}" if nbytes else ""


def _size(bench: dict) -> str:
    info = bench.get("extra_info") or {}
    if "size" in info:
        return str(info["size"])
    return f"{info['bytes'] / 1e9:.2f} GB" if "bytes" in info else ""


def table(benchmarks: list[dict]) -> str:
    groups: dict[str, dict[str, dict]] = {}
    for bench in benchmarks:
        groups.setdefault(bench.get("group") or "", {})[_impl(bench)] = bench
    lines = [
        "| group | size | ours median | ours GB/s | baseline | baseline median "
        "| baseline GB/s | baseline/ours |",
        "|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for group in sorted(groups):
        entries = groups[group]
        ours = entries.get("ours")
        for impl, bench in sorted(entries.items()):
            if impl == "ours":
                continue
            median = bench["stats"]["median"]
            if ours is None:
                cells = [group, _size(bench), "", "", impl, _seconds(median), _gbps(bench), ""]
            else:
                ref = ours["stats"]["median"]
                cells = [
                    group,
                    _size(ours),
                    _seconds(ref),
                    _gbps(ours),
                    impl,
                    _seconds(median),
                    _gbps(bench),
                    f"{median / ref:.2f}×",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        if ours is not None and len(entries) == 1:
            row = [group, _size(ours), _seconds(ours["stats"]["median"]), _gbps(ours)]
            lines.append("| " + " | ".join([*row, "", "", "", ""]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    benchmarks: list[dict] = []
    for path in argv:
        with open(path, encoding="utf-8") as f:
            benchmarks.extend(json.load(f)["benchmarks"])
    print(table(benchmarks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
