"""The aggregation of ``benchmarks/quality_report.py`` on hand-made results: budgets chosen on
validation accuracy, mean/std over seeds, the two-standard-deviation tie rule, hypervolume with
reference point (1, 1), and the README section it regenerates."""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from torchrun_cmd import torchrun_two

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "quality_report.py"
_SPEC = importlib.util.spec_from_file_location("quality_report", _PATH)
qr = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
sys.modules.setdefault("quality_report", qr)  # dataclasses look their module up there
_SPEC.loader.exec_module(qr)  # type: ignore[union-attr]


def point(cost: float, val: float, test: float) -> dict[str, Any]:
    return {"cost_ratio": cost, "val_acc": val, "test_acc": test, "widths": [1.0]}


def run(method: str, seed: int, front: list[dict[str, Any]], epochs: int = 3, size: int = 100) -> dict[str, Any]:
    return {"model": "m", "cost": "flops", "method": method, "seed": seed, "epochs": epochs,
            "train_size": size, "wall_s": 10.0 + seed, "front": front}


FRONT = [point(0.2, 0.70, 0.71), point(0.3, 0.80, 0.78), point(0.35, 0.79, 0.90), point(0.6, 0.85, 0.84),
         point(1.0, 0.90, 0.91)]


def test_budget_picks_best_validation_point_and_reports_its_test_accuracy() -> None:
    # At 0.35 the point at 0.35 has the higher test accuracy but the lower validation accuracy.
    assert qr.best_under_budget(FRONT, 0.35) == 0.78
    assert qr.best_under_budget(FRONT, 0.25) == 0.71
    assert qr.best_under_budget(FRONT, 0.5) == 0.78
    assert qr.best_under_budget(FRONT, 0.75) == 0.84
    assert qr.best_under_budget(FRONT, 1.0) == 0.91
    assert qr.best_under_budget(FRONT, 0.1) is None


def test_budget_counts_a_point_exactly_at_the_budget_and_breaks_ties_towards_cheaper() -> None:
    front = [point(0.5000000000001, 0.8, 0.8), point(0.3, 0.9, 0.6), point(0.4, 0.9, 0.7)]
    assert qr.best_under_budget(front, 0.5) == 0.6


def test_hypervolume_by_hand() -> None:
    # Errors 0.29, 0.22, 0.10, 0.16 (dominated by 0.10 at 0.35), 0.09; staircase up to (1, 1).
    expected = (0.1 * 0.71 + 0.05 * 0.78 + 0.25 * 0.90 + 0.4 * 0.90 + 0.0 * 0.91)
    assert qr.hypervolume(FRONT) == pytest.approx(expected, abs=1e-12)
    assert qr.hypervolume([point(0.5, 0.5, 0.5)]) == pytest.approx(0.25)
    assert qr.hypervolume([]) == 0.0
    # Points at or beyond the reference add nothing.
    assert qr.hypervolume([point(1.0, 1.0, 1.0), point(0.5, 0.0, 0.0)]) == 0.0


def test_hypervolume_ignores_point_order_and_dominated_points() -> None:
    a = [point(0.5, 0.0, 0.8), point(0.2, 0.0, 0.6)]
    b = [*reversed(a), point(0.6, 0.0, 0.7)]
    assert qr.hypervolume(a) == pytest.approx(qr.hypervolume(b)) == pytest.approx(0.3 * 0.6 + 0.5 * 0.8)


def test_summarise_is_mean_and_sample_std() -> None:
    s = qr.summarise([0.8, None, 0.9, 0.7])
    assert s.n == 3
    assert s.mean == pytest.approx(0.8)
    assert s.std == pytest.approx(0.1)
    assert qr.summarise([0.5]) == qr.Summary(0.5, None, 1)
    assert qr.summarise([None]) == qr.Summary(None, None, 0)


def test_tie_rule_uses_two_of_the_larger_standard_deviation() -> None:
    S = qr.Summary
    assert qr.compare(S(0.80, 0.01, 3), S(0.785, 0.005, 3)) == "tie"  # 0.015 < 2 * 0.01
    assert qr.compare(S(0.80, 0.01, 3), S(0.7801, 0.005, 3)) == "tie"
    assert qr.compare(S(0.80, 0.005, 3), S(0.78, 0.009, 3)) == "win"
    assert qr.compare(S(0.70, 0.005, 3), S(0.78, 0.01, 3)) == "loss"
    assert qr.compare(S(0.80, None, 1), S(0.70, 0.01, 3)) == "n/a"
    assert qr.compare(S(None, None, 0), S(0.70, 0.01, 3)) == "n/a"


def test_tie_rule_boundary_is_exact() -> None:
    S = qr.Summary
    assert qr.compare(S(0.5, 0.25, 3), S(0.0, 0.0, 3)) == "win"  # 0.5 is not below 2 * 0.25
    assert qr.compare(S(0.5, 0.2500001, 3), S(0.0, 0.0, 3)) == "tie"


def test_aggregate_per_setting_with_verdicts() -> None:
    runs = [
        run("pareco", 0, [point(0.3, 0.8, 0.80), point(1.0, 0.9, 0.90)]),
        run("pareco", 1, [point(0.3, 0.8, 0.82), point(1.0, 0.9, 0.90)]),
        run("slim", 0, [point(0.3, 0.8, 0.70), point(1.0, 0.9, 0.89)]),
        run("slim", 1, [point(0.3, 0.8, 0.72), point(1.0, 0.9, 0.91)]),
        run("slim", 2, [point(0.3, 0.8, 0.71), point(1.0, 0.9, 0.90)], epochs=9),  # another setting
    ]
    entries = qr.aggregate(runs)
    assert [(e["epochs"], sorted(e["methods"])) for e in entries] == [(3, ["pareco", "slim"]), (9, ["slim"])]
    main = entries[0]
    pareco, slim = main["methods"]["pareco"], main["methods"]["slim"]
    assert pareco["seeds"] == [0, 1]
    assert pareco["budgets"]["0.25"] == {"mean": None, "std": None, "n": 0}
    assert pareco["budgets"]["0.35"]["mean"] == pytest.approx(0.81)
    assert pareco["budgets"]["0.35"]["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert slim["budgets"]["0.5"]["mean"] == pytest.approx(0.71)
    assert pareco["budgets"]["1"]["mean"] == pytest.approx(0.90) and pareco["budgets"]["1"]["std"] == 0.0
    assert slim["wall_s"] == {"mean": 10.5, "std": pytest.approx(math.sqrt(0.5)), "n": 2}
    hv0 = 0.7 * 0.80
    hv1 = 0.7 * 0.82
    assert pareco["hypervolume"]["mean"] == pytest.approx((hv0 + hv1) / 2)
    verdicts = main["pareco_vs"]["slim"]
    assert verdicts["0.25"] == "n/a"
    assert verdicts["0.35"] == "win"  # 0.81 vs 0.71, stds 0.014
    assert verdicts["1"] == "tie"  # 0.90 vs 0.90
    assert "twostage" not in main["pareco_vs"]
    assert entries[1]["pareco_vs"] == {}


def widths_point(cost: float, val: float, test: float, widths: list[float]) -> dict[str, Any]:
    return {"cost_ratio": cost, "val_acc": val, "test_acc": test, "widths": widths}


def test_allocation_check_splits_uniform_points_and_compares_the_rest_with_slim_at_equal_cost() -> None:
    # Group 2 is frozen (1.0 everywhere); groups 0 and 1 are slimmed.
    slim = [run("slim", s, [widths_point(0.1, 0.70, 0.70, [0.2, 0.2, 1.0]),
                            widths_point(0.5, 0.80, 0.80, [0.7, 0.7, 1.0]),
                            widths_point(1.0, 0.90, 0.90, [1.0, 1.0, 1.0])]) for s in (0, 1)]
    pareco = [
        run("pareco", 0, [widths_point(0.1, 0.70, 0.70, [0.2, 0.2, 1.0]),     # uniform prior point
                          widths_point(0.6, 0.85, 0.83, [0.5, 1.0, 1.0]),     # vs slim's 0.5 point: +3
                          widths_point(1.0, 0.90, 0.90, [1.0, 1.0, 1.0])]),   # uniform (all ones)
        run("pareco", 1, [widths_point(0.3, 0.71, 0.69, [0.3, 0.6, 1.0]),     # vs slim's 0.1 point: -1
                          widths_point(0.05, 0.6, 0.6, [0.1, 0.2, 1.0])]),    # cheaper than all of slim: skipped
    ]
    check = qr.allocation_check(pareco, slim)
    assert check["uniform_share"] == pytest.approx(2 / 5)
    assert check["n"] == 2 and check["better"] == 1
    assert check["gain"]["mean"] == pytest.approx(0.01)
    assert check["gain"]["std"] == pytest.approx(math.sqrt(2) * 0.02)
    entry = qr.aggregate(pareco + slim)[0]
    assert entry["allocation"] == check
    line = qr._allocation_line(check)
    assert line == ("Allocation check: 40 % of PareCO's front points are uniform; its 2 non-uniform points "
                    "against the same seed's slim front at the same cost: +1.0 ± 2.8 points, better in 1 of 2.")


def test_weights_check_compares_both_methods_on_the_uniform_widths_they_share() -> None:
    def uniform(*points: tuple[float, float]) -> list[dict[str, Any]]:
        return [widths_point(w, 0.0, acc, [w, w, 1.0]) for w, acc in points]

    slim = [{**run("slim", 0, FRONT), "uniform": uniform((0.2, 0.70), (0.5, 0.80), (1.0, 0.90))},
            {**run("slim", 1, FRONT), "uniform": uniform((0.2, 0.72), (0.5, 0.82), (1.0, 0.92))},
            {**run("slim", 2, FRONT), "uniform": uniform((0.2, 0.5))}]   # no PareCO run of seed 2
    pareco = [{**run("pareco", 0, FRONT), "uniform": uniform((0.2, 0.69), (0.5, 0.78), (1.0, 0.90))},  # -1 point
              {**run("pareco", 1, FRONT), "uniform": uniform((0.2, 0.72), (0.5, 0.85), (0.7, 0.1))},   # +1.5 points
              run("pareco", 3, FRONT)]  # recorded no uniform widths: left out
    check = qr.weights_check(pareco, slim)
    assert check["gap"]["n"] == 2 and check["widths"] == [2, 3]  # seed 1 shares two of its widths
    assert check["gap"]["mean"] == pytest.approx(0.0025)
    assert check["gap"]["std"] == pytest.approx(math.sqrt(2) * 0.0125)
    assert ("Weights check: on the same 2–3 uniform widths, PareCO's weights score +0.25 ± 1.77 points "
            "against slim's (2 seeds run by both).") in qr.render_tables(qr.aggregate(pareco + slim))
    assert "Weights check" not in qr.render_tables(qr.aggregate([run("pareco", 0, FRONT), *slim]))


def test_wall_times_are_summarised_per_device() -> None:
    runs = [{**run("slim", 0, FRONT), "device": "cpu", "wall_s": 100.0},
            {**run("slim", 1, FRONT), "device": "gpu", "wall_s": 10.0},
            {**run("slim", 2, FRONT), "device": "gpu", "wall_s": 12.0}]
    slim = qr.aggregate(runs)[0]["methods"]["slim"]
    assert slim["wall_s_by_device"]["cpu"] == {"mean": 100.0, "std": None, "n": 1}
    assert slim["wall_s_by_device"]["gpu"]["mean"] == pytest.approx(11.0)
    assert "Wall time per run: cpu: slim 100 s; gpu: slim 11 ± 1 s." in qr.render_tables(qr.aggregate(runs))


def test_tables_and_readme_section() -> None:
    runs = [run(m, s, [point(0.3, 0.8, 0.80 + 0.01 * s), point(1.0, 0.9, 0.9)]) for m in qr.METHODS for s in (0, 1)]
    body = qr.render_tables(qr.aggregate(runs))
    lines = body.splitlines()
    assert lines[0] == "#### Cost: flops"
    assert "| budget | pareco | slim | twostage | PareCO vs slim | PareCO vs twostage |" in lines
    assert "| ≤ 0.35 | 80.5 ± 0.7 | 80.5 ± 0.7 | 80.5 ± 0.7 | tie | tie |" in lines
    assert "| ≤ 0.25 | — | — | — | n/a | n/a |" in lines
    readme = f"# x\n## Quality\n{qr.BEGIN}\nold\n{qr.END}\n## Layout\n"
    assert qr.update_readme(readme, "new\n") == f"# x\n## Quality\n{qr.BEGIN}\nnew\n{qr.END}\n## Layout\n"
    with pytest.raises(ValueError, match="markers"):
        qr.update_readme("# no markers\n", "new\n")


def test_merge_replaces_the_same_cell_and_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_PATH.parent))
    quality = importlib.import_module("quality")
    out = tmp_path / "quality.json"
    first, other = run("pareco", 0, FRONT), run("slim", 0, FRONT)
    quality.merge(out, first, {"note": "first"})
    quality.merge(out, other, {"note": "other"})
    again = {**first, "wall_s": 99.0}
    quality.merge(out, again, {"note": "again"})
    data = json.loads(out.read_text())
    assert [(r["method"], r["wall_s"]) for r in data["runs"]] == [("pareco", 99.0), ("slim", 10.0)]
    assert data["settings"]["m/flops/pareco/0/3/100"] == {"note": "again"}
    assert data["aggregate"] == qr.aggregate(data["runs"])


def test_cells_run_seed_by_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_PATH.parent))
    quality = importlib.import_module("quality")
    cells = quality.cell_order(["a", "b"], ["flops"], ["pareco", "slim"], [0, 1])
    assert cells == [("a", "flops", "pareco", 0), ("a", "flops", "slim", 0), ("b", "flops", "pareco", 0),
                     ("b", "flops", "slim", 0), ("a", "flops", "pareco", 1), ("a", "flops", "slim", 1),
                     ("b", "flops", "pareco", 1), ("b", "flops", "slim", 1)]


def test_a_variant_replaces_pareco_for_the_settings_it_covers() -> None:
    main = [run(m, s, FRONT) for m in qr.METHODS for s in (0, 1)] + [run("slim", 0, FRONT, epochs=9)]
    variant = [{**run("pareco", s, FRONT), "wall_s": 99.0} for s in (0, 1)]
    runs = qr.with_variant(main, variant)
    assert sorted((r["method"], r["seed"], r["wall_s"]) for r in runs) == [
        ("pareco", 0, 99.0), ("pareco", 1, 99.0), ("slim", 0, 10.0), ("slim", 1, 11.0),
        ("twostage", 0, 10.0), ("twostage", 1, 11.0)]
    begin, end = qr.markers("box")
    readme = f"x\n{qr.BEGIN}\nmain\n{qr.END}\n{begin}\nold\n{end}\n"
    assert qr.update_readme(readme, "new\n", "box") == f"x\n{qr.BEGIN}\nmain\n{qr.END}\n{begin}\nnew\n{end}\n"


def test_a_kept_run_is_resumed_and_a_finished_one_only_rebuilds_its_front(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(_PATH.parent))
    quality = importlib.import_module("quality")
    out, kept = tmp_path / "q.json", tmp_path / "runs"
    argv = ["--model", "fashion_resnet", "--cost", "memory", "--method", "pareco", "--seed", "0", "--epochs", "1",
            "--train-size", "512", "--val-size", "128", "--test-size", "128", "--data", "embedded",
            "--width-vectors", "6", "--eval-points", "3", "--out", str(out), "--keep-runs", str(kept)]
    quality.main(argv)
    checkpoint = kept / "fashion_resnet-memory-pareco-seed0" / "checkpoint.pt"
    first, trained_at = json.loads(out.read_text()), checkpoint.stat().st_mtime_ns
    quality.main(argv)
    second = json.loads(out.read_text())
    assert checkpoint.stat().st_mtime_ns == trained_at  # nothing was trained again
    (run_1,), (run_2,) = first["runs"], second["runs"]
    assert run_2["front"] == run_1["front"]  # same weights, history and code: the same front
    assert run_2["uniform"] == run_1["uniform"] and len(run_1["uniform"]) == 3  # --eval-points
    for point in run_1["uniform"]:  # every slimmed group at one width: the frozen ones read 1.0
        assert len(set(point["widths"]) - {1.0}) <= 1 and 0.0 < point["cost_ratio"] <= 1.0 + 1e-9
    assert run_2["phases_s"]["train"] == run_1["phases_s"]["train"]  # the first call's training time
    ((_, settings_1),), ((_, settings_2),) = first["settings"].items(), second["settings"].items()
    assert "front_rebuilt_from" not in settings_1
    assert settings_1["machine"]["cores"] == os.cpu_count() and settings_1["machine"]["cpu"]
    assert settings_2["front_rebuilt_from"] == str(checkpoint.parent)


def _torchrun_quality(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_two(str(_PATH.parent / "quality.py"), *argv), env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)


def test_under_torchrun_a_cell_trains_on_both_processes_and_rank_0_alone_merges_it(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    proc = _torchrun_quality(
        "--model", "fashion_resnet", "--cost", "memory", "--method", "pareco,slim", "--seed", "0", "--epochs", "1",
        "--train-size", "512", "--val-size", "128", "--test-size", "128", "--data", "embedded",
        "--width-vectors", "6", "--eval-points", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [line for line in proc.stdout.splitlines() if line.startswith("fashion_resnet memory ")]
    assert [line.split()[2] for line in summaries] == ["pareco", "slim"]  # printed once, by rank 0
    data = json.loads(out.read_text())
    assert sorted(r["method"] for r in data["runs"]) == ["pareco", "slim"]  # one run per cell
    assert {s["ranks"] for s in data["settings"].values()} == {2}
    for run in data["runs"]:
        assert run["train_size"] == 510 and run["phases_s"]["train"] > 0
        costs = [p["cost_ratio"] for p in run["front"]]
        assert costs == sorted(costs) and 0.0 < costs[0] and costs[-1] <= 1.0 + 1e-9
        assert all(0.0 <= p["test_acc"] <= 1.0 for p in run["front"])


def test_under_torchrun_jobs_is_refused_with_the_reason() -> None:
    proc = _torchrun_quality("--model", "fashion_resnet", "--cost", "memory", "--method", "slim", "--seed", "0",
                             "--jobs", "2")
    assert proc.returncode != 0
    assert "leave --jobs at 1" in proc.stderr


def test_a_section_is_found_in_whichever_document_holds_its_markers(tmp_path: Path) -> None:
    readme, detail = tmp_path / "README.md", tmp_path / "benchmarks" / "QUALITY.md"
    detail.parent.mkdir()
    begin, end = qr.markers("fill")
    readme.write_text(f"{qr.BEGIN}\n{qr.END}\n")
    detail.write_text(f"{begin}\n{end}\n")
    assert qr.find_doc(None, (readme, detail)) == readme
    assert qr.find_doc("fill", (readme, detail)) == detail
    with pytest.raises(ValueError, match="quality-long:begin.*--doc"):
        qr.find_doc("long", (readme, detail))


def test_image_links_are_relative_to_the_document() -> None:
    png = qr.RESULTS / "quality_fill_fronts.png"
    assert qr.image_link(png, qr.ROOT / "README.md") == "benchmarks/results/quality_fill_fronts.png"
    assert qr.image_link(png, qr.ROOT / "benchmarks" / "QUALITY.md") == "results/quality_fill_fronts.png"


def test_a_section_without_markers_is_a_usage_error_before_any_plot(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        qr.main(["--section", "nosuch"])
    assert exit_info.value.code == 2
    assert "quality-nosuch:begin" in capsys.readouterr().err
    assert not (qr.RESULTS / "quality_nosuch_fronts.png").exists()


def test_several_files_read_as_one_the_first_holding_a_run_gives_it(tmp_path: Path) -> None:
    own = {"runs": [run("pareco", 0, FRONT), run("slim", 0, FRONT)],
           "settings": {"m/flops/pareco/0/3/100": {"width_mult": 0.75}, "m/flops/slim/0/3/100": {"width_mult": 0.75}}}
    fallback = {"runs": [{**run("slim", 0, FRONT), "wall_s": 99.0}, run("slim", 1, FRONT)]}  # no settings: 1.0
    paths = [tmp_path / "own.json", tmp_path / "fallback.json"]
    for path, data in zip(paths, (own, fallback)):
        path.write_text(json.dumps(data))
    runs = qr.load_runs(paths)
    assert sorted((r["method"], r["seed"], r["wall_s"], r["width_mult"]) for r in runs) == [
        ("pareco", 0, 10.0, 0.75), ("slim", 0, 10.0, 0.75), ("slim", 1, 11.0, 1.0)]
    assert qr.provenance(runs) == ["fallback.json: m flops slim seeds [1]", "own.json: m flops pareco seeds [0]",
                                   "own.json: m flops slim seeds [0]"]
    # Another base width is another network: its runs get a table of their own, named by the multiplier.
    entries = qr.aggregate(runs)
    assert [(e["width_mult"], sorted(e["methods"])) for e in entries] == [(0.75, ["pareco", "slim"]), (1.0, ["slim"])]
    body = qr.render_tables(entries)
    assert "**m** at base widths × 0.75, 3 epochs, 100 training images (seeds: pareco 1, slim 1)" in body
    assert "**m**, 3 epochs, 100 training images (seeds: slim 1)" in body
