"""The batch sharded over two devices: ``lj.unroll`` and ``lj.unroll_layers`` give the numbers of one
device (float64, to 1e-10) under ``jax.jit`` with an explicit or an automatic mesh and inside
``jax.shard_map``, and the outputs are sharded as the inputs are (a carry or lengths placed
otherwise follow the inputs).

JAX fixes its device count at start-up, so the cases run in one subprocess with two host CPU devices
(``tests/_sharded_check.py``); each case is a test here.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from lstm_jax._checks import mesh_axes

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-10


@pytest.fixture(scope="module")
def results() -> dict:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(HERE / "_sharded_check.py")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for mode, names in report["expected"].items():  # no case skipped or lost
        assert sorted(report["results"][mode]) == sorted(names), mode
    counts = {mode: len(names) for mode, names in report["expected"].items()}
    assert counts == {"Explicit": 19, "Auto": 5, "shard_map": 17}, counts  # update with the cases
    return report["results"]


@pytest.mark.parametrize("mode", ["Explicit", "Auto"])
def test_jit_over_a_sharded_batch_equals_one_device(results, mode):
    for name, got in results[mode].items():
        if mode == "Explicit" and name == "lstm pallas_interpret":  # the kernels index the whole batch
            assert "expected a batch that is not sharded over an explicit mesh" in got.get("error", ""), got
            continue
        if mode == "Explicit" and name == "lstm sharded parameters":
            assert "params.w_ih: expected parameters replicated over the mesh" in got.get("error", ""), got
            continue
        assert "error" not in got, f"{mode}, {name}: {got['error']}"
        assert got["difference"] <= TOLERANCE, f"{mode}, {name}: {got}"
        assert got["outputs_sharded"] == got["inputs_sharded"], f"{mode}, {name}: outputs not placed as the inputs"


def test_shard_map_gradients_equal_one_device(results):
    for name, got in results["shard_map"].items():
        if name == "lstm pallas_interpret, check_vma=True" and "error" in got:
            # JAX's Pallas interpreter (0.10) loses the varying axes in its loops: a JAX limitation.
            assert "mismatched varying manual axes" in got["error"], got
            continue
        assert "error" not in got, f"shard_map, {name}: {got['error']}"
        assert got["difference"] <= TOLERANCE, f"shard_map, {name}: {got}"


def test_mesh_axes_without_a_mesh_is_one_none_per_dimension():
    x = jnp.ones((2, 3, 4))
    traced = []
    jax.jit(lambda a: traced.append(mesh_axes(a)) or a)(x)
    assert mesh_axes(x) == (None, None, None) and traced == [(None, None, None)]
