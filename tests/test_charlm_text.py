"""The char-LM on the user's own file (``task.params.path``) and on the standard library's source.

Reading a file (exactly, errors naming it), the vocabulary of the training split with ``UNKNOWN``
for unseen characters, the evaluation windows of a long split (``eval_chars``), the default prompt,
config overrides, and ``sample_run`` / ``default_prompt`` on a trained run. The stdlib texts
differ between Python versions: every count here is derived from the text.
"""

import collections
import math
import sysconfig

import jax
import numpy as np
import pytest

from lstm_jax.config import config_from_dict, load_config, save_config
from lstm_jax.tasks import make_task, real

# A made-up text of 600 characters: its last 20% has "Z", "é" and "→", which the first 80% lacks.
TEXT = ("the cat sat on the mat.\n" * 20)[:480] + ("\nZé→ " + "the hat sat.\n" * 10)[:120]


def _write(tmp_path, text=TEXT, name="corpus.txt", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# --- a file of the user's ------------------------------------------------------------------------


def test_a_file_is_read_exactly_and_split_80_20(tmp_path):
    path = _write(tmp_path, "\ufeffline one\r\nline two\n" + TEXT)  # a byte-order mark, Windows line ends
    text = real.charlm_read(path)
    assert text == "line one\r\nline two\n" + TEXT  # the mark dropped, "\r\n" kept
    assert real.charlm_read(str(path)) == text
    train, test = (real.charlm_split(split=s, path=path) for s in real.SPLITS)
    assert train + test == text and len(train) == int(0.8 * len(text))


def test_the_vocabulary_is_the_training_splits_and_unseen_characters_are_unknown(tmp_path):
    path = _write(tmp_path)
    train, test = TEXT[:480], TEXT[480:]
    vocabulary = real.charlm_vocabulary(path=path)
    assert vocabulary == "".join(sorted(set(train))) + real.UNKNOWN
    assert set(test) - set(train) == {"Z", "é", "→"}
    for split in real.SPLITS:
        assert make_task("charlm", T=8, path=str(path), split=split).input_size == len(vocabulary)
    ids = real.charlm_ids(test, vocabulary)
    unknown = len(vocabulary) - 1
    assert [test[k] for k in np.flatnonzero(ids == unknown)] == ["Z", "é", "→"]
    assert "".join(vocabulary[k] for k in ids[ids != unknown]) == "".join(c for c in test if c in train)


def test_unseen_characters_count_in_evaluation_and_in_the_baseline(tmp_path):
    path = _write(tmp_path)
    T = 8
    task = make_task("charlm", T=T, path=str(path), split="test")
    vocabulary, test = real.charlm_vocabulary(path=path), TEXT[480:]
    batch = task.eval_batch
    targets = np.asarray(batch.targets).argmax(-1)[np.asarray(batch.mask)]
    assert len(targets) == len(test) - 1  # every character but the first, unseen ones included
    assert (targets == len(vocabulary) - 1).sum() == 3
    counts = collections.Counter(c if c in vocabulary else real.UNKNOWN for c in test[1:])
    n = sum(counts.values())
    assert task.baseline == pytest.approx(-sum(c / n * math.log(c / n) for c in counts.values()), rel=1e-12)
    assert "3 character(s) unseen in training" in task.baseline_name
    assert "unseen" not in make_task("charlm", T=T, path=str(path)).baseline_name  # the training split has none
    # a model sure of every character, which puts UNKNOWN's weight on class 0, pays 100 nats per unseen one
    t = batch.targets
    confident = 100.0 * t.at[..., 0].add(t[..., -1]).at[..., -1].set(0.0)
    assert float(task.metric(confident, batch)) * math.log(2) == pytest.approx(3 * 100 / n, rel=1e-3)


@pytest.mark.parametrize(
    "path, error",
    [
        ("missing.txt", r"^path: expected a readable UTF-8 text file, got .*missing\.txt: No such file"),
        (".", r"^path: expected a readable UTF-8 text file, got .*: Is a directory"),
        ("latin1.txt", r"^path: expected a UTF-8 text file, got .*latin1\.txt, whose byte 3 is not UTF-8"),
        ("short.txt", r"^path: expected a text whose last 20% holds a window of T \+ 1 = 65 characters, got 4 char"),
        ("long_enough_for_T8.txt", r"^T: expected at most 19 \(.* test part of .*long_enough_for_T8\.txt\), got 64"),
        (123, r"^path: expected the path of a UTF-8 text file, got int 123"),
        ("", r"^path: expected the path of a UTF-8 text file, got str ''"),
    ],
)
def test_a_bad_file_is_an_error_naming_it(tmp_path, monkeypatch, path, error):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, "café", "latin1.txt", encoding="latin-1")
    _write(tmp_path, "abcd", "short.txt")
    _write(tmp_path, "x" * 100, "long_enough_for_T8.txt")
    with pytest.raises(ValueError, match=error):
        make_task("charlm", path=path)


def test_a_path_from_a_config_override(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, name="x.txt")
    config_file = tmp_path / "c.yaml"
    save_config(config_from_dict({"task": {"name": "charlm", "params": {"T": 8}}}), config_file)
    config = load_config(config_file, ["task.params.path=x.txt"])
    assert dict(config.task.params) == {"T": 8, "path": "x.txt"}
    task = make_task(config.task.name, **config.task.params)
    assert task.input_size == len(real.charlm_vocabulary(path="x.txt"))
    with pytest.raises(ValueError, match=r"^text: expected None when path is given"):
        make_task("charlm", **load_config(config_file, ["task.params.path=x.txt", "task.params.text=zen"]).task.params)
    with pytest.raises(ValueError, match=r"^path: expected the path of a UTF-8 text file, got int 7"):
        make_task("charlm", **load_config(config_file, ["task.params.path=7"]).task.params)


# --- the standard library's own source ---------------------------------------------------------


def test_stdlib_source_is_the_sorted_top_level_files_of_this_python():
    files = real.stdlib_source_files()
    assert files and all(f.parent == real.pathlib.Path(sysconfig.get_paths()["stdlib"]) for f in files)
    assert [f.name for f in files] == sorted(f.name for f in files) and all(f.suffix == ".py" for f in files)
    assert {"os.py", "random.py"} <= {f.name for f in files}
    text = real.charlm_text("stdlib_source")
    with open(files[0], encoding="utf-8", newline="") as first, open(files[-1], encoding="utf-8", newline="") as last:
        assert text.startswith(first.read()) and text.endswith(last.read())
    sizes = [len(open(f, encoding="utf-8", newline="").read()) for f in files]
    assert len(text) == sum(sizes) > 2_000_000  # several MB, on every Python
    assert real.charlm_vocabulary("stdlib_source") == "".join(sorted(set(text[: int(0.8 * len(text))]))) + "\ufffd"
    assert real.charlm_prompt("stdlib_source") in text.splitlines()[0]


def test_stdlib_source_is_scored_on_evenly_spread_windows():
    T = 64
    task = make_task("charlm", T=T, text="stdlib_source", split="test")
    test, vocabulary = real.charlm_split("stdlib_source", "test"), real.charlm_vocabulary("stdlib_source")
    batch = task.eval_batch
    windows = 65_536 // T
    assert batch.inputs.shape == (windows, T, len(vocabulary)) and bool(batch.mask.all())
    inputs = np.asarray(batch.inputs).argmax(-1)
    ids = real.charlm_ids(test, vocabulary)
    np.testing.assert_array_equal(inputs[0], ids[:T])  # the first window starts the split
    np.testing.assert_array_equal(np.asarray(batch.targets[-1]).argmax(-1), ids[-T:])  # the last one ends it
    assert f"65,536 of its {len(test) - 1:,} characters scored" in task.baseline_name


# --- evaluation windows of a long split --------------------------------------------------------


@pytest.mark.parametrize("n, T, cap", [(100, 8, 100), (100, 8, 99), (100, 8, 8), (1000, 7, 64), (64, 64, 64)])
def test_eval_windows_count_each_target_at_most_once(n, T, cap):
    starts, mask = real._eval_windows(n, T, cap)
    assert mask.shape == (len(starts), T) and starts[0] == 0
    assert starts[-1] == n - T or len(starts) == 1  # the last window ends the split
    counted = np.zeros(n, int)
    for start, row in zip(starts, mask):
        counted[start : start + T] += row
    assert counted.max() == 1
    assert counted.sum() == (n if n <= cap else cap // T * T)


def test_eval_chars_caps_the_evaluation_batch(tmp_path):
    path = _write(tmp_path)
    T, cap = 8, 40  # the 119 targets of the test part are more than 40: 5 whole windows
    task = make_task("charlm", T=T, path=str(path), split="test", eval_chars=cap)
    batch = task.eval_batch
    assert batch.inputs.shape[:2] == (cap // T, T) and bool(batch.mask.all())
    vocabulary = real.charlm_vocabulary(path=path)
    ids = real.charlm_ids(TEXT[480:], vocabulary)
    starts, _ = real._eval_windows(len(ids) - 1, T, cap)
    np.testing.assert_array_equal(np.asarray(batch.inputs).argmax(-1), ids[starts[:, None] + np.arange(T)])
    counts = np.bincount(np.asarray(batch.targets).argmax(-1).ravel())
    p = counts[counts > 0] / counts.sum()
    assert task.baseline == pytest.approx(-np.sum(p * np.log(p)), rel=1e-12)  # the unigram of what is scored
    whole = make_task("charlm", T=T, path=str(path), split="test", eval_chars=119)
    assert int(whole.eval_batch.mask.sum()) == 119


# --- charlm_ids and the prompt -----------------------------------------------------------------


def test_charlm_ids_maps_characters_and_rejects_other_vocabularies():
    vocabulary = "ab" + real.UNKNOWN
    np.testing.assert_array_equal(real.charlm_ids("abzba" + real.UNKNOWN, vocabulary), [0, 1, 2, 1, 0, 2])
    assert real.charlm_ids("", vocabulary).shape == (0,) and real.charlm_ids("a", vocabulary).dtype == np.int32
    np.testing.assert_array_equal(real.charlm_ids("xy", real.UNKNOWN), [0, 0])
    for bad in ("ab", "ba" + real.UNKNOWN, "aab" + real.UNKNOWN, 3):
        with pytest.raises(ValueError, match="^vocabulary: expected sorted distinct characters followed by"):
            real.charlm_ids("a", bad)
    with pytest.raises(ValueError, match="^chars: expected a string, got list"):
        real.charlm_ids(["a"], vocabulary)


@pytest.mark.parametrize(
    "text, prompt",
    [
        ("first line\nsecond line\n" * 10, "first line"),
        ("\n\nafter two blank lines" * 10, "\n"),
        ("a long first line that has more than forty characters in it\n" * 5, "a long first line that has more than "),
        ("x" * 100 + "\n", "x" * 40),
    ],
)
def test_the_default_prompt_is_the_start_of_the_training_text(tmp_path, text, prompt):
    path = _write(tmp_path, text)
    assert real.charlm_prompt(path=path) == prompt
    assert set(prompt) <= set(real.charlm_vocabulary(path=path))


def test_the_default_prompts_of_the_built_in_texts():
    assert real.charlm_prompt() == real.charlm_prompt("zen") == "The Zen of Python, by Tim Peters"
    assert real.charlm_prompt("stdlib_docs") == "Command-line parsing library"
    with pytest.raises(ValueError, match="^text: expected one of"):
        real.charlm_prompt("shakespeare")


# --- a trained run: sample_run and default_prompt ----------------------------------------------


@pytest.fixture(scope="module")
def run_on_a_file(tmp_path_factory):
    from lstm_jax.train import fit

    directory = tmp_path_factory.mktemp("charlm_file")
    path = _write(directory)
    config = config_from_dict(
        {
            "task": {"name": "charlm", "params": {"T": 8, "path": str(path)}},
            "model": {"hidden_size": 8},
            "train": {"steps": 4, "batch_size": 4, "eval_every": 4, "checkpoint_every": 4},
        }
    )
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats with int32 counts
        fit(config, directory / "run", progress=False)
    return directory / "run", path


def test_sample_run_reads_the_runs_own_text(run_on_a_file):
    from lstm_jax import evaluate

    run, path = run_on_a_file
    vocabulary = real.charlm_vocabulary(path=path)
    assert evaluate.default_prompt(run) == "the cat sat on the mat."
    text = evaluate.sample_run(run, None, 30, seed=1)
    assert len(text) == 30 and set(text) <= set(vocabulary)
    assert evaluate.sample_run(run, "the cat sat on the mat.", 30, seed=1) == text  # None: the default prompt
    with pytest.raises(ValueError, match=r"^prompt: expected characters of the vocabulary, got 'Zé' outside it"):
        evaluate.sample_run(run, "Zé the", 5)  # characters of the test split only


def test_default_prompt_needs_a_charlm_run_directory(tmp_path):
    from lstm_jax import evaluate

    with pytest.raises(ValueError, match=r"^run directory: expected .*config\.yaml, got no such file"):
        evaluate.default_prompt(tmp_path)
    save_config(config_from_dict({"task": {"name": "adding", "params": {"T": 10}}}), tmp_path / "config.yaml")
    with pytest.raises(ValueError, match=r"^sample: expected a run of the 'charlm' task, got 'adding'"):
        evaluate.default_prompt(tmp_path)


def test_a_moved_file_is_an_error_naming_it_when_the_run_is_sampled(run_on_a_file, tmp_path):
    import shutil

    from lstm_jax import evaluate

    run, path = run_on_a_file
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = (copy / "config.yaml").read_text().replace(str(path), str(tmp_path / "gone.txt"))
    (copy / "config.yaml").write_text(config)
    with pytest.raises(ValueError, match=r"^path: expected a readable UTF-8 text file, got .*gone\.txt"):
        evaluate.sample_run(copy, None, 5)


def test_the_sampler_key_is_the_seed(run_on_a_file):
    from lstm_jax import evaluate

    run, _ = run_on_a_file
    texts = {evaluate.sample_run(run, "the ", 20, seed=seed, temperature=2.0) for seed in range(3)}
    assert len(texts) > 1
