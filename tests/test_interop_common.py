"""lstm_jax.interop's package and shared core: lazy public names, gate reordering, checked reads of foreign tensors."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lstm_jax import init, interop
from lstm_jax.interop import _common
from lstm_jax.unroll import Bidirectional


def test_every_public_name_resolves_to_its_submodule():
    for name, module in interop._EXPORTS.items():
        value = getattr(interop, name)
        assert value.__module__ == f"lstm_jax.interop.{module}", name
    assert sorted(dir(interop)) == sorted(interop._EXPORTS)
    with pytest.raises(AttributeError, match="no_such_name"):
        interop.no_such_name  # noqa: B018


def test_importing_the_package_imports_no_peer():
    code = (
        "import sys, lstm_jax.interop as i; i.to_torch; i.to_cudnn; "
        "print(sorted(m for m in ('torch', 'keras', 'haiku', 'equinox', 'safetensors') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[]"]


@pytest.mark.parametrize("as_jax", [False, True])
def test_reorder_gates_moves_blocks_and_back(as_jax):
    w = np.arange(24.0).reshape(8, 3)
    w = jnp.asarray(w) if as_jax else w
    moved = _common.reorder_gates(w, "ifgo", "igfo")
    assert type(moved) is type(w)
    np.testing.assert_array_equal(moved[2:4], w[4:6])  # g now second
    np.testing.assert_array_equal(moved[4:6], w[2:4])
    np.testing.assert_array_equal(_common.reorder_gates(moved, "igfo", "ifgo"), w)
    np.testing.assert_array_equal(_common.reorder_gates(w.T, "ifgo", "igfo", axis=1), moved.T)


def test_reorder_gates_errors():
    with pytest.raises(ValueError, match="expected the same gates"):
        _common.reorder_gates(np.zeros(8), "ifgo", "ifgx")
    with pytest.raises(ValueError, match=r"multiple of 4, got shape \(7,\)"):
        _common.reorder_gates(np.zeros(7), "ifgo", "igfo")


def test_tensor_reader_names_every_problem():
    tensors = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float64), "n": np.zeros(2, np.int32)}
    reader = _common.TensorReader(tensors, "the test dict")
    assert reader.has("a") and not reader.has("z")
    assert reader.take("a", (2, 3)).dtype == np.float32
    with pytest.raises(ValueError, match=r"^z: expected it in the test dict \(which has \['a', 'b', 'n'\]\), missing"):
        reader.take("z", (2,))
    with pytest.raises(ValueError, match=r"^b: expected shape \(3,\), got \(2,\)"):
        reader.take("b", (3,))
    with pytest.raises(ValueError, match=r"^b: expected dtype float32 like the tensors before it, got float64"):
        reader.take("b", (2,))
    with pytest.raises(ValueError, match=r"^n: expected a floating dtype .*, got int32"):
        reader.take("n", (2,))
    with pytest.raises(ValueError, match=r"unused tensors \['b', 'n'\]"):
        reader.finish()
    with pytest.raises(ValueError, match="the test dict: expected a mapping"):
        _common.TensorReader([1, 2], "the test dict")


def test_to_numpy_reads_jax_and_numpy_without_casting():
    x = jnp.ones((2,), jnp.bfloat16)
    assert _common.to_numpy(x).dtype == jnp.bfloat16
    assert _common.to_numpy(np.ones(3, np.float16)).dtype == np.float16


def test_layer_stack_describes_and_refuses():
    key = jax.random.key(0)
    lstm = init.init_layers(key, init.init_lstm, 3, 4, 2, bidirectional=True)
    assert _common.layer_stack(lstm) == ("lstm", 2, True)
    assert _common.directions(lstm[0]) == (lstm[0].forward, lstm[0].backward)
    assert _common.stack([_common.directions(layer) for layer in lstm]) == lstm
    gru = init.init_layers(key, init.init_gru, 3, 4, 1)
    assert _common.layer_stack(gru) == ("gru", 1, False)
    with pytest.raises(ValueError, match="layers: expected a non-empty tuple"):
        _common.layer_stack(())
    with pytest.raises(ValueError, match=r"layers\[1\]: expected every layer Bidirectional"):
        _common.layer_stack((lstm[0], gru[0]))
    with pytest.raises(ValueError, match=r"one cell kind in every layer, got \['gru', 'lstm'\]"):
        _common.layer_stack((lstm[0], Bidirectional(gru[0], gru[0])))
    with pytest.raises(ValueError, match="params: expected RNNParams"):
        _common.cell_kind({"w": 1})


def test_check_plain_refuses_the_options_a_peer_lacks():
    key = jax.random.key(0)
    _common.check_plain(init.init_lstm(key, 3, 4), "Keras")  # plain: fine
    proj = init.init_lstm(key, 3, 4, proj_size=2)
    _common.check_plain(proj, "PyTorch", projection=True)
    with pytest.raises(ValueError, match=r"Keras has no LSTM with \['w_hr'\]"):
        _common.check_plain(proj, "Keras")
    with pytest.raises(ValueError, match=r"\['p_i', 'gamma_z'\]"):
        _common.check_plain(init.init_lstm(key, 3, 4, peepholes=True, layer_norm=True), "PyTorch", projection=True)
