r"""Gradient flow at initialisation: how much of a last-step loss reaches step t, simple RNN vs LSTM.

Run from the repository root::

    python experiments/gradient_flow.py           # writes experiments/results/gradient_flow.{png,csv,json}
    python experiments/gradient_flow.py --table   # prints the Markdown table of experiments/README.md

**Setup.** ``B`` random input sequences :math:`x_t \sim N(0, I_M)`, ``t = 1..T``, zero initial carry,
one recurrent layer at its initialisation, and a loss at the last step only, per sequence:

.. math:: L = r^\top h_T, \qquad r \sim N(0, I_D / D) \text{ normalised to } \lVert r \rVert = 1 .

The loss is linear, so :math:`\partial L / \partial h_T = r` for every sequence and
:math:`\partial L / \partial h_t = (\partial h_T / \partial h_t)^\top r`: the norm at lag
:math:`T - t` is the norm of the backpropagated Jacobian applied to a fixed unit vector, with no
dependence on the loss's value (a squared readout would scale each sequence by its own output).

**How the gradients are taken.** The scan adds a perturbation :math:`\epsilon_t` (zero) to the state
of every step, :math:`h_t = \tanh(U h_{t-1} + W x_t + b) + \epsilon_t` for the RNN, and for the LSTM
:math:`c_t = f_t \odot c_{t-1} + i_t \odot \tilde c_t + \epsilon^c_t`,
:math:`h_t = o_t \odot \tanh(c_t) + \epsilon^h_t`. One ``jax.grad`` with respect to all
:math:`\epsilon_t` gives :math:`\partial L / \partial h_t` and :math:`\partial L / \partial c_t` for
every ``t``: the total derivatives ``dh_t``, ``dc_t`` of ``docs/maths.md`` §4 (``dc_t`` includes the
path through :math:`h_t`). ``tests/test_experiments_gradient_flow.py`` checks them against the
manual BPTT of :mod:`lstm_jax.bptt`. Everything runs in float64 (``jax.enable_x64``). In float32 the
RNN's norms underflow: at g = 0.5 they come out exactly 0 from lag 40 on (the squares inside the norm,
~1e-41, are flushed to zero), and the gradients themselves pass float32's smallest normal number
(1.2e-38) by lag ~80 (g = 0.5) and ~180 (g = 1).

**Predictions overlaid.**

* Simple RNN, :math:`h_t = \tanh(U h_{t-1} + W x_t)`: the Jacobian is
  :math:`\partial h_{t} / \partial h_{t-1} = \mathrm{diag}(\tanh'(a_t))\, U`, so (Pascanu, Mikolov &
  Bengio 2013, §2.1)

  .. math:: \lVert \partial h_T / \partial h_t \rVert \le (\gamma \lambda_1)^{T - t},

  with :math:`\lambda_1` the largest singular value of :math:`U` (measured) and
  :math:`\gamma = \sup |\tanh'| = 1`. It is an upper bound. A second, mean-field estimate (not a
  bound, not from Pascanu et al.) replaces both factors by their root mean square:
  :math:`\chi^{1/2} = (\lVert U \rVert_F / \sqrt D)\, \sqrt{\overline{\tanh'(a)^2}}`, with the mean
  over all steps, sequences and units of the forward pass (Poole et al. 2016's :math:`\chi_1`).
* LSTM: :math:`c_t = f_t \odot c_{t-1} + i_t \odot \tilde c_t`, so
  :math:`\partial c_T / \partial c_t = \prod_{k=t+1}^{T} \mathrm{diag}(f_k) + (\text{paths through } h)`.
  If the forget gate sat at its bias, :math:`f_k = \sigma(b_f)`, the first term decays as
  :math:`\sigma(b_f)^{T-t}`: that is the overlaid prediction. Reported beside it: the mean forget
  gate, its geometric mean :math:`\exp \overline{\log f}`, and the fitted rate of the cell path alone,
  :math:`\lVert (\prod_{k>t} f_k) \odot \partial L / \partial c_T \rVert`.

**Fitted decay.** The per-step rate is :math:`\exp(\text{slope})` of a least-squares line through
:math:`\log` (batch mean of :math:`\lVert \partial L / \partial h_t \rVert`) against the lag, over
lags :data:`FIT_LAGS` (away from the loss at lag 0 and from the zero initial state at lag ``T-1``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, when not pip-installed
from lstm_jax.cells import LSTMState, lstm_cell, lstm_gates, rnn_cell  # noqa: E402
from lstm_jax.init import init_lstm, init_rnn  # noqa: E402
from lstm_jax.unroll import scan_cell  # noqa: E402

T = 200  # sequence length; lags 0..T-1
D = 128  # hidden size
M = 128  # input size
B = 64  # sequences
SEED = 0  # default; PRNG fold_in(key(seed), k) with k = 0 inputs, 1 readout, 2 parameters (--seed to change)
FIT_LAGS = (10, 150)  # lags [lo, hi] of the log-linear fit
QUANTILES = (0.1, 0.9)  # the band in the plot and the CSV
#: Simple RNN settings: (recurrent_init, recurrent_scale); input weights fan_in, bias 0.
RNN_SETTINGS = (("scaled_normal", 0.5), ("scaled_normal", 1.0), ("scaled_normal", 1.5), ("orthogonal", 1.0))
#: LSTM forget-gate biases; the rest is init_lstm's default (orthogonal recurrent, fan_in input, b = 0).
FORGET_BIASES = (0.0, 1.0, 3.0)
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------------------------
# The gradient computation (used by the test on a tiny setting).


def perturbed_rnn_step(params, h, z, eps):
    r""":math:`h_t = \tanh(z_t + U h_{t-1}) + \epsilon_t`: the library's tanh cell, then the perturbation."""
    h, _ = rnn_cell("tanh").recur(params, h, z)
    return h + eps


def perturbed_lstm_step(params, carry, z, eps):
    r"""The LSTM step with :math:`\epsilon^c_t` added to :math:`c_t` *before* :math:`h_t = o_t \odot \tanh(c_t)`.

    So ``∂L/∂ε^c_t`` is the total ``dc_t`` of ``docs/maths.md`` §4 (through :math:`c_{t+1}` and through
    :math:`h_t`). Adding ε to the carry after the library's step would give only the first part,
    :math:`f_{t+1} \odot dc_{t+1}`, and ``∂L/∂c_T = 0``. With ε = 0 this is ``lstm_cell().recur``.
    """
    i, f, g, o = lstm_gates(z + carry.h @ params.w_hh.T)
    c = f * carry.c + i * g + eps.c
    return LSTMState(o * jnp.tanh(c) + eps.h, c)


def state_gradients(cell, params, xs_tm, final_loss):
    r"""``∂L/∂h_t`` (RNN), or ``LSTMState(∂L/∂h_t, ∂L/∂c_t)`` (LSTM), for every step ``t = 1..T``.

    Args:
      cell: ``rnn_cell("tanh")`` or ``lstm_cell()``.
      params: the cell's parameters.
      xs_tm: inputs ``(T, *batch, M)``.
      final_loss: ``h_T (*batch, D) -> scalar``.

    Returns:
      Arrays ``(T, *batch, D)``, time-major: entry ``t`` (0-based) is the gradient with respect to the
      state of step ``t + 1``. One ``jax.grad`` with respect to zero perturbations of every step's state.
    """
    step = perturbed_rnn_step if cell.name == "rnn" else perturbed_lstm_step
    zs = cell.project(params, xs_tm)
    carry0 = cell.zeros(params, xs_tm.shape[1:-1])

    def loss(eps):
        def body(carry, inputs):
            return step(params, carry, *inputs), None

        carry, _ = jax.lax.scan(body, carry0, (zs, eps))
        return final_loss(carry if cell.name == "rnn" else carry.h)

    eps0 = jax.tree.map(lambda c: jnp.zeros((xs_tm.shape[0], *c.shape), c.dtype), carry0)
    return jax.grad(loss)(eps0)


def forward_states(cell, params, xs_tm):
    """The carry after every step, ``(T, *batch, D)`` per leaf."""
    zs = cell.project(params, xs_tm)
    _, (carries, _) = scan_cell(cell, params, zs, cell.zeros(params, xs_tm.shape[1:-1]), emit_carry=True)
    return carries


def lstm_forget_gates(params, xs_tm, carries):
    """The forget gate ``f_t`` of every step, ``(T, *batch, D)``, from the stored carries."""
    h_prev = jnp.concatenate([jnp.zeros_like(carries.h[:1]), carries.h[:-1]], axis=0)
    _, f, _, _ = lstm_gates(lstm_cell().project(params, xs_tm) + h_prev @ params.w_hh.T)
    return f


# ----------------------------------------------------------------------------------------------
# Statistics over the batch, against the lag.


def by_lag(grads):
    """Per-sequence norms ``(T, B)`` of time-major gradients, reordered so that row ``k`` is lag ``k``."""
    return np.asarray(jnp.linalg.norm(grads, axis=-1))[::-1]


def summarise(norms):
    """Batch statistics per lag: mean, median, geometric mean and the :data:`QUANTILES` band."""
    return {
        "mean": norms.mean(axis=1),
        "median": np.median(norms, axis=1),
        "geomean": np.exp(np.log(norms).mean(axis=1)),
        "q_lo": np.quantile(norms, QUANTILES[0], axis=1),
        "q_hi": np.quantile(norms, QUANTILES[1], axis=1),
    }


def fitted_rate(curve):
    """Per-step decay ``exp(slope)`` of ``log(curve)`` against the lag over :data:`FIT_LAGS`."""
    lags = np.arange(FIT_LAGS[0], FIT_LAGS[1] + 1)
    slope = np.polyfit(lags, np.log(curve[lags]), 1)[0]
    return float(np.exp(slope))


def slowest_unit_rate(forget):
    """Per sequence, the largest over units of the geometric-mean forget gate over the fit window; batch mean.

    Over long lags ``‖(Π f_k) ⊙ v‖`` is dominated by the unit that forgets slowest, so this, not the
    mean gate, is what the cell path's fitted rate should approach.
    """
    window = np.log(np.asarray(forget))[T - 1 - FIT_LAGS[1] : T - FIT_LAGS[0]]  # the steps at the fit's lags
    return float(np.exp(window.mean(axis=0)).max(axis=-1).mean())


def cell_path_norms(forget, dc_last):
    r"""``‖(Π_{k=t+1}^{T} f_k) ⊙ ∂L/∂c_T‖`` per lag and sequence, ``(T, B)``: the forget-gate path alone."""
    log_f = np.log(np.asarray(forget))[::-1]  # row k: f of step T-k
    # Row k needs the product of f over steps T-k+1..T, i.e. rows 0..k-1: an exclusive cumulative sum.
    log_prod = np.concatenate([np.zeros_like(log_f[:1]), np.cumsum(log_f, axis=0)[:-1]], axis=0)
    return np.linalg.norm(np.exp(log_prod) * np.asarray(dc_last)[None], axis=-1)


# ----------------------------------------------------------------------------------------------
# The two experiments.


def data(seed, dtype):
    """Inputs ``(T, B, M)``, the unit readout ``r`` ``(D,)`` and the parameters' key, all from ``seed``.

    Every setting gets the same parameter key, so the settings differ only in scale or bias."""
    key = jax.random.key(seed)
    xs = jax.random.normal(jax.random.fold_in(key, 0), (T, B, M), dtype)
    r = jax.random.normal(jax.random.fold_in(key, 1), (D,), dtype)
    return xs, r / jnp.linalg.norm(r), jax.random.fold_in(key, 2)


def rnn_label(init, scale):
    return f"{init} g={scale:g}"


def run_rnn(init, scale, xs, r, key):
    """One simple-RNN setting: norms per lag, the Pascanu bound and the mean-field estimate."""
    params = init_rnn(key, M, D, recurrent_init=init, recurrent_scale=scale, dtype=xs.dtype)
    cell = rnn_cell("tanh")
    h = forward_states(cell, params, xs)
    dh = state_gradients(cell, params, xs, lambda h_T: jnp.sum(h_T @ r))
    norms = by_lag(dh)
    stats = summarise(norms)
    u = np.asarray(params.w_hh)
    singular = np.linalg.svd(u, compute_uv=False)
    rms_dtanh = float(np.sqrt(np.mean((1 - np.asarray(h) ** 2) ** 2)))
    rms_gain = float(np.linalg.norm(u) / math.sqrt(D))
    summary = {
        "model": "rnn",
        "setting": rnn_label(init, scale),
        "recurrent_init": init,
        "recurrent_scale": scale,
        "lambda_1": float(singular[0]),
        "spectral_radius": float(np.max(np.abs(np.linalg.eigvals(u)))),
        "gamma": 1.0,
        "predicted_rate_pascanu_bound": float(singular[0]),
        "rms_tanh_prime": rms_dtanh,
        "rms_gain": rms_gain,
        "predicted_rate_mean_field": rms_gain * rms_dtanh,
        "fitted_rate_h": fitted_rate(stats["mean"]),
        "fitted_rate_h_median": fitted_rate(stats["median"]),
        # ‖∂L/∂h_t‖ ≤ ‖∂h_T/∂h_t‖ ‖r‖ ≤ (γλ₁)^lag for every sequence and lag; count the exceptions.
        "bound_violations": int(np.sum(norms > (1 + 1e-9) * singular[0] ** np.arange(T)[:, None])),
        "mean_norm_h_at_lag": {str(k): float(stats["mean"][k]) for k in (0, 50, 100, T - 1)},
    }
    return summary, {"h": stats}


def run_lstm(forget_bias, xs, r, key):
    """One LSTM setting: norms of ∂L/∂h_t and ∂L/∂c_t per lag, σ(b_f), the forget gates, the cell path."""
    params = init_lstm(key, M, D, forget_bias=forget_bias, dtype=xs.dtype)
    cell = lstm_cell()
    carries = forward_states(cell, params, xs)
    grads = state_gradients(cell, params, xs, lambda h_T: jnp.sum(h_T @ r))
    forget = lstm_forget_gates(params, xs, carries)
    stats_h, stats_c = summarise(by_lag(grads.h)), summarise(by_lag(grads.c))
    stats_path = summarise(cell_path_norms(forget, grads.c[-1]))
    f = np.asarray(forget)
    summary = {
        "model": "lstm",
        "setting": f"b_f={forget_bias:g}",
        "forget_bias": forget_bias,
        "predicted_rate_sigmoid_bf": float(jax.nn.sigmoid(forget_bias)),
        "forget_gate_mean": float(f.mean()),
        "forget_gate_geomean": float(np.exp(np.log(f).mean())),
        "forget_gate_geomean_slowest_unit": slowest_unit_rate(f),
        "fitted_rate_cell_path": fitted_rate(stats_path["mean"]),
        "fitted_rate_c": fitted_rate(stats_c["mean"]),
        "fitted_rate_h": fitted_rate(stats_h["mean"]),
        "fitted_rate_c_median": fitted_rate(stats_c["median"]),
        "mean_norm_c_at_lag": {str(k): float(stats_c["mean"][k]) for k in (0, 50, 100, T - 1)},
        "mean_norm_h_at_lag": {str(k): float(stats_h["mean"][k]) for k in (0, 50, 100, T - 1)},
    }
    return summary, {"h": stats_h, "c": stats_c, "cell_path": stats_path}


# ----------------------------------------------------------------------------------------------
# Outputs.


def setup_text(seed):
    return (
        f"T={T}, D={D}, M={M}, batch {B}, seed {seed}, float64; x_t ~ N(0, I), h_0 = c_0 = 0; "
        f"loss L = r·h_T, |r| = 1, at the last step only. "
        f"RNN: tanh, U by scaled_normal N(0, g²/D) or orthogonal, W fan_in, b = 0. "
        f"LSTM: init_lstm default (orthogonal W_hh per gate, fan_in W_ih, b = 0 except b_f). "
        f"Lines: batch mean of norms; bands: {QUANTILES[0]:g}–{QUANTILES[1]:g} quantiles. "
        f"Fits over lags {FIT_LAGS[0]}–{FIT_LAGS[1]}."
    )


def write_csv(path, curves):
    columns = ("mean_norm", "median_norm", "geomean_norm", f"q{QUANTILES[0]:g}_norm", f"q{QUANTILES[1]:g}_norm")
    keys = ("mean", "median", "geomean", "q_lo", "q_hi")
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("model", "setting", "quantity", "lag", *columns))
        for (model, setting), quantities in curves.items():
            for quantity, stats in quantities.items():
                for lag in range(T):
                    writer.writerow(
                        (model, setting, f"dL/d{quantity}" if quantity != "cell_path" else quantity, lag)
                        + tuple(f"{stats[k][lag]:.6e}" for k in keys)
                    )


def plot(path, summaries, curves, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lags = np.arange(T)
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.5), dpi=90)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    ax = axes[0]
    for colour, s in zip(colours, (s for s in summaries if s["model"] == "rnn")):
        stats = curves[("rnn", s["setting"])]["h"]
        label = f"{s['setting']}: fit {s['fitted_rate_h']:.3f}/step (mean-field {s['predicted_rate_mean_field']:.3f})"
        ax.plot(lags, stats["mean"], color=colour, label=label)
        ax.fill_between(lags, stats["q_lo"], stats["q_hi"], color=colour, alpha=0.2, lw=0)
        ax.plot(
            lags, s["lambda_1"] ** lags, color=colour, ls="--", lw=1, label=f"bound (γλ₁)^lag, λ₁={s['lambda_1']:.2f}"
        )
    ax.set_yscale("log")
    ax.set_ylim(1e-100, 1e5)
    ax.set_title("simple RNN (tanh): ‖∂L/∂h_t‖; dashed: Pascanu bound", fontsize=10)

    for ax, quantity in zip(axes[1:], ("c", "h")):
        for colour, s in zip(colours, (s for s in summaries if s["model"] == "lstm")):
            stats = curves[("lstm", s["setting"])][quantity]
            rate = s[f"fitted_rate_{quantity}"]
            ax.plot(lags, stats["mean"], color=colour, label=f"{s['setting']}: fit {rate:.3f}/step")
            ax.fill_between(lags, stats["q_lo"], stats["q_hi"], color=colour, alpha=0.2, lw=0)
            sigma = s["predicted_rate_sigmoid_bf"]
            ax.plot(
                lags,
                stats["mean"][0] * sigma**lags,
                color=colour,
                ls="--",
                lw=1,
                label=f"σ(b_f)^lag, σ(b_f)={sigma:.3f}",
            )
            if quantity == "c":
                cell_path = curves[("lstm", s["setting"])]["cell_path"]["mean"]
                ax.plot(
                    lags,
                    cell_path,
                    color=colour,
                    ls=":",
                    lw=1.5,
                    label=f"Π f_k path only: {s['fitted_rate_cell_path']:.3f}",
                )
        ax.set_yscale("log")
        ax.set_ylim(1e-70, 1e3)
        note = "dashed: σ(b_f)^lag; dotted: forget-gate path alone" if quantity == "c" else "dashed: σ(b_f)^lag"
        ax.set_title(f"LSTM: ‖∂L/∂{quantity}_t‖; {note}", fontsize=10)

    for ax in axes:
        ax.set_xlabel("lag T − t")
        ax.legend(fontsize=6.5, loc="lower left", framealpha=0.85)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gradient norm (batch mean)")
    fig.suptitle("Gradient flow at initialisation: how much of a last-step loss reaches step t", fontsize=11)
    fig.text(0.5, 0.01, setup_text(seed), ha="center", va="bottom", fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)


def markdown_table(summaries):
    """The README's tables, from the JSON's summaries."""
    lines = [
        "| RNN setting | λ₁(U) | Pascanu bound γλ₁ | mean-field est. | fitted rate ‖∂L/∂h‖ (mean) | (median) |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        if s["model"] == "rnn":
            lines.append(
                f"| {s['setting']} | {s['lambda_1']:.3f} | {s['predicted_rate_pascanu_bound']:.3f} "
                f"| {s['predicted_rate_mean_field']:.3f} | {s['fitted_rate_h']:.3f} | {s['fitted_rate_h_median']:.3f} |"
            )
    lines += [
        "",
        "| LSTM setting | predicted σ(b_f) | mean f | geometric mean f | slowest unit's geo. mean f "
        "| fitted cell path Π f | fitted ‖∂L/∂c‖ (mean) | (median) | fitted ‖∂L/∂h‖ (mean) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        if s["model"] == "lstm":
            lines.append(
                f"| {s['setting']} | {s['predicted_rate_sigmoid_bf']:.3f} | {s['forget_gate_mean']:.3f} "
                f"| {s['forget_gate_geomean']:.3f} | {s['forget_gate_geomean_slowest_unit']:.3f} "
                f"| {s['fitted_rate_cell_path']:.3f} | {s['fitted_rate_c']:.3f} "
                f"| {s['fitted_rate_c_median']:.3f} | {s['fitted_rate_h']:.3f} |"
            )
    return "\n".join(lines)


def run(seed, out):
    """Every setting; writes ``gradient_flow.{json,csv,png}`` under ``out`` and prints the table."""
    start = time.perf_counter()
    summaries, curves = [], {}
    with jax.enable_x64(True):
        xs, r, key = data(seed, jnp.float64)
        for init, scale in RNN_SETTINGS:
            summary, curve = run_rnn(init, scale, xs, r, key)
            summaries.append(summary)
            curves[("rnn", summary["setting"])] = curve
        for forget_bias in FORGET_BIASES:
            summary, curve = run_lstm(forget_bias, xs, r, key)
            summaries.append(summary)
            curves[("lstm", summary["setting"])] = curve
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "T": T,
        "D": D,
        "M": M,
        "B": B,
        "seed": seed,
        "dtype": "float64",
        "fit_lags": list(FIT_LAGS),
        "quantiles": list(QUANTILES),
        "loss": "L = r . h_T per sequence, r ~ N(0, I/D) normalised to |r| = 1",
        "rnn": "tanh; recurrent_init/recurrent_scale per setting; input_init fan_in (scale 1); b = 0",
        "lstm": "init_lstm defaults (orthogonal recurrent per gate, fan_in input, biases 0) with forget_bias per setting",
        "jax": jax.__version__,
    }
    (out / "gradient_flow.json").write_text(json.dumps({"config": config, "results": summaries}, indent=2) + "\n")
    write_csv(out / "gradient_flow.csv", curves)
    plot(out / "gradient_flow.png", summaries, curves, seed)
    print(markdown_table(summaries))
    print(f"\nwall time {time.perf_counter() - start:.1f} s; outputs in {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="print the Markdown table from OUT/gradient_flow.json")
    parser.add_argument("--seed", type=int, default=SEED, help=f"PRNG seed (default {SEED})")
    parser.add_argument("--out", type=Path, default=RESULTS, help="output folder (default experiments/results)")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown_table(json.loads((args.out / "gradient_flow.json").read_text())["results"]))
    else:
        run(args.seed, args.out)


if __name__ == "__main__":
    sys.exit(main())
