r"""The numbers of the sweeps (experiments/sweep.py), computed from the committed results files only.

Every rate is ``k/n`` with a 95% Wilson score interval; every continuous result (final loss, metric) is
the median and range over the seeds. The same functions make the Markdown tables, the sentences of the
READMEs and the config headers, so a rerun that changes a number changes the text: the text lives between
markers, ``<!-- sweep: EXPERIMENT KIND [CONFIG] -->`` … ``<!-- sweep: end -->`` in Markdown and
``# sweep: EXPERIMENT KIND [CONFIG]`` … ``# sweep: end`` in YAML, and :func:`update_docs` rewrites it
(``python experiments/sweep.py EXPERIMENT --docs``); a test checks that every block equals its rendering.

Kinds: ``table`` (the Markdown table), ``summary`` (a paragraph under the table), ``headline`` (one
clause for the top-level README), ``config CONFIG`` (a config file's header line).
"""

from __future__ import annotations

import json
import math
import pathlib
import re
import statistics
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"
#: The files whose ``sweep:`` blocks :func:`update_docs` rewrites.
DOCS = [ROOT / "README.md", ROOT / "experiments" / "README.md", *sorted((ROOT / "configs").glob("*.yaml"))]

#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054
#: A run "diverged" when it stopped on a NaN/inf, or its final eval loss is over this many baselines.
DIVERGED_FACTOR = 10
#: Per task: a run "left the baseline" when its final eval loss is under this fraction of the baseline.
#: Evaluation is noisy: four batches of 64 put the adding problem's MSE of a run predicting 1 anywhere in
#: about 0.13-0.22 (a half is clear of that); the cross-entropies of copy and temporal order move by under 1%
#: at chance.
LEFT_BASELINE = {"adding": 0.5, "copy": 0.95, "temporal_order": 0.95}
#: The experiments' names in the top-level README.
TITLES = {
    "adding": "Adding problem",
    "clipping": "Gradient clipping (tanh RNN, SGD, exploding start)",
    "copy": "Copy memory",
    "gate_init": "Temporal order, initial gate biases",
    "quickstart": "Quickstart (the adding problem, LSTM, T = 100, at most 1500 steps)",
    "temporal_order": "Temporal order",
}
#: Model names in sentences.
CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn": "tanh RNN"}
#: Variants named in sentences by their initial gate bias (experiment gate_init).
VARIANT_NAMES = {"lstm_forget_bias0": "LSTM with forget bias 0", "gru_update_bias1": "GRU with update-gate bias 1"}


# --- Results files -------------------------------------------------------------------------------------


def read_results(experiment: str) -> list[dict]:
    """The experiment's rows, from its committed results file."""
    return json.loads((RESULTS / f"{experiment}.json").read_text())


def write_results(experiment: str, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{experiment}.json").write_text(json.dumps(rows, indent=1) + "\n")


# --- Statistics ----------------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    r"""The Wilson score interval of a proportion with ``k`` successes in ``n`` trials:

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4n^2}}}
              {1 + \frac{z^2}{n}}, \qquad \hat p = k / n.

    Unlike the normal interval it stays inside [0, 1] and is not empty at k = 0 or k = n
    (0/10 gives [0, 0.28]).
    """
    if not (isinstance(n, int) and isinstance(k, int) and n >= 1 and 0 <= k <= n):
        raise ValueError(f"k, n: expected integers with 0 <= k <= n and n >= 1, got {k!r}, {n!r}")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half)


class Rate(NamedTuple):
    """``k`` of ``n`` runs, with the 95% Wilson interval ``(low, high)``."""

    k: int
    n: int
    low: float
    high: float

    def interval(self) -> str:
        """``11–60%``."""
        return f"{100 * self.low:.0f}–{100 * self.high:.0f}%"

    def __str__(self) -> str:
        return f"{self.k}/{self.n} ({self.interval()})"


def rate(rows: list[dict], predicate) -> Rate:
    """How many of ``rows`` satisfy ``predicate``, with its interval."""
    k = sum(bool(predicate(row)) for row in rows)
    return Rate(k, len(rows), *wilson(k, len(rows)))


def spread(values: list[float], digits: str = ".3g") -> str:
    """``median [min–max]`` of the values (one value alone when all are equal to the digits shown)."""
    low, mid, high = (format(v, digits) for v in (min(values), statistics.median(values), max(values)))
    return mid if low == high else f"{mid} [{low}–{high}]"


# --- Rows -------------------------------------------------------------------------------------------


def final_loss(row: dict) -> float:
    return row["final"]["loss"] if row["final"] else float("nan")


def solved(row: dict) -> bool:
    return bool(row["solved"])


def baseline_factor(rows: list[dict]) -> float:
    """The fraction of the baseline under which a run of these rows' task "left the baseline"."""
    return LEFT_BASELINE[rows[0]["task"]["name"]]


def left_baseline(row: dict) -> bool:
    """The final eval loss is under the task's :data:`LEFT_BASELINE` fraction of its baseline."""
    return final_loss(row) < baseline_factor([row]) * row["baseline"]["loss"]


def main_rate(rows: list[dict]):
    """The rate a figure and a headline show: ``(predicate, what it counts)``; "solved", or "left the
    baseline" where no run solved (a rate of 0 everywhere says nothing)."""
    if any(map(solved, rows)):
        return solved, f"solved ({rule(rows)})"
    return left_baseline, f"ended under {baseline_factor(rows):g}× the baseline loss (none solved)"


def nan_step(row: dict) -> int:
    """The step whose update was non-finite (the summary counts the good steps before it)."""
    return row["steps"] + 1


def diverged(row: dict) -> bool:
    """Stopped on a NaN/inf, or ended over DIVERGED_FACTOR baselines."""
    return row["status"] == "non_finite" or final_loss(row) > DIVERGED_FACTOR * row["baseline"]["loss"]


def configs(rows: list[dict]) -> list[str]:
    """The configs of ``rows`` in the order they first appear (the grid's)."""
    return list(dict.fromkeys(r["config"] for r in rows))


def cell_name(rows: list[dict]) -> str:
    """The model of rows of one config, as a sentence names it (``LSTM``, ``tanh RNN``)."""
    cell = rows[0]["model"]["cell"]
    return VARIANT_NAMES.get(rows[0]["config"], CELL_NAMES.get(cell, cell))


def by_config_and_T(rows: list[dict]) -> list[tuple[tuple[str, int], list[dict]]]:
    """The rows grouped by (config, T): one table row per group of seeds, the configs in the order they
    first appear in ``rows`` (the grid's: LSTM, GRU, RNN), T ascending within each."""
    order = {config: k for k, config in enumerate(configs(rows))}
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["task"]["params"]["T"]), []).append(row)
    return sorted(groups.items(), key=lambda item: (order[item[0][0]], item[0][1]))


def over_T_of(rows: list[dict], config: str) -> list[tuple[int, list[dict]]]:
    """One config's rows as ``(T, rows of its seeds)``, T ascending."""
    return [(T, group) for (c, T), group in by_config_and_T(rows) if c == config]


def by_clip_norm(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The clipping rows grouped by their clip_norm override ("none" for null), in the grid's order."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        clip = row["overrides"][0].split("=", 1)[1]
        groups.setdefault("none" if clip == "null" else clip, []).append(row)
    return list(groups.items())


def seed_count(groups: list[tuple]) -> str:
    """``10`` or ``8-10``: the number of seeds behind each of ``(key, rows)`` groups."""
    sizes = sorted({len(g) for _, g in groups})
    return str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"


def seeds_per_group(rows: list[dict], experiment: str) -> str:
    """:func:`seed_count` of the experiment's table rows (per clip_norm, or per config and T)."""
    return seed_count(by_clip_norm(rows) if experiment == "clipping" else by_config_and_T(rows))


def solved_steps(group: list[dict]) -> str:
    """When the solving runs of a group solved: ``median (max)`` of their steps, ``-`` if none did."""
    steps = [r["steps"] for r in group if solved(r)]
    return f"{statistics.median(steps):.0f} ({max(steps)})" if steps else "-"


def rule(rows: list[dict]) -> str:
    """The solved rule without its citation, e.g. ``mse < 0.01``."""
    return rows[0]["solved_rule"].split(" (")[0]


# --- Tables -------------------------------------------------------------------------------------------


def table(experiment: str, published: dict) -> str:
    """The experiment's Markdown table, from its committed results."""
    rows = read_results(experiment)
    return clipping_table(rows, published) if experiment == "clipping" else rate_table(rows, published)


def rate_table(rows: list[dict], published: dict) -> str:
    """Per config and T: solved and left-the-baseline rates with intervals, when the solving runs solved,
    the final eval loss and the task's metric as median [range], wall time."""
    metric = rows[0]["metric_name"]
    factor = baseline_factor(rows)
    show_metric = metric != "mse"  # the adding problem's metric is its loss
    head = ["model", "T", "solved (95% interval)", "solved at step: median (max)"]
    head += [f"loss < {factor:g}x baseline", "final eval loss: median [range]"]
    head += [f"{metric}: median [range]"] * show_metric + ["wall s (total)", "baseline loss", "published"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (config, T), group in by_config_and_T(rows):
        cells = [config, str(T), str(rate(group, solved)), solved_steps(group)]
        cells += [str(rate(group, left_baseline)), spread([final_loss(r) for r in group])]
        cells += [spread([r["final"][metric] for r in group])] * show_metric
        cells += [f"{sum(r['wall_seconds'] for r in group):.0f}", f"{group[0]['baseline']['loss']:.4f}"]
        out.append("| " + " | ".join(cells + [published.get(config, "")]) + " |")
    return "\n".join(out)


def clipping_table(rows: list[dict], published: dict) -> str:
    """Per clip_norm: diverged runs (NaN/inf, or final loss over DIVERGED_FACTOR baselines) with an
    interval, the steps of the non-finite updates, the final losses of the others as median [range]."""
    out = [
        f"| clip_norm | diverged: non-finite or loss > {DIVERGED_FACTOR}x baseline (95% interval) "
        "| stopped on NaN/inf at step | final eval loss of the others: median [range] | baseline | published |",
        "|---|---|---|---|---|---|",
    ]
    for clip, group in by_clip_norm(rows):
        nan_steps = sorted(nan_step(r) for r in group if r["status"] == "non_finite")
        finite = [final_loss(r) for r in group if r["status"] != "non_finite"]
        out.append(
            f"| {clip} | {rate(group, diverged)} | {', '.join(map(str, nan_steps)) or '-'} "
            f"| {spread(finite) if finite else '-'} | {group[0]['baseline']['loss']:.4f} "
            f"| {published.get(group[0]['config'], '')} |"
        )
    return "\n".join(out)


# --- Sentences ----------------------------------------------------------------------------------------


def rates_over_T(rows: list[dict], config: str, predicate) -> str:
    """``10/10 (72–100%) at T = 20, 6/10 (31–83%) at T = 100``."""
    return ", ".join(f"{rate(group, predicate)} at T = {T}" for T, group in over_T_of(rows, config))


def split_groups(rows: list[dict]) -> list[tuple[tuple[str, int], list[dict]]]:
    """The groups where some runs solved and some did not."""
    return [(key, g) for key, g in by_config_and_T(rows) if 0 < sum(map(solved, g)) < len(g)]


def bimodality(rows: list[dict]) -> str:
    """What the runs of the split groups did: by which step the solved ones solved, and whether the unsolved
    ones stayed at the baseline (all or nothing)."""
    split = split_groups(rows)
    if not any(map(solved, rows)):
        return f"No run solved within {max(r['steps'] for r in rows)} steps."
    if not split:
        return "No setting split: in each, every seed solved or none did."
    unsolved = [r for _, g in split for r in g if not solved(r)]
    stuck = [r for r in unsolved if not left_baseline(r)]
    where = "; ".join(
        f"{cell_name(g)} {sum(map(solved, g))}/{len(g)} at T = {T}, by step {max(r['steps'] for r in g if solved(r))}"
        for (_, T), g in split
    )
    text = f"Where a setting's seeds split ({where}), "
    if len(stuck) == len(unsolved):
        limit = max(r["steps"] for r in unsolved)
        losses = [final_loss(r) for r in unsolved]
        return text + (
            f"every other run was still at the baseline after {limit} steps (final loss {spread(losses)}, "
            f"baseline {unsolved[0]['baseline']['loss']:.4g}): all or nothing."
        )
    return text + (
        f"of the {len(unsolved)} other runs, {len(unsolved) - len(stuck)} left the baseline without "
        f"solving and {len(stuck)} stayed at it: not all or nothing."
    )


def summary(experiment: str) -> str:
    """The paragraph under the experiment's table: every rate and range of it, in words."""
    rows = read_results(experiment)
    if experiment == "clipping":
        return clipping_summary(rows)
    factor = baseline_factor(rows)
    lines = [
        f"From {seeds_per_group(rows, experiment)} seeds per setting; k/n with its 95% Wilson interval; solved: "
        f"{rule(rows)}; left the baseline: final loss under {factor:g}× the baseline loss.",
        "",
    ]
    for config in configs(rows):
        name = cell_name([r for r in rows if r["config"] == config])
        solved_rates = rates_over_T(rows, config, solved)
        left_rates = rates_over_T(rows, config, left_baseline)
        lines.append(f"- {name} solved {solved_rates}.")
        if left_rates != solved_rates:
            lines.append(f"  Left the baseline: {left_rates}.")
    lines += ["", bimodality(rows)]
    return "\n".join(lines)


def clipping_summary(rows: list[dict]) -> str:
    parts = [f"{rate(g, diverged)} with clip_norm {clip}" for clip, g in by_clip_norm(rows)]
    learned = rate(rows, left_baseline)
    return (
        f"From {seeds_per_group(rows, 'clipping')} seeds per setting, runs that diverged (non-finite, or final "
        f"loss over {DIVERGED_FACTOR}× the baseline; k/n with its 95% Wilson interval): " + ", ".join(parts) + ". "
        f"Runs ending under half the baseline, all settings together: {learned}."
    )


def headline(experiment: str) -> str:
    """A bullet of the top-level README: each model's rate at every T, the interval at the longest
    (clipping: the diverged rate per clip_norm). The rate is "solved", or "left the baseline" where no run
    of the experiment solved."""
    rows = read_results(experiment)
    title = TITLES[experiment]
    if experiment == "clipping":
        parts = [f"{rate(g, diverged)} with clip_norm {clip}" for clip, g in by_clip_norm(rows)]
        return f"- **{title}**: k/n seeds diverged (95% interval): " + ", ".join(parts) + "."
    predicate, what = main_rate(rows)
    Ts = sorted({r["task"]["params"]["T"] for r in rows})
    parts = []
    for config in configs(rows):
        rates = [rate(g, predicate) for _, g in over_T_of(rows, config)]
        counts = ", ".join(f"{r.k}/{r.n}" for r in rates)
        parts.append(f"{cell_name([r for r in rows if r['config'] == config])} {counts} ({rates[-1].interval()})")
    lengths = ", ".join(map(str, Ts))
    return (
        f"- **{title}**: k/n seeds {what} at T = {lengths}, with the 95% interval at T = {Ts[-1]}: "
        + "; ".join(parts)
        + "."
    )


def own_run(experiment: str, config: str) -> dict | None:
    """The row of the config file's own command (its seed and settings, no ``--set``), if the sweep ran it."""
    import yaml

    path = ROOT / "configs" / f"{config}.yaml"
    if not path.exists():
        return None
    settings = yaml.safe_load(path.read_text())

    def value(key: str):
        node = settings
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    def matches(row: dict) -> bool:
        return all(value(k) == yaml.safe_load(v) for k, v in (o.split("=", 1) for o in row["overrides"]))

    return next((r for r in read_results(experiment) if r["config"] == config and matches(r)), None)


def outcome(row: dict) -> str:
    """One run's end, e.g. ``solved at step 700 (eval loss 0.0029)``."""
    if row["status"] == "non_finite":
        return f"stopped on a NaN/inf at step {nan_step(row)}"
    loss = f"eval loss {final_loss(row):.3g}"
    metric = row["metric_name"]
    if metric != "mse":
        loss += f", {metric} {row['final'][metric]:.3g}"
    return (
        f"solved at step {row['steps']} ({loss})" if solved(row) else f"not solved after {row['steps']} steps ({loss})"
    )


def config_line(experiment: str, config: str) -> str:
    """A config file's header: what its own command gives, then its sweep's rates for this config."""
    rows = [r for r in read_results(experiment) if r["config"] == config]
    if not rows:
        raise ValueError(f"config: expected one of {configs(read_results(experiment))}, got {config!r}")
    own = own_run(experiment, config)
    text = f"This command: {outcome(own)}. " if own else ""
    text += f"Over {seeds_per_group(rows, experiment)} seeds (python experiments/sweep.py {experiment}): "
    if experiment == "clipping":
        return (
            text
            + "diverged "
            + ", ".join(f"{rate(g, diverged)} with clip_norm {c}" for c, g in by_clip_norm(rows))
            + "."
        )
    solved_rates = rates_over_T(rows, config, solved)
    text += f"solved ({rule(rows)}) {solved_rates}"
    steps = [r["steps"] for r in rows if solved(r)]
    if steps:
        text += f"; the solving runs by step {max(steps)}"
    left = rates_over_T(rows, config, left_baseline)
    if left != solved_rates:
        text += f"; final loss under {baseline_factor(rows):g}x the baseline: {left}"
    return text + "."


# --- Blocks in the documents --------------------------------------------------------------------------

_MARKDOWN = re.compile(r"(?ms)^<!-- sweep: (?P<what>[\w ]+?) -->\n(?P<body>.*?)^<!-- sweep: end -->$")
_YAML = re.compile(r"(?ms)^# sweep: (?P<what>[\w ]+?)\n(?P<body>.*?)^# sweep: end$")


def render(what: str, published: dict) -> str:
    """The text of a block: ``what`` is ``EXPERIMENT KIND [CONFIG]``."""
    words = what.split()
    experiment, kind, rest = words[0], " ".join(words[1:2]), words[2:]
    if kind == "table" and not rest:
        return table(experiment, published)
    if kind == "summary" and not rest:
        return summary(experiment)
    if kind == "headline" and not rest:
        return headline(experiment)
    if kind == "config" and len(rest) == 1:
        return config_line(experiment, rest[0])
    raise ValueError(f"sweep block: expected 'EXPERIMENT table|summary|headline|config CONFIG', got {what!r}")


def blocks(text: str, yaml: bool) -> list[str]:
    """The ``EXPERIMENT KIND [CONFIG]`` of every sweep block in a document, in order."""
    return [match["what"] for match in (_YAML if yaml else _MARKDOWN).finditer(text)]


def rewrite(text: str, yaml: bool, published_of, experiments=None) -> str:
    """``text`` with every sweep block (of ``experiments``, default all) rendered anew from the committed
    results; ``published_of(experiment)`` gives the experiment's citations."""

    def fill(match):
        experiment = match["what"].split()[0]
        if experiments is not None and experiment not in experiments:
            return match[0]
        body = render(match["what"], published_of(experiment))
        if yaml:
            body = "\n".join("# " + line for line in _wrap(body, 100).splitlines())
            return f"# sweep: {match['what']}\n{body}\n# sweep: end"
        return f"<!-- sweep: {match['what']} -->\n{body}\n<!-- sweep: end -->"

    return (_YAML if yaml else _MARKDOWN).sub(fill, text)


def _wrap(text: str, width: int) -> str:
    """Wrap a line of prose at spaces (the YAML headers are comments, read in an editor)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) for line in text.splitlines())


def update_docs(experiments: list[str], published_of, paths=None) -> list[pathlib.Path]:
    """Rewrite the sweep blocks of the given experiments in ``paths`` (default :data:`DOCS`); returns the
    files changed."""
    changed = []
    for path in DOCS if paths is None else paths:
        text = path.read_text()
        yaml = path.suffix in (".yaml", ".yml")
        new = rewrite(text, yaml, published_of, experiments)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed
