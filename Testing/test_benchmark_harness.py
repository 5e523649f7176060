"""The benchmark harness (benchmarks/harness.py): tables, result files, machine and version records."""
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import harness as H  # noqa: E402


def test_table_renders_markdown_with_alignment():
    text = H.table(["Method", "Dice", "Time (s)"], [["a", H.fmt(0.81234), H.fmt_time(12.34)],
                                                   ["b", H.fmt(float("nan")), H.fmt_time(0.0)]])
    assert text.splitlines() == ["| Method | Dice | Time (s) |", "|---|---:|---:|",
                                 "| a | 0.812 | 12.3 |", "| b | – | – |"]
    assert H.table(["Pair", "Goal"], [["x", "y"]], numeric=False).splitlines()[1] == "|---|---|"


def test_cell_formatters():
    assert H.fmt(None) == "–" and H.fmt(1.23456, 2) == "1.23" and H.fmt("skipped") == "skipped"
    assert H.fmt_time(3.14159) == "3.14" and H.fmt_time(None) == "–"
    assert H.fmt_ratio(0.0421) == "0.042" and H.fmt_ratio(1.5) == "1.50" and H.fmt_ratio(None) == "–"


def test_ratios_against_a_named_peer_and_summary_over_cases():
    results = {
        "case1": {"ours": {"status": "ok", "wall_s": 1.0, "dice": 0.8}, "peer": {"status": "ok", "wall_s": 4.0, "dice": 0.7},
                  "none": {"status": "ok", "wall_s": 0.0, "dice": float("nan")}},
        "case2": {"ours": {"status": "ok", "wall_s": 3.0, "dice": 0.6}, "peer": {"status": "failed", "error": "boom"}},
    }
    for entries in results.values():
        H.add_ratios(entries, "peer")
    assert results["case1"]["ours"]["ratio"] == 0.25 and results["case1"]["peer"]["ratio"] == 1.0
    assert results["case1"]["none"]["ratio"] is None  # not timed
    assert results["case2"]["ours"]["ratio"] is None  # the peer failed on that case
    summ = H.summarise(results, ["ours", "peer", "none"], ("dice", "wall_s", "ratio"), count_key="pairs")
    assert summ["ours"] == {"pairs": 2, "dice": pytest.approx(0.7), "wall_s": 2.0, "ratio": 0.25, "complete": True}
    assert summ["peer"]["pairs"] == 1 and summ["peer"]["complete"] is False
    assert summ["none"]["dice"] is None  # NaN left out of the mean, nothing left
    assert H.any_failed(results) and not H.any_failed({"c": {"m": {"status": "skipped"}}})


def test_guarded_separates_skips_from_failures():
    assert H.guarded(lambda: 3) == (3, None)
    _, skipped = H.guarded(lambda: (_ for _ in ()).throw(LookupError("no weights\nmore")), skip=lambda e: isinstance(e, LookupError))
    assert skipped == {"status": "skipped", "error": "no weights"}
    _, failed = H.guarded(lambda: 1 / 0)
    assert failed["status"] == "failed" and "division" in failed["error"]


def test_timing_helpers_return_seconds_and_result():
    calls = []
    seconds, result = H.wall(lambda x: x * 2, 21)
    assert result == 42 and 0.0 <= seconds < 1.0
    best, last = H.best_of(lambda: calls.append(1) or len(calls), repeat=3, warmup=2)
    assert len(calls) == 5 and last == 5 and 0.0 <= best < 1.0


def test_machine_info_and_versions_record_what_is_needed():
    m = H.machine_info(torch_threads=2, device="cpu")
    assert list(m)[:5] == ["cpu", "cpu_flags", "cores", "cores_usable", "memory_gib"]
    assert m["torch_threads"] == 2 and m["device"] == "cpu" and isinstance(m["cpu"], str) and m["cpu"]
    assert all(f.startswith(("avx2", "avx512", "amx")) for f in m["cpu_flags"])
    v = H.versions(extra=("not-a-real-distribution-xyz",))
    for key in ("python", "platform", "torch", "numpy", "SimpleITK", "antspyx", "itk-elastix", "sigpy", "bart", "git_commit"):
        assert key in v
    assert v["not-a-real-distribution-xyz"] is None and v["numpy"]  # a missing peer reads None, no error
    assert len(H.loadavg()) in (0, 3)


def test_choose_keeps_order_and_rejects_unknown_items():
    parser = H.base_parser("demo", "demo", ["a", "b", "c"])
    args = parser.parse_args(["--methods", "c, a", "--quick", "--output", "out", "--data", "d"])
    assert H.choose(parser, args.methods, ["a", "b", "c"]) == ["c", "a"]
    assert args.quick and args.output == "out" and args.data == "d" and args.threads == 2
    with pytest.raises(SystemExit):
        H.choose(parser, "a,z", ["a", "b", "c"])


def test_run_writes_markdown_and_strict_json_with_nan_as_null(tmp_path):
    run = H.Run("demo", quick=True, argv=["--quick"])
    doc = run.document(H.machine_info(torch_threads=1), results={"case": {"m": {"dice": float("nan"), "hd95_mm": math.inf,
                                                                               "wall_s": 1.5, "path": tmp_path}}})
    assert list(doc)[:10] == ["benchmark", "date", "quick", "command", "machine", "versions", "git_commit_at_end",
                              "loadavg_start", "loadavg_end", "total_s"]
    header = H.Run.header(doc, "Demo benchmark", threads_note=", peer threads 1", version_keys=("numpy", "python"))
    text = "\n".join(header + [H.table(["Method", "Dice"], [["m", H.fmt(doc["results"]["case"]["m"]["dice"])]])])
    md, js = run.write(tmp_path / "out", doc, text)
    assert md.name == f"demo-quick-{doc['date'][:10]}.md" and js.suffix == ".json"
    assert md.read_text().startswith(f"# Demo benchmark ({doc['date'][:10]}, quick)")
    assert "torch" in md.read_text() and ", peer threads 1." in md.read_text() and "| m | – |" in md.read_text()
    raw = js.read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    back = json.loads(raw)
    entry = back["results"]["case"]["m"]
    assert entry["dice"] is None and entry["hd95_mm"] is None and entry["wall_s"] == 1.5 and entry["path"] == str(tmp_path)
    assert back["benchmark"] == "demo" and back["quick"] is True and back["machine"]["torch_threads"] == 1


def test_a_missing_peer_is_skipped_not_failed():
    assert H.installed("numpy") and not H.installed("not-a-real-distribution-xyz")
    H.require("numpy")
    _, problem = H.guarded(lambda: H.require("not-a-real-distribution-xyz"))
    assert problem == {"status": "skipped", "error": "not-a-real-distribution-xyz is not installed (pip install '.[bench]')"}
