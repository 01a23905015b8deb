"""A flax model with lstm_jax's LSTM inside, trained with optax: the adding problem (lstm_jax.tasks).

    python experiments/flax_example.py                 # linen, 300 steps: ~20 s on a 2-core CPU
    python experiments/flax_example.py --api nnx       # the same model in flax nnx
    python experiments/flax_example.py --steps 30      # a smoke test

The model is ``Dense(32) -> lstm_jax.modules LSTM (2 layers of 32) -> Dense(1)`` on the last layer's
final ``h``, read from the carry the module returns in flax's order (one ``(c, h)`` per layer), so
it is the model a flax user writes with ``nn.RNN(nn.OptimizedLSTMCell(32))`` twice, with our module
in their place. The task: two of ``T`` values are marked, the target is their sum (Arjovsky et al.
2016); predicting 1 always scores the baseline MSE 1/6. Each line prints the mean training loss of
the last steps; within a few hundred steps it falls well below the baseline.
"""

import argparse
import pathlib
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the repository root, when not installed
from lstm_jax.modules import linen as ljnn  # noqa: E402
from lstm_jax.modules import nnx as ljnnx  # noqa: E402
from lstm_jax.tasks import make_task  # noqa: E402


class LinenModel(nn.Module):
    """Dense -> LSTM stack -> Dense on the last layer's final h."""

    hidden: int = 32
    num_layers: int = 2

    @nn.compact
    def __call__(self, xs):
        xs = nn.Dense(self.hidden)(xs)
        carry, _ = ljnn.LSTM(self.hidden, num_layers=self.num_layers, return_carry=True)(xs)
        _, h = carry[-1]  # flax's order: (c, h) of the last layer
        return nn.Dense(1)(h)


class NNXModel(nnx.Module):
    """The same model in flax nnx."""

    def __init__(self, input_size: int, hidden: int = 32, num_layers: int = 2, *, rngs: nnx.Rngs):
        self.embed = nnx.Linear(input_size, hidden, rngs=rngs)
        self.lstm = ljnnx.LSTM(hidden, hidden, num_layers=num_layers, return_carry=True, rngs=rngs)
        self.head = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, xs):
        carry, _ = self.lstm(self.embed(xs))
        _, h = carry[-1]
        return self.head(h)


def mse(predictions, targets):
    return jnp.mean((predictions - targets) ** 2)


def train_linen(task, steps: int, batch_size: int, lr: float, seed: int, log) -> list[float]:
    """Train :class:`LinenModel` with Adam; returns the loss of every step."""
    model, tx = LinenModel(), optax.adam(lr)
    key, k_init = jax.random.split(jax.random.key(seed))
    params = model.init(k_init, task.make_batch(key, batch_size).inputs)["params"]
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, key):
        batch = task.make_batch(key, batch_size)
        loss, grads = jax.value_and_grad(lambda p: mse(model.apply({"params": p}, batch.inputs), batch.targets))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for n in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, n))
        losses.append(float(loss))
        log(n, losses)
    return losses


def train_nnx(task, steps: int, batch_size: int, lr: float, seed: int, log) -> list[float]:
    """Train :class:`NNXModel` with Adam through ``nnx.Optimizer``; returns the loss of every step."""
    model = NNXModel(task.input_size, rngs=nnx.Rngs(seed))
    optimizer = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)
    key = jax.random.key(seed)

    @nnx.jit
    def step(model, optimizer, key):
        batch = task.make_batch(key, batch_size)
        loss, grads = nnx.value_and_grad(lambda m: mse(m(batch.inputs), batch.targets))(model)
        optimizer.update(model, grads)
        return loss

    losses = []
    for n in range(steps):
        losses.append(float(step(model, optimizer, jax.random.fold_in(key, n))))
        log(n, losses)
    return losses


def main(argv=None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", choices=("linen", "nnx"), default="linen")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--T", type=int, default=30, help="sequence length of the adding problem")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=25, help="print every this many steps")
    parser.add_argument("--quiet", action="store_true", help="print nothing (for tests)")
    args = parser.parse_args(argv)
    task = make_task("adding", T=args.T)
    start = time.perf_counter()

    def log(n, losses):
        if not args.quiet and ((n + 1) % args.every == 0 or n == 0):
            recent = losses[-args.every :]
            print(f"step {n + 1:4d}  loss {sum(recent) / len(recent):.4f}  (baseline {task.baseline:.4f})", flush=True)

    train = train_linen if args.api == "linen" else train_nnx
    losses = train(task, args.steps, args.batch, args.lr, args.seed, log)
    if not args.quiet:
        print(f"{args.api}: {args.steps} steps in {time.perf_counter() - start:.1f} s")
    return losses


if __name__ == "__main__":
    main()
