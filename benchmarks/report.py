"""Markdown tables from pytest-benchmark JSON files (``--benchmark-json``).

Usage::

    python benchmarks/report.py results.json [more.json ...]

Two tables, each naming both sides of every ratio:

* **sima_fast against its baselines** (every group with an ``ours`` entry):
  one row per baseline with the medians of ``ours`` (sima_fast) and of the
  baseline, the throughput in GB/s (10⁹ bytes per second) of entries that
  record ``extra_info['bytes']``, and the ratio ``baseline / ours`` (above 1:
  sima_fast is faster). Groups without an ``ours`` entry are listed one row
  per entry, without a ratio.
* **Dask scaling** (the ``dask-*`` groups of ``benchmarks/test_dask.py``,
  where every side is sima_fast): the sides are named ``Dask, 2 workers``,
  ``Dask, 1 worker``, ``single process, 1 thread`` and ``single process, 2
  threads``; one row per comparison ``A`` against ``B`` with the ratio
  ``B / A`` (above 1: A is faster). A is the two-worker run against each
  other side, then the single process on one thread against Dask on one
  worker (``B / A - 1`` is the task overhead).
"""

from __future__ import annotations

import json
import sys

#: The sides of the Dask groups, by implementation name (``ours`` in results written
#: before the two-worker run was called ``dask_2_workers``).
DASK_SIDES = {
    "dask_2_workers": "Dask, 2 workers",
    "ours": "Dask, 2 workers",
    "dask_1_worker": "Dask, 1 worker",
    "here_1_thread": "single process, 1 thread",
    "here": "single process, 2 threads",
}
#: Prefix of the Dask groups' names.
DASK_PREFIX = "dask-"


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


def _groups(benchmarks: list[dict]) -> dict[str, dict[str, dict]]:
    groups: dict[str, dict[str, dict]] = {}
    for bench in benchmarks:
        groups.setdefault(bench.get("group") or "", {})[_impl(bench)] = bench
    return groups


def baseline_table(groups: dict[str, dict[str, dict]]) -> str:
    """The table of sima_fast (``ours``) against its baselines, one row per baseline.

    Parameters
    ----------
    groups : dict
        Entries by group, then by implementation name (Dask groups excluded).

    Returns
    -------
    str
        A Markdown table.
    """
    lines = [
        "| group | size | ours (sima_fast) median | ours GB/s | baseline | baseline median "
        "| baseline GB/s | baseline / ours (above 1: ours faster) |",
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


def dask_table(groups: dict[str, dict[str, dict]]) -> str:
    """The table of the Dask groups: each side named, the ratio ``B / A`` per comparison.

    Parameters
    ----------
    groups : dict
        The ``dask-*`` entries by group, then by implementation name.

    Returns
    -------
    str
        A Markdown table.
    """
    lines = [
        "| group | size | A | A median | A GB/s | B | B median | B GB/s "
        "| B / A (above 1: A faster) |",
        "|---|---|---|---:|---:|---|---:|---:|---:|",
    ]
    for group in sorted(groups):
        sides = {DASK_SIDES.get(impl, impl): bench for impl, bench in groups[group].items()}
        pairs = [("Dask, 2 workers", b) for b in sorted(sides) if b != "Dask, 2 workers"]
        pairs.append(("single process, 1 thread", "Dask, 1 worker"))
        for a, b in pairs:
            if a not in sides or b not in sides:
                continue
            ta, tb = sides[a]["stats"]["median"], sides[b]["stats"]["median"]
            cells = [
                group,
                _size(sides[a]),
                a,
                _seconds(ta),
                _gbps(sides[a]),
                b,
                _seconds(tb),
                _gbps(sides[b]),
                f"{tb / ta:.2f}×",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(benchmarks: list[dict]) -> str:
    """Format pytest-benchmark entries as Markdown: baselines first, then Dask scaling.

    Parameters
    ----------
    benchmarks : list of dict
        The ``benchmarks`` entries of one or more pytest-benchmark JSON files.

    Returns
    -------
    str
        One table, or both separated by a blank line (a table is left out
        when no entry belongs to it).
    """
    groups = _groups(benchmarks)
    dask = {g: e for g, e in groups.items() if g.startswith(DASK_PREFIX)}
    others = {g: e for g, e in groups.items() if not g.startswith(DASK_PREFIX)}
    parts = []
    if others or not dask:
        parts.append(baseline_table(others))
    if dask:
        parts.append(dask_table(dask))
    return "\n\n".join(parts)


def main(argv: list[str]) -> int:
    """Print the tables of the JSON files named in ``argv``.

    Parameters
    ----------
    argv : list of str
        Paths of pytest-benchmark JSON files.

    Returns
    -------
    int
        The exit status (2 without arguments).
    """
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
