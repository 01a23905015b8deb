"""The unroll under an explicit mesh (the batch sharded, the parameters replicated) and inside ``jax.shard_map``."""

from __future__ import annotations

import jax

from lstm_jax import _checks

Array = jax.Array


def check_replicated(params) -> None:
    """Parameters sharded over an explicit mesh are not supported (the batch may be): a ValueError."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if isinstance(leaf, jax.Array) and any(_checks.mesh_axes(leaf)):
            raise ValueError(
                f"params{jax.tree_util.keystr(path)}: expected parameters replicated over the mesh (shard the "
                f"batch only), got them sharded over {_checks.mesh_axes(leaf)}"
            )


def sharded_as_batch(carry, xs_tm: Array):
    """Under an explicit mesh, each carry leaf ``(*batch, ...)`` sharded on its batch axes as ``xs_tm`` is.

    Zeros built here are not sharded, and a carry given sharded otherwise follows the inputs; a plain
    step function's leaves without the batch axes are left as they are.
    """
    batch_shape = xs_tm.shape[1:-1]
    batch_axes = _checks.mesh_axes(xs_tm)[1:-1]  # (T, *batch, M): the batch axes' entries

    def shard(leaf):
        if not isinstance(leaf, jax.Array) or leaf.shape[: len(batch_shape)] != batch_shape:
            return leaf
        want = batch_axes + (None,) * (leaf.ndim - len(batch_shape))
        return (
            leaf if _checks.mesh_axes(leaf) == want else jax.sharding.reshard(leaf, jax.sharding.PartitionSpec(*want))
        )

    return jax.tree.map(shard, carry)


def varying_as(tree, xs_tm: Array):
    """Inside ``jax.shard_map``, ``tree`` varying over the manual mesh axes that ``xs_tm`` varies over.

    Applied to the parameters, this makes autodiff (not the fast path's ``custom_vjp``) sum their
    gradients over those axes, as for any parameter shared by the devices.
    """
    axes = jax.typeof(xs_tm).manual_axis_type.varying

    def vary(leaf):
        missing = tuple(sorted(axes - jax.typeof(leaf).manual_axis_type.varying))
        return jax.lax.pcast(leaf, missing, to="varying") if missing else leaf

    return jax.tree.map(vary, tree)
