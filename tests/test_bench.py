"""experiments/bench.py: every implementation computes the same loss and gradients, the rows have the
documented fields, and the tables are rendered from JSON. No timing is asserted: benchmarks are not tests.
"""

import json
import types
from pathlib import Path

import jax
import numpy as np
import pytest
from _util import load_experiment

ROOT = Path(__file__).resolve().parents[1]


bench = load_experiment("bench")
CPU = jax.devices("cpu")[0]


def _quiet(*args):
    pass


def _results(runner):
    """``(loss, grads as lstm_jax layers, forward outputs)`` of one runner, as numpy."""
    loss, grads = runner.train()
    hs = runner.forward()
    hs = hs.numpy() if hasattr(hs, "numpy") and not isinstance(hs, jax.Array) else np.asarray(hs)
    return float(loss), runner.grads_as_layers(grads), hs


def _assert_same(runner, reference):
    loss, grads, hs = _results(runner)
    ref_loss, ref_grads, ref_hs = reference
    label = f"{runner.impl} ({runner.variant})"
    assert abs(loss - ref_loss) <= 1e-5 * max(1.0, abs(ref_loss)), f"{label}: loss {loss} vs lstm_jax {ref_loss}"
    np.testing.assert_allclose(hs, ref_hs, atol=1e-5, err_msg=f"{label}: forward outputs")
    assert len(grads) == len(ref_grads)
    for layer, (g, ref) in enumerate(zip(grads, ref_grads)):
        assert type(g) is type(ref), f"{label}: layer {layer} {type(g).__name__} vs {type(ref).__name__}"
        for name, a, b in zip(ref._fields, g, ref):
            if b is None:  # an LSTM option the cell does not have
                assert a is None, f"{label}: layer {layer} {name} is not None"
                continue
            assert a.shape == b.shape, f"{label}: layer {layer} {name} shape {a.shape} vs {b.shape}"
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=f"{label}: layer {layer} d{name}")


def _random_biases(layers, seed=1):
    """``layers`` with every bias (each 1-D leaf: the LSTM's ``b``, the GRU's ``b`` and ``b_hn``) drawn N(0, 0.5²).

    The initialisers give zero biases (but the LSTM's forget gate), under which a bias copied to the
    wrong place in flax's or torch's layout would go unseen.
    """
    leaves, tree = jax.tree.flatten(layers)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    leaves = [0.5 * jax.random.normal(k, a.shape, a.dtype) if a.ndim == 1 else a for k, a in zip(keys, leaves)]
    return jax.tree.unflatten(tree, leaves)


QUICK = [(cell, shape) for cell in bench.CELLS for shape in bench.SHAPES["quick"]]


@pytest.fixture(
    scope="module", params=QUICK, ids=lambda c: f"{c[0]}-B{c[1].B}T{c[1].T}M{c[1].M}D{c[1].D}L{c[1].layers}"
)
def quick_problem(request):
    cell, shape = request.param
    layers, xs = bench.problem(shape, "float32", CPU, cell=cell)
    layers = _random_biases(layers)
    assert bench.cell_of(layers) == cell
    reference = _results(bench.lstm_jax_runners(layers, xs, CPU)[0])
    return layers, xs, reference


def test_problem_draws_each_cells_parameters():
    shape = bench.SHAPES["quick"][1]
    kinds = {"lstm": bench.lj.LSTMParams, "gru": bench.lj.GRUParams, "lstmp": bench.lj.LSTMVariantParams}
    for cell, kind in kinds.items():
        layers, xs = bench.problem(shape, "float32", CPU, cell=cell)
        assert len(layers) == shape.layers and all(type(p) is kind for p in layers)
        assert bench.cell_of(layers) == cell and xs.shape == (shape.B, shape.T, shape.M)
        assert all(bench.hidden_size(p) == shape.D for p in layers)
    assert bench.proj_size(layers) == shape.D // bench.PROJ_DIVISOR == layers[0].w_hh.shape[1]
    assert bench.cell_options(layers) == {"proj_size": shape.D // bench.PROJ_DIVISOR}
    with pytest.raises(ValueError, match="layers: expected parameters of lstm, gru, lstmp, got RNNParams"):
        bench.cell_of((bench.lj.init_rnn(jax.random.key(0), 3, 4),))
    peepholes = bench.lj.init_lstm(jax.random.key(0), 3, 4, proj_size=2, peepholes=True)
    with pytest.raises(ValueError, match="got LSTMVariantParams"):  # an option the suite does not time
        bench.cell_of((peepholes,))
    assert set(bench.CELLS) == set(bench.TORCH_CELLS) == set(bench.FLOOR_LAYERS) == set(bench.CELL_TITLES)
    assert set(bench.FLAX_CELLS) == {"lstm", "gru"}  # flax has no LSTM with projection


def test_quick_shapes_have_one_and_several_layers():
    assert {shape.layers for shape in bench.SHAPES["quick"]} >= {1, 2}


@pytest.mark.parametrize("impl", ["lstm_jax", "flax"])
def test_jax_implementations_give_the_same_loss_and_gradients(quick_problem, impl):
    layers, xs, reference = quick_problem
    runners = bench.RUNNERS[impl](layers, xs, CPU)
    if impl == "flax" and bench.cell_of(layers) not in bench.FLAX_CELLS:
        assert runners == []
        return
    assert runners
    if impl == "lstm_jax":  # every variant (impl="scan" too, when unroll has it); the default is the reference
        assert [r.variant for r in runners] == [v for v, _ in bench.unroll_variants(cell=bench.cell_of(layers))]
        runners = runners[1:]
    for runner in runners:
        _assert_same(runner, reference)


def test_torch_gives_the_same_loss_and_gradients(quick_problem):
    pytest.importorskip("torch")
    layers, xs, reference = quick_problem
    (runner,) = bench.torch_runners(layers, xs, CPU)
    _assert_same(runner, reference)


def test_gemm_floor_has_the_cells_parameters_and_no_recurrence(quick_problem):
    layers, xs, reference = quick_problem
    (runner,) = bench.gemm_floor_runners(layers, xs, CPU)
    loss, grads, hs = _results(runner)
    assert np.isfinite(loss) and hs.shape == reference[2].shape
    assert jax.tree.map(np.shape, grads) == jax.tree.map(np.shape, reference[1])
    # No recurrence: each step's output depends on its own input only.
    floor = jax.jit(bench.gemm_floor_hs)
    changed = np.asarray(xs).copy()
    changed[:, 0] += 1.0
    hs, hs_changed = np.asarray(floor(layers, xs)), np.asarray(floor(layers, jax.numpy.asarray(changed)))
    np.testing.assert_array_equal(hs_changed[:, 1:], hs[:, 1:])
    assert not np.array_equal(hs_changed[:, 0], hs[:, 0])


def test_rows_have_the_documented_fields():
    shape = bench.SHAPES["quick"][0]
    rows = bench.run_suite([shape], ["float32"], ["lstm_jax", "gemm_floor"], repeats=2, device=CPU, log=_quiet)
    variants = [v for v, _ in bench.unroll_variants()]
    assert [(r["impl"], r["variant"]) for r in rows] == [("lstm_jax", v) for v in variants] + [
        ("gemm_floor", "default")
    ]
    for row in rows:
        assert set(bench.ROW_KEYS) <= set(row)
        assert (row["device"], row["dtype"], row["B"], row["T"], row["M"], row["D"], row["layers"]) == (
            "cpu",
            "float32",
            *shape,
        )
        assert row["fwd_ms"] > 0 and row["train_ms"] > 0
        assert row["us_per_step_train"] == pytest.approx(1000 * row["train_ms"] / shape.T, rel=1e-3)
        assert row["tokens_per_s_train"] == pytest.approx(shape.B * shape.T / (row["train_ms"] / 1000), rel=1e-3)
        assert {"python", "jax", "jaxlib", "flax", "optax", "numpy"} <= set(row["versions"])
        assert row["date"].endswith("+00:00")
        assert row["repeats"] == 2 and row["waited_s"] >= 0 and "torch_threads" in row
        assert len(row["loadavg_1min"]) == 2 and all(v is None or v >= 0 for v in row["loadavg_1min"])
        assert row["others_busy"] is None or 0 <= row["others_busy"] <= 1
    json.dumps(rows)


def _row(impl, train_ms, fwd_ms, variant="default", dtype="float32"):
    return {
        "impl": impl,
        "variant": variant,
        "device": "cpu",
        "device_name": "Test CPU (2 cores)",
        "dtype": dtype,
        "B": 8,
        "T": 100,
        "M": 32,
        "D": 64,
        "layers": 1,
        "fwd_ms": fwd_ms,
        "train_ms": train_ms,
        "repeats": 5,
        "date": "2026-01-01T00:00:00+00:00",
        "versions": {"python": "3.11", "jax": "0.10.2"},
    }


def test_table_renders_from_json(tmp_path, capsys):
    rows = [
        _row("lstm_jax", 2.0, 1.0),
        _row("lstm_jax", 3.0, 1.5, variant="scan"),
        _row("flax", 4.0, 1.0),
        _row("torch", 8.0, 4.0),
        _row("gemm_floor", 0.5, 0.25),
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(rows))
    assert bench.main(["--from", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == bench.render(rows)
    assert "| shape | lstm_jax | lstm_jax (scan) | flax | torch | gemm_floor | lstm_jax/torch | lstm_jax/flax |" in out
    assert "| 8×100×32×64×1 | 2 | 3 | 4 | 8 | 0.5 | 0.25 | 0.50 | 4.00 |" in out  # training
    assert "| 8×100×32×64×1 | 1 | 1.5 | 1 | 4 | 0.25 | 0.25 | 1.00 | 4.00 |" in out  # forward
    assert "Test CPU (2 cores)" in out and "median of 5" in out


def test_table_marks_missing_implementations(tmp_path):
    table = bench.render([_row("lstm_jax", 2.0, 1.0), _row("lstm_jax", 1.0, 1.0, dtype="bfloat16")])
    assert "**cpu float32 LSTM, training step**" in table and "**cpu bfloat16 LSTM, forward**" in table
    assert "| 8×100×32×64×1 | 2 | — | — | — |" in table


def test_cli_writes_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "results" / "bench_quick.json"
    args = ["--shapes", "quick", "--impls", "gemm_floor", "--repeats", "1", "--quiet", "1"]
    args += ["--out", str(out), "--table"]
    assert bench.main(args) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == len(bench.SHAPES["quick"]) * len(bench.DEFAULT_CELLS["cpu"]) == 2 * 3
    assert out.with_suffix(".md").read_text() == bench.render(rows) + "\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["bench_quick.json", "bench_quick.md"]  # no temporaries


def test_smoke_mode_times_the_gru_beside_the_lstm(tmp_path):
    """``--shapes quick`` on the CPU, default cells: every implementation has a GRU row per shape, after the
    LSTM's of the same shape, then the LSTM with projection's (no flax row: flax has none), and the GRU
    gets its own tables."""
    pytest.importorskip("torch")
    out = tmp_path / "smoke.json"
    args = ["--shapes", "quick", "--variants", "default", "--repeats", "1", "--quiet", "1", "--out", str(out)]
    assert bench.main(args + ["--table"]) == 0
    rows = json.loads(out.read_text())
    expected = [
        (s.T, cell, impl)
        for s in bench.SHAPES["quick"]
        for cell in ("lstm", "gru", "lstmp")
        for impl in bench.IMPLS
        if (cell, impl) != ("lstmp", "flax")
    ]
    assert [(r["T"], r["cell"], r["impl"]) for r in rows] == expected
    assert {r["proj_size"] for r in rows if r["cell"] == "lstmp"} == {1} and {r["proj_size"] for r in rows} == {None, 1}
    assert all(r["fwd_ms"] > 0 and r["train_ms"] > 0 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert "**cpu float32 GRU, training step**" in table and "**cpu float32 GRU, forward**" in table
    gru = table[table.index("**cpu float32 GRU, training step**") :]
    assert all(f"| {bench._shape_label(r)} |" in gru for r in rows)


def test_tables_per_cell_and_rows_without_a_cell_are_the_lstm():
    gru = [{**_row("lstm_jax", 3.0, 1.5), "cell": "gru"}, {**_row("torch", 6.0, 1.0), "cell": "gru"}]
    table = bench.render([_row("lstm_jax", 2.0, 1.0), _row("torch", 8.0, 4.0), *gru])
    lstm_part, gru_part = table.split("**cpu float32 GRU, training step**")
    assert "**cpu float32 LSTM, training step**" in lstm_part and "| 8×100×32×64×1 | 2 | 8 | 0.25 |" in lstm_part
    assert "| 8×100×32×64×1 | 3 | 6 | 0.50 |" in gru_part and "| 8×100×32×64×1 | 1.5 | 1 | 1.50 |" in gru_part
    assert bench._problem_of(_row("torch", 1, 1)) != bench._problem_of(gru[1])
    assert "Load average" not in table  # rows from before it was recorded
    loaded = [{**row, "loadavg_1min": [0.5, 3.25], "others_busy": busy} for row, busy in zip(gru, (0.0, 0.42))]
    assert "Load average (1 min, all processes, at the start and end of each shape) 0.5–3.2;" in bench.render(loaded)
    assert "before the repeats (median per shape) 0–0.42." in bench.render(loaded)


def test_docs_block_is_replaced(tmp_path):
    docs = tmp_path / "doc.md"
    name = bench._relative(tmp_path / "b.json")
    docs.write_text(f"intro\n<!-- begin generated from {name} -->\nold\n<!-- end generated from {name} -->\nend\n")
    assert bench.update_docs(docs, tmp_path / "b.json", "new table")
    assert docs.read_text() == (
        f"intro\n<!-- begin generated from {name} -->\nnew table\n<!-- end generated from {name} -->\nend\n"
    )
    assert not bench.update_docs(docs, tmp_path / "other.json", "x")


def test_memory_options_cover_every_impl_and_remat():
    import inspect

    import lstm_jax as lj

    options = bench.memory_options()
    parameters = inspect.signature(lj.unroll).parameters
    for name in ("impl", "remat"):
        if name in parameters:
            assert {o[name] for o in options} >= {parameters[name].default}
            assert len(options) % len({o[name] for o in options}) == 0
        else:
            assert all(name not in o for o in options)
    assert len(options) == len({json.dumps(o, sort_keys=True) for o in options})  # no duplicates


def test_memory_probe_reports_compiled_sizes():
    shape = bench.Shape(2, 30, 3, 4, 1)
    options = [bench.memory_options()[0], bench.memory_options()[-1]]
    rows = bench.memory_probe(shape, "float32", CPU, impls=("lstm_jax", "gemm_floor"), log=_quiet, options=options)
    assert [row["impl"] for row in rows][-1] == "gemm_floor"
    assert all(row["options"] in options for row in rows[:-1])
    for row in rows:
        assert row["temp_size_in_bytes"] >= 0 and row["argument_size_in_bytes"] > 0
        assert (row["B"], row["T"], row["M"], row["D"]) == (2, 30, 3, 4)
    assert "| impl | options | temp MiB |" in bench.memory_table(rows)


@pytest.mark.parametrize(
    "name", ["bench_cpu", "bench_cpu_gru", "bench_cpu_isolated", "bench_cpu_1core", "bench_memory_cpu"]
)
def test_committed_tables_are_generated(name):
    path = ROOT / "experiments" / "results" / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not committed")
    table = bench.render(json.loads(path.read_text()))
    assert path.with_suffix(".md").read_text() == table + "\n"
    assert table in (ROOT / "docs" / "benchmarks.md").read_text()


def test_gpu_variants_add_pallas_and_bf16_compute():
    """On a GPU the suite also times the Pallas kernels and, for float32 parameters, bf16 matmul operands."""
    gpu = types.SimpleNamespace(platform="gpu")
    assert [v for v, _ in bench.unroll_variants(gpu, "float32")] == [
        "default",
        "scan",
        "pallas",
        "bf16_compute",
        "pallas_bf16_compute",
    ]
    assert [v for v, _ in bench.unroll_variants(gpu, "bfloat16")] == ["default", "scan", "pallas"]
    assert dict(bench.unroll_variants(gpu))["pallas_bf16_compute"] == {"impl": "pallas", "compute_dtype": "bfloat16"}
    assert [v for v, _ in bench.unroll_variants(CPU, "float32")] == ["default", "scan"]
    # The Pallas kernels are the LSTM's: the GRU on a GPU gets the scan loops, in both precisions.
    assert [v for v, _ in bench.unroll_variants(gpu, "float32", "gru")] == ["default", "scan", "bf16_compute"]


def test_run_suite_variants_budget_and_save():
    """``variants`` filters the lstm_jax rows; ``save`` sees the rows after every shape; ``budget_s=0`` runs none."""
    saved = []
    shapes = bench.SHAPES["quick"]
    rows = bench.run_suite(
        shapes,
        ["float32"],
        ["lstm_jax"],
        repeats=1,
        device=CPU,
        log=_quiet,
        variants=["scan"],
        save=lambda r: saved.append(len(r)),
    )
    assert [(r["impl"], r["variant"], r["T"]) for r in rows] == [("lstm_jax", "scan", s.T) for s in shapes]
    assert saved == [1, 2]
    messages = []
    assert bench.run_suite(shapes, ["float32"], ["lstm_jax"], 1, CPU, log=messages.append, budget_s=0) == []
    assert messages == ["time budget of 0 s spent: float32 lstm B=3 T=7 D=4 and later skipped"]


def test_isolated_suite_runs_each_implementation_in_its_own_process(tmp_path):
    """``--isolate``: rows per implementation from separate processes, times the median over rounds."""
    out = tmp_path / "iso.json"
    argv = ["--shapes", "quick", "--cells", "gru", "--impls", "gemm_floor,lstm_jax", "--variants", "default"]
    argv += ["--isolate", "2"]
    assert bench.main(argv + ["--repeats", "1", "--quiet", "1", "--out", str(out), "--table"]) == 0
    rows = json.loads(out.read_text())
    shapes = bench.SHAPES["quick"]
    assert [(r["impl"], r["T"]) for r in rows] == [(impl, s.T) for s in shapes for impl in ("gemm_floor", "lstm_jax")]
    assert all(r["isolated_rounds"] == 2 and r["fwd_ms"] >= r["fwd_ms_min"] > 0 for r in rows)
    assert {r["cell"] for r in rows} == {"gru"}  # --cells reaches the subprocesses
    assert (
        "each implementation in its own process, median of 2 rounds' medians of 1 repeats"
        in out.with_suffix(".md").read_text()
    )
    assert bench._child_args(
        bench.argparse.Namespace(
            device="cpu",
            repeats=3,
            quiet=1.0,
            max_wait=5.0,
            shapes="quick",
            cells="gru",
            dtypes=None,
            variants="default",
            torch_threads=None,
        )
    ) == [
        "--device",
        "cpu",
        "--repeats",
        "3",
        "--quiet",
        "1.0",
        "--max-wait",
        "5.0",
        "--shapes",
        "quick",
        "--cells",
        "gru",
        "--variants",
        "default",
    ]


def test_device_name_says_how_many_cores_are_usable(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(bench, "cpu_model", lambda: "Test CPU")
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert bench.device_name(CPU) == "Test CPU (2 cores)"
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0}, raising=False)  # taskset -c 0
    assert bench.device_name(CPU) == "Test CPU (2 cores, pinned to 1)"


def test_update_reruns_some_shapes_and_keeps_the_other_rows(tmp_path):
    """``--shape`` times given shapes; ``--update`` replaces only their problems' rows in OUT, in place."""
    out = tmp_path / "b.json"
    common = ["--impls", "gemm_floor", "--cells", "gru", "--repeats", "1", "--quiet", "1", "--out", str(out)]
    assert bench.main(["--shapes", "quick"] + common) == 0
    before = json.loads(out.read_text())
    assert bench.main(["--shape", "3,7,5,4", "--update"] + common) == 0
    after = json.loads(out.read_text())
    assert [(r["B"], r["T"], r["cell"]) for r in after] == [(r["B"], r["T"], r["cell"]) for r in before]
    assert after[1] == before[1] and after[0] != before[0]  # the (3, 7, 5, 4) row is the new one
    assert bench.main(["--shape", "2,5,3,4,1"] + common) == 0  # without --update: only the new shape
    assert [(r["B"], r["T"], r["layers"]) for r in json.loads(out.read_text())] == [(2, 5, 1)]


def test_merge_rows_replaces_whole_problems():
    old = [_row("lstm_jax", 1, 1), _row("torch", 2, 2), {**_row("torch", 3, 3), "cell": "gru"}]
    new = [_row("lstm_jax", 5, 5), {**_row("flax", 6, 6), "B": 99}]
    assert bench.merge_rows(old, new) == [new[0], old[2], new[1]]  # torch's old lstm row goes with its problem
    assert bench.merge_rows([], new) == new and bench.merge_rows(old, []) == old
