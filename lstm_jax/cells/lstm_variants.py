r"""The LSTM's options: a projection (LSTMP), peepholes and layer normalisation, forward and backward step.

:func:`lstm_cell` takes three options, any combination of them, and returns the plain LSTM
(:data:`~lstm_jax.cells.lstm.LSTM_CELL`, parameters :class:`~lstm_jax.cells.LSTMParams`) when all are
off, else one cached :class:`~lstm_jax.cells.Cell` per combination whose parameters are
:class:`LSTMVariantParams` (the options that are off leave their fields ``None``). Write
:math:`z_t = W_{ih} x_t + b` and :math:`a_t = W_{hh} h_{t-1}` (the two pre-activations every cell
has), and :math:`s_t = [s_i; s_f; s_g; s_o]` for what enters the gates:

.. math::
   s_t &= z_t + a_t \quad\text{or, with layer normalisation,}\quad
          s_t = \gamma_z \odot \hat z_t + \gamma_a \odot \hat a_t + \beta \\
   i_t &= \sigma(s_i + p_i \odot c_{t-1}), \quad f_t = \sigma(s_f + p_f \odot c_{t-1}), \quad
          \tilde c_t = \tanh(s_g) \\
   c_t &= f_t \odot c_{t-1} + i_t \odot \tilde c_t, \qquad o_t = \sigma(s_o + p_o \odot c_t) \\
   n_t &= c_t \quad\text{or, with layer normalisation,}\quad n_t = \gamma_c \odot \hat c_t + \beta_c \\
   m_t &= o_t \odot \tanh(n_t), \qquad h_t = m_t \quad\text{or, with a projection,}\quad h_t = W_{hr} m_t

where :math:`\hat x = (x - \mu(x)) / \sqrt{\mathrm{var}(x) + \epsilon}` over the features of one row
(:func:`normalise`, :math:`\epsilon = 10^{-5}`, the biased variance) and the peephole terms are there
only with ``peepholes=True``.

* **Projection** (``proj_size=P``; Sak et al. 2014, PyTorch's ``nn.LSTM(proj_size=P)``): the state
  :math:`h_t` (the output and the operand of :math:`W_{hh}`) has :math:`P` units, the cell state
  :math:`c_t` has :math:`D`; ``w_hh`` is ``(4D, P)`` and ``w_hr`` is PyTorch's ``weight_hr_l0``, ``(P, D)``.
* **Peepholes** (Gers & Schmidhuber 2000): diagonal weights from the cell state to the gates, from
  :math:`c_{t-1}` to :math:`i_t` and :math:`f_t`, from :math:`c_t` to :math:`o_t`.
* **Layer normalisation** (Ba et al. 2016, as haste's ``LayerNormLSTM``): of the input pre-activation,
  of the recurrent one, and of :math:`c_t` before its ``tanh`` (the carried :math:`c_t` is not
  normalised). Ba et al. give each of the first two normalisations a bias as well; only their sum
  with the gates' bias matters, so there is one, :math:`\beta`, as in haste. One departure from
  haste: the loops add ``b`` to :math:`W_{ih} x_t` before any cell sees it (the input projection is
  one GEMM whose gradient :math:`dz_t` serves both :math:`W_{ih}` and ``b``), so here the input
  normalisation is of :math:`z_t = W_{ih} x_t + b`: ``b`` is a shift *before* that normalisation
  (0 at initialisation, where the cell computes haste's function with haste's ``bias`` in
  :math:`\beta`), and :math:`\beta` is the gates' bias (the forget bias lives there).

Each step is a :class:`~lstm_jax.cells.Kernel` with a hand-derived backward step
(:func:`variant_grad_step`), which the fast path and the manual BPTT run; the extras' gradients
(:math:`W_{hr}`, the peepholes, the gains and biases) are formed after the loop from the stacked step
gradients, :math:`\partial L/\partial W_{hr} = \sum_t dh_t m_t^\top` as one GEMM.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lstm_jax import _checks
from lstm_jax.cells._base import Cell, Kernel, StepGrads, add_bias, cell_from_kernel, sigmoid, sum_outer, sum_rows
from lstm_jax.cells.lstm import LSTM_CELL, LSTMState

Array = jax.Array

#: :math:`\epsilon` of every layer normalisation (PyTorch's ``nn.LayerNorm`` default, haste's constant).
LAYER_NORM_EPS = 1e-5


class LSTMVariantParams(NamedTuple):
    r"""Parameters of an LSTM with options, gate blocks (i, f, g, o) as in :class:`~lstm_jax.cells.LSTMParams`.

    The fields of an option that is off are ``None``. ``P`` is ``proj_size`` (``D`` without a projection).
    """

    w_ih: Array  # (4D, M)  W_ih
    w_hh: Array  # (4D, P)  W_hh, acting on h_{t-1} of P units ((4D, D) without a projection)
    b: Array  # (4D,)      in z_t = W_ih x_t + b (with layer_norm: a shift before the input normalisation)
    w_hr: Array | None = None  # (P, D)  projection h_t = W_hr m_t (PyTorch's weight_hr_l0)
    p_i: Array | None = None  # (D,)  peephole c_{t-1} -> input gate
    p_f: Array | None = None  # (D,)  peephole c_{t-1} -> forget gate
    p_o: Array | None = None  # (D,)  peephole c_t -> output gate
    gamma_z: Array | None = None  # (4D,)  gain of the input pre-activation's normalisation
    gamma_a: Array | None = None  # (4D,)  gain of the recurrent pre-activation's normalisation
    beta: Array | None = None  # (4D,)  the gates' bias after the normalisations (b_f = forget bias)
    gamma_c: Array | None = None  # (D,)  gain of the cell state's normalisation
    beta_c: Array | None = None  # (D,)  bias of the cell state's normalisation


#: The fields after ``(w_ih, w_hh, b)`` that each option adds.
OPTION_FIELDS = {
    "proj_size": ("w_hr",),
    "peepholes": ("p_i", "p_f", "p_o"),
    "layer_norm": ("gamma_z", "gamma_a", "beta", "gamma_c", "beta_c"),
}


class LSTMOptions(NamedTuple):
    """The options of :func:`lstm_cell`, checked; hashable (one cached cell per combination)."""

    proj_size: int | None = None
    peepholes: bool = False
    layer_norm: bool = False


class VariantSaved(NamedTuple):
    """What the forward step keeps for the backward step (``None`` where an option is off)."""

    gates: Array  # (*batch, 4D)  [i; f; g; o]
    tanh_n: Array  # (*batch, D)  tanh(n_t)
    z_hat: Array | None = None  # (*batch, 4D)  normalised z_t
    r_z: Array | None = None  # (*batch, 1)   1/sqrt(var(z_t) + eps)
    a_hat: Array | None = None  # (*batch, 4D)  normalised a_t
    r_a: Array | None = None  # (*batch, 1)
    c_hat: Array | None = None  # (*batch, D)   normalised c_t
    r_c: Array | None = None  # (*batch, 1)


class VariantStepGrads(NamedTuple):
    """Per-step gradients the extras need (``StepGrads.extra``); ``None`` where an option is off."""

    dh: Array | None = None  # (*batch, P)  ∂L/∂h_t, for ∂L/∂W_hr = Σ_t dh_t m_tᵀ
    ds: Array | None = None  # (*batch, 4D) ∂L/∂s_t (with layer_norm; else it is dz_t)
    dn: Array | None = None  # (*batch, D)  ∂L/∂n_t (with layer_norm)


def normalise(x: Array) -> tuple[Array, Array]:
    r"""``(x̂, r)``: :math:`\hat x = (x - \mu) r` with :math:`r = 1/\sqrt{\mathrm{var}(x) + \epsilon}` over the last axis."""
    centred = x - x.mean(-1, keepdims=True)
    r = jax.lax.rsqrt((centred * centred).mean(-1, keepdims=True) + LAYER_NORM_EPS)
    return centred * r, r


def normalise_grad(dx_hat: Array, x_hat: Array, r: Array) -> Array:
    r""":math:`\partial L/\partial x` of :math:`\hat x` = :func:`normalise` ``(x)``, given :math:`\partial L/\partial \hat x`.

    .. math:: \frac{\partial L}{\partial x} = r \odot \Big(d\hat x - \overline{d\hat x}
              - \hat x \odot \overline{d\hat x \odot \hat x}\Big)

    where the bar is the mean over the features (the two means are the gradient through :math:`\mu` and
    through the variance).
    """
    mean = dx_hat.mean(-1, keepdims=True)
    mean_x = (dx_hat * x_hat).mean(-1, keepdims=True)
    return r * (dx_hat - mean - x_hat * mean_x)


def _scale(v: Array, x: Array) -> Array:
    """``v ⊙ x`` for a per-unit vector ``v`` and ``x`` of any leading dims (explicit ranks)."""
    return v.reshape((1,) * (x.ndim - v.ndim) + v.shape) * x


def _split4(x: Array) -> tuple[Array, Array, Array, Array]:
    i, f, g, o = jnp.split(x, 4, axis=-1)
    return i, f, g, o


def variant_step(options: LSTMOptions, a: Array, extras: tuple, carry: LSTMState, z: Array):
    r"""One step from :math:`a_t = W_{hh} h_{t-1}` and :math:`z_t = W_{ih} x_t + b` (module docstring's equations).

    Returns ``(LSTMState(h_t, c_t), VariantSaved)``.
    """
    w_hr, p_i, p_f, p_o, gamma_z, gamma_a, beta, gamma_c, beta_c = extras
    z_hat = r_z = a_hat = r_a = c_hat = r_c = None
    if options.layer_norm:  # s = γ_z ⊙ ẑ + γ_a ⊙ â + β
        z_hat, r_z = normalise(z)
        a_hat, r_a = normalise(a)
        s = add_bias(_scale(gamma_z, z_hat) + _scale(gamma_a, a_hat), beta)
    else:  # s = z + a
        s = z + a
    s_i, s_f, s_g, s_o = _split4(s)
    c_prev = carry.c
    if options.peepholes:  # c_{t-1} -> i, f
        s_i, s_f = s_i + _scale(p_i, c_prev), s_f + _scale(p_f, c_prev)
    i, f, g = sigmoid(s_i), sigmoid(s_f), jnp.tanh(s_g)
    c = f * c_prev + i * g
    if options.peepholes:  # c_t -> o
        s_o = s_o + _scale(p_o, c)
    o = sigmoid(s_o)
    if options.layer_norm:  # n = γ_c ⊙ ĉ + β_c
        c_hat, r_c = normalise(c)
        n = add_bias(_scale(gamma_c, c_hat), beta_c)
    else:
        n = c
    tanh_n = jnp.tanh(n)
    m = o * tanh_n
    h = m @ w_hr.T if options.proj_size is not None else m  # h = W_hr m
    gates = jnp.concatenate([i, f, g, o], axis=-1)
    return LSTMState(h, c), VariantSaved(gates, tanh_n, z_hat, r_z, a_hat, r_a, c_hat, r_c)


def variant_grad_step(
    options: LSTMOptions, extras: tuple, dcarry: LSTMState, carry: LSTMState, carry_prev: LSTMState, saved
):
    r"""One backward step of :func:`variant_step`, derived by hand (``docs/maths.md``; ``notes: maths_variants``).

    ``dcarry`` is ``LSTMState(∂L/∂h_t in total, ∂L/∂c_t from step t+1)``. With :math:`\sigma' = \sigma(1-\sigma)`:

    .. math::
       dm_t &= W_{hr}^\top dh_t \;(\text{or } dh_t), \qquad
       do_t = dm_t \odot \tanh n_t, \qquad dn_t = dm_t \odot o_t \odot (1 - \tanh^2 n_t) \\
       dc_t &\mathrel{+}= \gamma_c\text{-norm}^\top(dn_t) \;(\text{or } dn_t), \qquad
       ds_o = do_t \odot o_t(1-o_t), \qquad dc_t \mathrel{+}= p_o \odot ds_o \\
       ds_i &= dc_t \odot \tilde c_t \odot i_t(1-i_t), \quad ds_f = dc_t \odot c_{t-1} \odot f_t(1-f_t), \quad
       ds_g = dc_t \odot i_t \odot (1-\tilde c_t^2) \\
       dc_{t-1} &= f_t \odot dc_t + p_i \odot ds_i + p_f \odot ds_f, \qquad
       dz_t = \mathrm{norm}^\top(\gamma_z \odot ds_t), \quad da_t = \mathrm{norm}^\top(\gamma_a \odot ds_t)

    where :math:`\mathrm{norm}^\top` is :func:`normalise_grad` (without layer normalisation
    :math:`dz_t = da_t = ds_t`), and the peephole terms are there only with peepholes. Returns
    ``(LSTMState(0, dc_{t-1}), StepGrads(dz_t, da_t, VariantStepGrads))``; the caller adds
    :math:`W_{hh}^\top da_t` to :math:`dh_{t-1}`.
    """
    w_hr, p_i, p_f, p_o, gamma_z, gamma_a, beta, gamma_c, beta_c = extras
    i, f, g, o = _split4(saved.gates)
    dh = dcarry.h
    dm = dh @ w_hr if options.proj_size is not None else dh  # back through h = W_hr m
    do = dm * saved.tanh_n  # back through m = o ⊙ tanh(n)
    dn = dm * o * (1 - saved.tanh_n**2)
    if options.layer_norm:  # back through n = γ_c ⊙ ĉ + β_c
        dc = dcarry.c + normalise_grad(_scale(gamma_c, dn), saved.c_hat, saved.r_c)
    else:
        dc = dcarry.c + dn
    ds_o = do * o * (1 - o)  # back through o = σ(s_o + p_o ⊙ c)
    if options.peepholes:
        dc = dc + _scale(p_o, ds_o)
    ds_i = dc * g * i * (1 - i)  # back through c = f ⊙ c_{t-1} + i ⊙ g, then the activations
    ds_f = dc * carry_prev.c * f * (1 - f)
    ds_g = dc * i * (1 - g * g)
    dc_prev = dc * f
    if options.peepholes:  # c_{t-1} reached i and f through the peepholes
        dc_prev = dc_prev + _scale(p_i, ds_i) + _scale(p_f, ds_f)
    ds = jnp.concatenate([ds_i, ds_f, ds_g, ds_o], axis=-1)
    if options.layer_norm:  # back through s = γ_z ⊙ ẑ + γ_a ⊙ â + β
        dz = normalise_grad(_scale(gamma_z, ds), saved.z_hat, saved.r_z)
        da = normalise_grad(_scale(gamma_a, ds), saved.a_hat, saved.r_a)
    else:
        dz, da = ds, None
    extra = VariantStepGrads(
        dh if options.proj_size is not None else None,
        ds if options.layer_norm else None,
        dn if options.layer_norm else None,
    )
    return LSTMState(jnp.zeros_like(dh), dc_prev), StepGrads(dz, da, extra)


def variant_extra_grads(options: LSTMOptions, extras: tuple, grads: StepGrads, carries, prev, saved) -> tuple:
    r"""The extras' gradients from every step's :class:`StepGrads` (stacked), after the loop.

    .. math::
       \frac{\partial L}{\partial W_{hr}} = \sum_t dh_t m_t^\top, \quad
       \frac{\partial L}{\partial p_{i,f}} = \sum_t ds_{i,f} \odot c_{t-1}, \quad
       \frac{\partial L}{\partial p_o} = \sum_t ds_o \odot c_t, \\
       \frac{\partial L}{\partial \gamma_z} = \sum_t ds_t \odot \hat z_t, \quad
       \frac{\partial L}{\partial \gamma_a} = \sum_t ds_t \odot \hat a_t, \quad
       \frac{\partial L}{\partial \beta} = \sum_t ds_t, \quad
       \frac{\partial L}{\partial \gamma_c} = \sum_t dn_t \odot \hat c_t, \quad
       \frac{\partial L}{\partial \beta_c} = \sum_t dn_t

    (sums over steps and batch entries; :math:`ds_t = dz_t` without layer normalisation).
    """
    out = dict.fromkeys(LSTMVariantParams._fields[3:])
    ds = grads.extra.ds if options.layer_norm else grads.dz
    if options.proj_size is not None:
        m = _split4(saved.gates)[3] * saved.tanh_n  # m_t = o_t ⊙ tanh(n_t)
        out["w_hr"] = sum_outer(grads.extra.dh, m)  # Σ_t dh_t m_tᵀ: one GEMM
    if options.peepholes:
        ds_i, ds_f, _, ds_o = _split4(ds)
        out.update(p_i=sum_rows(ds_i * prev.c), p_f=sum_rows(ds_f * prev.c), p_o=sum_rows(ds_o * carries.c))
    if options.layer_norm:
        dn = grads.extra.dn
        out.update(
            gamma_z=sum_rows(ds * saved.z_hat),
            gamma_a=sum_rows(ds * saved.a_hat),
            beta=sum_rows(ds),
            gamma_c=sum_rows(dn * saved.c_hat),
            beta_c=sum_rows(dn),
        )
    return tuple(out.values())


def _hidden(carry: LSTMState) -> Array:
    return carry.h


def _zeros(params: LSTMVariantParams, batch_shape: tuple[int, ...]) -> LSTMState:
    """Zero ``h`` of ``P`` units (``w_hh.shape[1]``) and zero ``c`` of ``D`` (``w_hh.shape[0] / 4``)."""
    rows, cols = params.w_hh.shape
    return LSTMState(
        jnp.zeros((*batch_shape, cols), params.w_hh.dtype), jnp.zeros((*batch_shape, rows // 4), params.w_hh.dtype)
    )


def _extra_shapes(options: LSTMOptions, D: int) -> dict[str, tuple[int, ...] | None]:
    """``{field: shape}`` of every field after ``(w_ih, w_hh, b)``; ``None`` for the options that are off."""
    shapes = {
        "w_hr": (options.proj_size, D),
        "p_i": (D,),
        "p_f": (D,),
        "p_o": (D,),
        "gamma_z": (4 * D,),
        "gamma_a": (4 * D,),
        "beta": (4 * D,),
        "gamma_c": (D,),
        "beta_c": (D,),
    }
    on = {"proj_size": options.proj_size is not None, "peepholes": options.peepholes, "layer_norm": options.layer_norm}
    off = {name for option, names in OPTION_FIELDS.items() if not on[option] for name in names}
    return {name: None if name in off else shape for name, shape in shapes.items()}


def _name(options: LSTMOptions) -> str:
    """``lstm(proj_size=3, peepholes=True)``: the options that are on (messages name the cell so)."""
    on = [f"{k}={v!r}" for k, v in options._asdict().items() if v != LSTMOptions._field_defaults[k]]
    return f"lstm({', '.join(on)})"


@functools.lru_cache(maxsize=None)
def _variant_cell(options: LSTMOptions) -> Cell:
    """One :class:`Cell` per combination of options: two calls with the same options give the same object
    (functools.partial objects made twice are not equal, and a new Cell would recompile under jit)."""
    kernel = Kernel(
        functools.partial(variant_step, options),
        functools.partial(variant_grad_step, options),
        _hidden,
        functools.partial(variant_extra_grads, options),
    )
    shapes = functools.partial(_extra_shapes, options)
    return cell_from_kernel(_name(options), 4, kernel, _zeros, shapes, proj_size=options.proj_size)


def check_options(proj_size=None, peepholes=False, layer_norm=False) -> LSTMOptions:
    """The LSTM's options, checked: ``proj_size`` ``None`` or an int >= 1, ``peepholes`` and ``layer_norm`` bools."""
    if proj_size is not None:
        if not (_checks.is_int(proj_size) and proj_size >= 1):
            raise ValueError(f"proj_size: expected None or an int >= 1, got {_checks.describe(proj_size)}")
        proj_size = int(proj_size)
    peepholes = _checks.check_bool("peepholes", peepholes)
    layer_norm = _checks.check_bool("layer_norm", layer_norm)
    return LSTMOptions(proj_size, peepholes, layer_norm)


def lstm_cell(proj_size: int | None = None, peepholes: bool = False, layer_norm: bool = False) -> Cell:
    """The LSTM as a :class:`Cell`, with options (module docstring); the same object for the same options.

    Args:
      proj_size: ``None``, or ``P``: the state ``h`` is ``W_hr (o ⊙ tanh c)`` of ``P`` units (PyTorch's
        ``proj_size``; ``init_lstm`` requires ``P < D`` as PyTorch does).
      peepholes: diagonal weights from the cell state to the input, forget and output gates.
      layer_norm: layer normalisation of the input and the recurrent pre-activations and of the cell state.

    With no option this is :data:`~lstm_jax.cells.lstm.LSTM_CELL` (parameters :class:`LSTMParams`);
    otherwise its parameters are :class:`LSTMVariantParams` (:func:`lstm_jax.init.init_lstm` with the
    same options makes them).
    """
    options = check_options(proj_size, peepholes, layer_norm)
    return LSTM_CELL if options == LSTMOptions() else _variant_cell(options)
