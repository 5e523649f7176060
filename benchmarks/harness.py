"""One harness for every benchmark: machine, versions, arguments, timing, tables, result files.

A benchmark script imports it (``benchmarks/`` is the script's folder, so ``import harness``
works) and keeps only its task-specific parts: data, method runners, scoring, its tables.

* :func:`base_parser` (``--output --quick --methods --data --threads``), :func:`choose` for
  comma-separated subsets, :func:`set_threads` (torch, ITK/ANTs/elastix, OpenMP, SimpleITK).
* :class:`Run`: one benchmark run. It records the start (date, load average, versions, git
  commit) when created, :meth:`Run.document` assembles the results document (standard keys first,
  then the task's own), :meth:`Run.header` renders its Markdown header and :meth:`Run.write` writes
  ``<name>-<date>.md`` and ``<name>-<date>.json`` (``<name>-quick-<date>`` with ``--quick``) into
  the output folder. JSON is strict: NaN and infinities become ``null``.
* :func:`machine_info`, :func:`versions` (peers that are not installed read ``None``; nothing
  fails without them), :func:`loadavg`; :func:`require` in a peer's runner turns a missing peer
  into a skipped method, :func:`installed` tells whether to warm it up.
* :func:`wall`, :func:`best_of` (seconds, ``time.perf_counter``), :func:`guarded` (one failing
  method must not lose the others' results), :func:`add_ratios` / :func:`fmt_ratio` (time
  relative to a named peer), :func:`summarise` (mean over cases), :func:`table` and the ``fmt*``
  cell formatters (``–`` for a missing value).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENGINE = REPO / "TTTMedical"
if str(ENGINE) not in sys.path:
    sys.path.insert(0, str(ENGINE))  # run from a checkout without installing; nothing is imported yet

#: Distributions every benchmark records.
CORE_DISTS = ("tttmedical", "torch", "numpy", "scipy", "SimpleITK")
#: Peers recorded when installed (``None`` otherwise): registration, reconstruction.
PEER_DISTS = ("antspyx", "itk", "itk-elastix", "sigpy")
#: CPU flag prefixes worth reporting (vector width and matrix units decide torch's speed).
FLAG_PREFIXES = ("avx2", "avx512", "amx")


# ====================================================================== machine and versions
def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The CPU's AVX2 / AVX-512 / AMX flags, sorted (empty where ``/proc/cpuinfo`` is missing)."""
    flags = (_cpuinfo_field("flags") or "").split()
    return sorted({f for f in flags if f.startswith(FLAG_PREFIXES)})


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def loadavg() -> list[float]:
    """1, 5 and 15-minute load averages (empty where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return []


def cores_usable() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info(**extra) -> dict:
    """``cpu``, ``cpu_flags``, ``cores``, ``cores_usable``, ``memory_gib`` (GiB), then ``extra``
    (thread counts, device...) in the order given."""
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "cores_usable": cores_usable(),
            "memory_gib": memory_gib(), **extra}


def _bart_version() -> str | None:
    exe = shutil.which("bart")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def git_state(repo: Path = REPO) -> dict:
    """``git_commit`` (short hash, ``+dirty`` when tracked files changed; None outside git) and
    ``git_modified`` (those files)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True,
                               text=True, timeout=10).stdout.rstrip("\n")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None}
    return {"git_commit": commit + ("+dirty" if dirty else "") if commit else None,
            "git_modified": [line[3:] for line in dirty.splitlines()]}


def versions(extra=(), repo: Path = REPO) -> dict:
    """Python, platform, the core distributions, the peers, ``extra`` distributions, Debian's
    ``bart`` when on ``PATH``, and the git state. Absent ones read ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for dist in dict.fromkeys(CORE_DISTS + PEER_DISTS + tuple(extra)):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    out["bart"] = _bart_version()
    out.update(git_state(repo))
    return out


class Unavailable(RuntimeError):
    """A peer is not installed here: its method is reported as skipped, not failed."""


def installed(dist: str) -> bool:
    """Whether the distribution ``dist`` (e.g. ``"antspyx"``) is installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def require(dist: str, extra: str = "bench") -> None:
    """Raise :class:`Unavailable` unless ``dist`` is installed (the message names the extra to install)."""
    if not installed(dist):
        raise Unavailable(f"{dist} is not installed (pip install '.[{extra}]')")


def set_threads(n: int) -> None:
    """Use ``n`` threads in torch, ITK (ANTs, elastix), OpenMP peers and SimpleITK.

    Call it before ITK is first imported: ITK reads ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` once
    (itk-elastix crashes when given ``number_of_threads`` itself).
    """
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(n)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)


# ====================================================================== arguments
def base_parser(name: str, description: str, methods, quick_help: str = "smaller data and fewer iterations",
                data_help: str | None = None, methods_note: str = "") -> argparse.ArgumentParser:
    """The options every benchmark has: ``--output``, ``--quick``, ``--methods``, ``--data``, ``--threads``.

    ``methods`` lists the method keys (all of them are the default for ``--methods``); ``methods_note``
    is appended to its help. Read the chosen subset with :func:`choose`.
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default=None, help=data_help or "cache folder for the benchmark's data")
    p.add_argument("--output", default="bench-output",
                   help=f"folder for {name}-<date>.md, {name}-<date>.json and runs/ (default bench-output)")
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--methods", default=",".join(methods), help=f"comma-separated subset of: {', '.join(methods)}{methods_note}")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and the peers (default 2)")
    return p


def choose(parser: argparse.ArgumentParser, text: str, choices, what: str = "method") -> list[str]:
    """The comma-separated items of ``text``, in the order given; an unknown one ends with the usage error."""
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in choices]
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    return items


# ====================================================================== timing
def wall(fn, *args, **kwargs):
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


def best_of(fn, repeat: int = 3, warmup: int = 1):
    """``(best seconds, last result)`` over ``repeat`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    best, result = math.inf, None
    for _ in range(max(1, repeat)):
        seconds, result = wall(fn)
        best = min(best, seconds)
    return best, result


def guarded(fn, skip=lambda exc: False):
    """``(result, None)``, or ``(None, {"status": "skipped" | "failed", "error": first line})``.

    :class:`Unavailable` (a peer not installed) and any exception for which ``skip(exc)`` is true
    mean "not available here" rather than a failure; a failure's traceback goes to stderr.
    """
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - one failing method must not lose the others' results
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, Unavailable) or skip(exc):
            return None, {"status": "skipped", "error": message}
        import traceback

        traceback.print_exc()
        return None, {"status": "failed", "error": message}


def add_ratios(entries: dict, reference: str, key: str = "wall_s", out: str = "ratio") -> None:
    """Set ``entry[out] = entry[key] / entries[reference][key]`` for every entry whose status is ok
    (``None`` when the reference did not run or either value is not positive)."""
    ref = entries.get(reference, {})
    for entry in entries.values():
        if entry.get("status") == "ok":
            ok = ref.get("status") == "ok" and (ref.get(key) or 0) > 0 and (entry.get(key) or 0) > 0
            entry[out] = entry[key] / ref[key] if ok else None


def finite_mean(values) -> float | None:
    """Mean of the finite numbers among ``values`` (None and NaN left out); None when there are none."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def summarise(results: dict, methods, metrics, count_key: str = "cases") -> dict:
    """Per method, the mean over cases of each metric, from ``results[case][method]`` entries whose
    status is ok; ``count_key`` holds how many cases it ran and ``complete`` whether it ran them all."""
    out = {}
    for key in methods:
        rows = [res[key] for res in results.values() if key in res and res[key].get("status") == "ok"]
        if not rows:
            continue
        entry = {count_key: len(rows)}
        for metric in metrics:
            entry[metric] = finite_mean(r.get(metric) for r in rows)
        entry["complete"] = len(rows) == len(results)
        out[key] = entry
    return out


def any_failed(results: dict) -> bool:
    """Whether any ``results[case][method]`` entry failed (the exit status should then be 1)."""
    return any(r.get("status") == "failed" for res in results.values() for r in res.values())


# ====================================================================== tables
def fmt(value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; ``–`` for None or NaN; non-numbers as text."""
    if value is None:
        return "–"
    try:
        if math.isnan(value):
            return "–"
    except TypeError:
        return str(value)
    return f"{value:.{digits}f}"


def fmt_time(seconds) -> str:
    """Seconds with 2 decimals below 10 s, 1 above; ``–`` for None or 0 (not timed)."""
    if not seconds:
        return "–"
    return f"{seconds:.1f}" if seconds >= 10 else f"{seconds:.2f}"


def fmt_ratio(value) -> str:
    """A time ratio: 2 decimals, 3 below 0.1; ``–`` for None."""
    if value is None:
        return "–"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def table(header, rows, numeric: bool = True) -> str:
    """A Markdown table; every column but the first right-aligned when ``numeric``."""
    align = ["---"] + (["---:"] if numeric else ["---"]) * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def log(message: str) -> None:
    """A time-stamped progress line on stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ====================================================================== one run
class Run:
    """One benchmark run: what was true at its start, and its results files.

    Create it once the code under test is on ``sys.path`` and before the work: it records the date,
    the load average and the versions (with the git commit whose code is about to be imported).
    """

    def __init__(self, name: str, quick: bool = False, argv=None, extra_dists=()):
        self.name = name
        self.quick = quick
        self.t0 = time.perf_counter()
        self.started = _dt.datetime.now().astimezone()
        self.loadavg_start = loadavg()
        self.versions = versions(extra_dists)
        args = list(argv) if argv is not None else sys.argv[1:]
        self.command = " ".join([Path(sys.argv[0]).name] + args)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def document(self, machine: dict, **fields) -> dict:
        """The results document: ``benchmark, date, quick, command, machine, versions,
        git_commit_at_end, loadavg_start, loadavg_end, total_s``, then ``fields`` in order."""
        return {"benchmark": self.name, "date": self.started.isoformat(timespec="seconds"), "quick": self.quick,
                "command": self.command, "machine": machine, "versions": self.versions,
                "git_commit_at_end": git_state().get("git_commit"), "loadavg_start": self.loadavg_start,
                "loadavg_end": loadavg(), "total_s": self.elapsed(), **fields}

    @staticmethod
    def header(doc: dict, title: str, threads_note: str = "", time_note: str = "", version_keys=None) -> list[str]:
        """Markdown lines: title (date, quick), machine and load, a warning when the repository
        changed during the run, versions (``version_keys``, those present)."""
        m, v = doc["machine"], doc["versions"]
        lines = [f"# {title} ({doc['date'][:10]}{', quick' if doc['quick'] else ''})", ""]
        torch_part = f"; torch {v.get('torch')} with {m['torch_threads']} threads" if "torch_threads" in m else ""
        lines += [f"Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['memory_gib']} GiB"
                  f"{torch_part}{threads_note}. Load average (1/5/15 min) at start {doc['loadavg_start']}, at end "
                  f"{doc['loadavg_end']}. Total run time {doc['total_s'] / 60:.1f} min{time_note}.", ""]
        if doc.get("git_commit_at_end") != v.get("git_commit"):
            lines += [f"**The repository changed during the run** ({v.get('git_commit')} at start, "
                      f"{doc.get('git_commit_at_end')} at the end); the engine code was imported at the start.", ""]
        keys = version_keys or ("tttmedical", "git_commit") + CORE_DISTS[1:] + PEER_DISTS + ("bart", "python")
        lines += ["Versions: " + ", ".join(f"{k} {v[k]}" for k in keys if v.get(k)), ""]
        return lines

    def stem(self) -> str:
        return f"{self.name}{'-quick' if self.quick else ''}-{self.started.date().isoformat()}"

    def write(self, output, doc: dict, markdown: str) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` (strict JSON through the engine's ``to_jsonable``)
        into ``output``; returns both paths."""
        from tttmedical.core.report import to_jsonable

        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        md, js = output / f"{self.stem()}.md", output / f"{self.stem()}.json"
        md.write_text(markdown)
        js.write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False) + "\n")
        return md, js
