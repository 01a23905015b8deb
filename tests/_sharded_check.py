"""Run by tests/test_sharding.py in a subprocess with two host CPU devices (``XLA_FLAGS`` must be set
before JAX starts): ``lj.unroll`` and ``lj.unroll_layers`` with the batch sharded over a mesh, against
the same call on one device. Prints one JSON object: per case, the largest absolute difference of the
outputs, final carries and parameter gradients, whether the outputs stayed sharded, or the error.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import lstm_jax as lj

jax.config.update("jax_enable_x64", True)  # float64: the sharded sums may differ only by rounding
B, T, M, D = 4, 12, 3, 16  # D: a multiple of 16 for the Pallas kernels


def cases():
    k = jax.random.split(jax.random.key(0), 6)
    lstm, rnn = lj.init_lstm(k[0], M, D, dtype=jnp.float64), lj.init_rnn(k[1], M, D, dtype=jnp.float64)
    xs = jax.random.normal(k[2], (B, T, M), jnp.float64)
    lengths = jnp.array([T, 3, 7, 1])
    layers = lj.init_layers(k[3], lj.init_lstm, M, D, 2, bidirectional=True, dtype=jnp.float64)
    carry = lj.LSTMState(*jax.random.normal(k[4], (2, B, D), jnp.float64))
    long_xs = jax.random.normal(k[5], (B, 300, M), jnp.float64)  # past the CPU's cache chunk: chunked projection
    lstm_cell, rnn_cell = lj.lstm_cell(), lj.rnn_cell("tanh")
    one = lj.unroll
    yield "lstm auto", one, lstm_cell, lstm, xs, {}
    yield "lstm fast", one, lstm_cell, lstm, xs, {"impl": "fast"}
    yield "lstm scan", one, lstm_cell, lstm, xs, {"impl": "scan"}
    yield "lstm lengths", one, lstm_cell, lstm, xs, {"lengths": lengths}
    yield "lstm reverse lengths", one, lstm_cell, lstm, xs, {"lengths": lengths, "reverse": True}
    yield "lstm carry0", one, lstm_cell, lstm, xs, {"carry0": carry}
    yield "lstm replicated carry0", one, lstm_cell, lstm, xs, {"carry0": carry}
    yield "lstm replicated lengths", one, lstm_cell, lstm, xs, {"lengths": lengths}
    yield "lstm replicated inputs", one, lstm_cell, lstm, xs, {"carry0": carry}
    yield "lstm remat sqrt", one, lstm_cell, lstm, xs, {"remat": "sqrt", "lengths": lengths}
    yield "lstm remat step", one, lstm_cell, lstm, xs, {"remat": "step"}
    yield "lstm truncate", one, lstm_cell, lstm, xs, {"truncate": 5}
    yield "lstm bf16 compute", one, lstm_cell, lstm, xs, {"compute_dtype": "bfloat16"}
    yield "lstm T=300", one, lstm_cell, lstm, long_xs, {}
    yield "rnn auto", one, rnn_cell, rnn, xs, {"lengths": lengths}
    yield "plain step function", one, lj.lstm_step, lstm, xs, {"carry0": carry, "lengths": lengths}
    yield "lstm sharded parameters", one, lstm_cell, lstm, xs, {}
    yield "lstm pallas_interpret", one, lstm_cell, lstm, xs, {"impl": "pallas_interpret"}
    yield "layers bidirectional", lj.unroll_layers, lstm_cell, layers, xs, {"lengths": lengths}


ARRAY_OPTIONS = ("lengths", "carry0")
#: The arguments that these cases leave replicated; every other array argument has its batch sharded.
REPLICATED = {
    "lstm replicated carry0": ("carry0",),
    "lstm replicated lengths": ("lengths",),
    "lstm replicated inputs": ("xs",),  # with a sharded carry0: the inputs decide
}
#: The cases whose parameters are sharded (their first axis), not replicated: a ValueError.
SHARDED_PARAMETERS = ("lstm sharded parameters",)


def run(fn, cell, params, xs, options):
    """(loss, final carry, outputs, gradients of the parameters) of ``fn``, jitted (arrays as arguments)."""
    arrays = {k: v for k, v in options.items() if k in ARRAY_OPTIONS}
    static = {k: v for k, v in options.items() if k not in ARRAY_OPTIONS}

    def loss(params, xs, arrays):
        carry, hs = fn(cell, params, xs, **arrays, **static)
        return jnp.sum(hs**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry)), (carry, hs)

    (value, (carry, hs)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, xs, arrays)
    return value, carry, hs, grads


def max_difference(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(a, b, strict=True)
    )


def _mesh(axis_type: str):
    return jax.make_mesh((2,), ("batch",), axis_types=(getattr(AxisType, axis_type),))


def _placed(mesh, name: str, xs, options):
    """``xs`` and the array options on ``mesh``: batch-sharded, or replicated as :data:`REPLICATED` says."""
    replicated = REPLICATED.get(name, ())

    def put(key, value):
        return jax.device_put(value, NamedSharding(mesh, P() if key in replicated else P("batch")))

    return put("xs", xs), {k: put(k, v) if k in ARRAY_OPTIONS else v for k, v in options.items()}


#: The cases run under an ``Auto`` mesh (all of them under ``Explicit``): JAX's sharding propagation
#: handled every case there before explicit meshes were supported; these keep it so.
AUTO_CASES = ("lstm auto", "lstm scan", "lstm lengths", "lstm pallas_interpret", "layers bidirectional")
#: The cases also run with ``check_vma=False`` inside ``jax.shard_map`` (all of them with ``True``).
UNCHECKED_VMA_CASES = ("lstm auto", "lstm pallas_interpret")


def _in_shard_map(name: str) -> bool:
    """The shard_map cases: all but those with a replicated argument (each device gets its own rows)."""
    return name not in REPLICATED and name not in SHARDED_PARAMETERS


def expected(mode: str) -> list[str]:
    """The names of the cases that :func:`check_jit` (``Explicit``, ``Auto``) or :func:`check_shard_map` run."""
    if mode == "Auto":
        return list(AUTO_CASES)
    if mode == "Explicit":
        return [case[0] for case in cases()]
    names = [case[0] for case in cases() if _in_shard_map(case[0])]
    return [f"{n}, check_vma={v}" for n in names for v in ((True, False) if n in UNCHECKED_VMA_CASES else (True,))]


def check_jit(axis_type: str) -> dict:
    """``jax.jit`` of the whole step with the batch sharded (``axis_type``: ``Explicit`` or ``Auto``)."""
    mesh, results = _mesh(axis_type), {}
    for name, fn, cell, params, xs, options in cases():
        if axis_type == "Auto" and name not in AUTO_CASES:
            continue
        reference = run(fn, cell, params, xs, options)
        try:
            with jax.set_mesh(mesh):
                placed_xs, placed_options = _placed(mesh, name, xs, options)
                if name in SHARDED_PARAMETERS:
                    params = jax.device_put(params, NamedSharding(mesh, P("batch")))
                got = run(fn, cell, params, placed_xs, placed_options)
            leaves = [jax.tree.leaves(r) for r in (reference, got)]
            results[name] = {
                "difference": max_difference(*leaves),
                "inputs_sharded": not placed_xs.sharding.is_fully_replicated,
                "outputs_sharded": not got[2].sharding.is_fully_replicated,
            }
        except Exception as error:  # reported, and failed or expected, by the test
            results[name] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    return results


def check_shard_map() -> dict:
    """The gradients inside ``jax.shard_map`` (each device: its own rows) against one device's.

    With ``check_vma=True`` JAX sums the shared parameters' gradients over the devices itself; with
    ``check_vma=False`` the caller does (``psum``).
    """
    mesh, results = _mesh("Explicit"), {}
    for name, fn, cell, params, xs, options in cases():
        if not _in_shard_map(name):
            continue
        arrays = {k: v for k, v in options.items() if k in ARRAY_OPTIONS}
        static = {k: v for k, v in options.items() if k not in ARRAY_OPTIONS}

        def grads(params, xs, arrays, fn=fn, cell=cell, static=static):  # of the sum over this device's rows
            return jax.grad(lambda p: jnp.sum(fn(cell, p, xs, **arrays, **static)[1] ** 2))(params)

        reference = jax.jit(grads)(params, xs, arrays)
        for check_vma in (True, False) if name in UNCHECKED_VMA_CASES else (True,):
            label = f"{name}, check_vma={check_vma}"

            def local(params, xs, arrays, check_vma=check_vma, grads=grads):
                return grads(params, xs, arrays) if check_vma else jax.lax.psum(grads(params, xs, arrays), "batch")

            try:
                with jax.set_mesh(mesh):
                    placed_xs, placed_arrays = _placed(mesh, name, xs, arrays)
                    rows = P("batch")  # xs, lengths and each carry leaf: each device gets its own rows
                    mapped = jax.shard_map(local, in_specs=(P(), rows, rows), out_specs=P(), check_vma=check_vma)
                    got = jax.jit(mapped)(params, placed_xs, placed_arrays)
                results[label] = {"difference": max_difference(jax.tree.leaves(reference), jax.tree.leaves(got))}
            except Exception as error:
                results[label] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"}
    return results


if __name__ == "__main__":
    assert len(jax.devices()) == 2, jax.devices()
    modes = {"Explicit": lambda: check_jit("Explicit"), "Auto": lambda: check_jit("Auto"), "shard_map": check_shard_map}
    print(json.dumps({"expected": {m: expected(m) for m in modes}, "results": {m: run() for m, run in modes.items()}}))
