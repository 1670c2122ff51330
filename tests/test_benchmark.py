"""Tests of the equal-budget benchmark, ``python -m refimpl.benchmark``."""

import json

import numpy as np
import pytest

from refimpl import benchmark
from refimpl.benchmark import METHODS, MODELS, main, run_one

FIELDS = {
    "model", "method", "target", "seed", "accuracy_before_finetune", "accuracy", "params_nonzero",
    "macs", "bytes", "compression", "latency_s", "speedup", "dense_bytes", "dense_latency_s",
}


def test_unknown_model_is_refused_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["--model", "resnet50"])
    err = capsys.readouterr().err
    assert "resnet50" in err and "lenet_300_100" in err


def test_unknown_method_is_refused_naming_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["--methods", "magnitude,pixie_dust", "--quick"])
    err = capsys.readouterr().err
    assert "pixie_dust" in err and "deep_compression" in err


@pytest.mark.parametrize("argv", [["--targets", "0.5"], ["--targets", "two"], ["--seeds", "0"],
                                  ["--finetune-epochs", "-1"]])
def test_bad_numbers_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        main(["--quick", *argv])
    assert argv[0] in capsys.readouterr().err


def test_run_one_refuses_unknown_names_and_targets():
    with pytest.raises(ValueError, match="digits_mlp"):
        run_one("vgg", "magnitude", 2, 0)
    with pytest.raises(ValueError, match="magnitude"):
        run_one("digits_mlp", "prune_harder", 2, 0)
    with pytest.raises(ValueError, match="target"):
        run_one("digits_mlp", "magnitude", 0.5, 0)


def test_registry_entries_name_known_models():
    for name, method in METHODS.items():
        assert callable(method.compress) and callable(method.deploy), name
        assert set(method.models) <= set(MODELS), name


def test_tiny_run_writes_consistent_records(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--model", "digits_mlp", "--methods", "magnitude", "--seeds", "1",
                 "--targets", "4", "--finetune-epochs", "0", "--repeats", "1",
                 "--out", str(out)]) == 0
    assert "magnitude" in capsys.readouterr().err  # one progress line
    records = json.loads(out.read_text())["records"]
    assert len(records) == 1
    r = records[0]
    assert FIELDS <= set(r)
    assert (r["model"], r["method"], r["target"], r["seed"]) == ("digits_mlp", "magnitude", 4, 0)
    assert 0 <= r["accuracy"] <= 1 and 0 <= r["accuracy_before_finetune"] <= 1
    assert r["accuracy"] == r["accuracy_before_finetune"]  # no fine-tuning epochs
    assert np.isclose(r["compression"], r["dense_bytes"] / r["bytes"], rtol=1e-12)
    assert np.isclose(r["speedup"], r["dense_latency_s"] / r["latency_s"], rtol=1e-12)
    assert r["bytes"] < r["dense_bytes"] and r["latency_s"] > 0
    dense = benchmark.profile(benchmark.load_baseline("digits_mlp"), (1, 8, 8))
    assert r["params_nonzero"] < dense.params and r["macs"] > 0


def test_quiet_prints_nothing(tmp_path, capsys):
    main(["--model", "digits_mlp", "--methods", "uniform", "--seeds", "1", "--targets", "4",
          "--finetune-epochs", "0", "--repeats", "1", "--quiet", "--out",
          str(tmp_path / "r.json")])
    assert capsys.readouterr().err == ""


def test_masked_model_is_deployed_as_csr_with_the_same_outputs():
    rec_model = benchmark.load_baseline("digits_mlp")
    benchmark.prune_model(rec_model, 0.75)
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    deployed = benchmark.deploy_csr(rec_model, None)
    assert np.allclose(deployed.forward(x), rec_model.forward(x), atol=1e-5)


def test_retime_writes_one_consistent_timing_per_point():
    records = [{"model": "digits_mlp", "method": "units_l1", "target": 4.0, "seed": s}
               for s in (0, 1)]
    benchmark.retime(records, repeats=1, quiet=True)
    assert records[0]["latency_s"] == records[1]["latency_s"] > 0
    for r in records:
        assert np.isclose(r["speedup"], r["dense_latency_s"] / r["latency_s"], rtol=1e-12)
