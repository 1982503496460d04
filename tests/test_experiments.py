"""`make experiments QUICK=1`: the course's experiment table, every variant, the pitfall flagged."""
import json

from PIL import Image

from tests.conftest import run_module
from train.experiments import CHART_PNG, TABLE_JSON, TABLE_MD, VARIANTS


def test_quick_table_has_every_variant_and_flags_the_pitfall(synthetic_data, tmp_path):
    out = tmp_path / "experiments"
    run_module("train.experiments", "--quick", "--data-dir", str(synthetic_data), "--out", str(out),
               "--val-size", "100", "--batch-size", "32", "--jobs", "2")

    table = json.loads((out / TABLE_JSON).read_text())
    rows = {r["variant"]: r for r in table["rows"]}
    assert list(rows) == [v.name for v in VARIANTS]
    assert not [r for r in rows.values() if "error" in r]
    # One seed and one split for every variant.
    assert {r["config"]["seed"] for r in rows.values()} == {table["seed"]}
    assert {r["config"]["val_size"] for r in rows.values()} == {100}
    # Identical configs are trained once: "sgd" is the SGD baseline.
    assert rows["sgd"]["same_as"] == "baseline" and rows["sgd"]["test_acc"] == rows["baseline"]["test_acc"]
    assert rows["more-epochs"]["epochs_run"] == 2 * rows["baseline"]["epochs_run"]
    assert rows["lenet-deep"]["config"]["model"] == "lenet-deep"

    pitfall = rows["softmax-twice"]
    assert pitfall["pitfall"] and pitfall["config"]["softmax_in_model"] is True
    assert "PITFALL" in pitfall["note"]
    assert [name for name, r in rows.items() if r["pitfall"]] == ["softmax-twice"]
    # Softmax applied twice caps what the loss can reach: cross-entropy of softmax(p) is >= 1.46.
    assert pitfall["final_train_loss"] > 1.46

    md = (out / TABLE_MD).read_text()
    assert "| variant | what changed | val acc | test acc |" in md and "| params | wall time | images/s |" in md
    for v in VARIANTS:
        assert f"| {v.name} |" in md or f"| **{v.name}** ⚠ |" in md
    assert "PITFALL" in md.split("| **softmax-twice** ⚠ |")[1].splitlines()[0]
    with Image.open(out / CHART_PNG) as im:
        assert im.format == "PNG" and im.size[0] > 500
    for v in VARIANTS:  # each variant is an ordinary run, with its report
        owner = rows[v.name].get("same_as", v.name)
        assert (out / "runs" / owner / "report.md").is_file()
