"""`pareco-fx inspect`: tables, the JSON schema and the cost shares, on a model file and torchvision."""
from __future__ import annotations

import json

import pytest

import pareco_fx
from pareco_fx import modelfile

GROUP_KEYS = {"id", "channels", "slimmable", "reason", "members"}
SUMMARY_KEYS = {"groups", "slimmable_groups", "frozen_groups", "channels", "slimmable_share"}


def expected_json(spec: str, shape: str | None = None) -> dict:
    loaded = modelfile.load(spec, shape)
    report = pareco_fx.analyze(loaded.model, loaded.example_inputs)
    return {"model": loaded.name, "groups": report.to_json()["groups"], "summary": report.summary}


def test_json_schema_and_content(run_cli, model_file) -> None:
    path = model_file()
    result = run_cli("inspect", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"model", "groups", "summary"}
    assert all(set(g) == GROUP_KEYS for g in out["groups"])
    assert set(out["summary"]) == SUMMARY_KEYS
    assert out == json.loads(json.dumps(expected_json(str(path))))
    # the CNN's two hidden widths slim; the classifier output is frozen with a reason
    by_channels = {g["channels"]: g for g in out["groups"]}
    assert by_channels[8]["slimmable"] and by_channels[16]["slimmable"]
    assert not by_channels[10]["slimmable"] and by_channels[10]["reason"]
    assert out["summary"]["frozen_groups"] == sum(not g["slimmable"] for g in out["groups"])


def test_table_lists_every_group_and_the_summary(run_cli, model_file) -> None:
    path = model_file()
    result = run_cli("inspect", str(path))
    assert result.exit_code == 0, result.stderr
    loaded = modelfile.load(str(path))
    report = pareco_fx.analyze(loaded.model, loaded.example_inputs)
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in result.stdout.splitlines()
            if line.startswith("│")]
    assert [r[0] for r in rows] == [str(g.id) for g in report.groups]
    for g, row in zip(report.groups, rows):
        assert row[1] == str(g.channels) if g.quantum == 1 else row[1].startswith(str(g.channels))
        assert row[2] == ("slimmable" if g.slimmable else g.reason)
    assert report.summary_line() in result.stdout


def test_cost_shares_match_the_cost_models(run_cli, model_file) -> None:
    path = model_file()
    result = run_cli("inspect", str(path), "--json", "--cost", "flops,memory,params", "--min-width", "0.5")
    assert result.exit_code == 0, result.stderr
    costs = json.loads(result.stdout)["costs"]
    assert set(costs) == {"flops", "memory", "params"}
    loaded = modelfile.load(str(path))
    slim = pareco_fx.make_slimmable(loaded.model, loaded.example_inputs, min_width=0.5)
    G = len(slim.groups)
    for name, c in costs.items():
        assert c["full"] == pytest.approx(slim.cost(name, 1.0))
        assert c["smallest"] == pytest.approx(slim.cost(name, 0.5))
        assert len(c["group_share"]) == G
        for g in slim.groups:
            w = [1.0] * G
            w[g.id] = 0.5
            expect = (c["full"] - slim.cost(name, w)) / c["full"] if g.slimmable else 0.0
            assert c["group_share"][g.id] == pytest.approx(expect, abs=1e-12)
    # params by hand: conv1 3->8 (224), conv2 8->16 (1168), fc 16->10 (170): 1562 in all.
    # conv1 at 4 channels saves 112 of its own + 576 of conv2's inputs; conv2 at 8 saves 584 + 80 of fc.
    share = costs["params"]["group_share"]
    by_channels = {g.channels: g.id for g in slim.groups}
    assert costs["params"]["full"] == 1562
    assert share[by_channels[8]] == pytest.approx(688 / 1562)
    assert share[by_channels[16]] == pytest.approx(664 / 1562)
    assert "peak_node" in costs["memory"] and "peak_node" not in costs["params"]


def test_cost_table_has_a_share_column_and_totals(run_cli, model_file) -> None:
    result = run_cli("inspect", str(model_file()), "--cost", "params", "--min-width", "0.5")
    assert result.exit_code == 0, result.stderr
    assert "params %" in result.stdout
    assert "params: 1.56 K params at full width" in result.stdout
    assert "44.0%" in result.stdout  # 688 / 1562


def test_torchvision_resnet18(run_cli) -> None:
    result = run_cli("inspect", "torchvision:resnet18", "--input-shape", "1,3,32,32", "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["model"] == "resnet18"
    assert out == json.loads(json.dumps(expected_json("torchvision:resnet18", "1,3,32,32")))
    # only the classifier's 1000 outputs stay fixed
    frozen = [g for g in out["groups"] if not g["slimmable"]]
    assert [g["channels"] for g in frozen] == [1000] and frozen[0]["reason"]
    assert all(set(g) == GROUP_KEYS for g in out["groups"])
