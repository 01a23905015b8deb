"""The install: what is required, what is an extra, and what a missing extra says.

The library and the trainer need jax, optax, flax, numpy, PyYAML, rich and matplotlib; the data
of the sunspots, digits and mnist1d tasks comes with statsmodels, scikit-learn and mnist1d, the ``data`` extra;
TensorBoard files with tensorboardX, the ``tensorboard`` extra; the ``test`` extra brings both,
so that the test suite runs every task.
"""

import pathlib
import re
import subprocess
import sys

import pytest

from lstm_jax.tasks import real

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


@pytest.fixture(scope="module")
def project():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_required_dependencies_are_the_library_and_the_trainer(project):
    required = {_name(r) for r in project["dependencies"]}
    assert required == {"jax", "jaxlib", "optax", "flax", "numpy", "pyyaml", "rich", "matplotlib"}


def test_extras_hold_the_data_packages_tensorboard_and_the_test_tools(project):
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["data"]} == {"statsmodels", "scikit-learn", "mnist1d"}
    assert {_name(r) for r in extras["tensorboard"]} == {"tensorboardx"}
    assert {_name(r) for r in extras["interop"]} == {"keras", "dm-haiku", "equinox", "safetensors"}
    assert {_name(r) for r in extras["test"]} == {"pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel", "lstm_jax", "torch"}
    # the suite tests every task, the TensorBoard writer and every converter against its peer
    assert "lstm_jax[data,tensorboard,interop]" in extras["test"]


def test_torch_is_pinned_to_the_cpu_wheel_of_python_3_11(project):
    """CI's machines carry torch 2.13.0's CPU wheel for Python 3.11 only; an unpinned torch (or one on 3.13)
    would make pip pull the multi-GB CUDA build."""
    (torch,) = [r for r in project["optional-dependencies"]["test"] if _name(r) == "torch"]
    assert torch.replace(" ", "") == "torch==2.13.0;python_version=='3.11'"


def test_a_missing_data_package_names_the_pip_install():
    with pytest.raises(ModuleNotFoundError, match=r"^task digits: needs the no-such-package package, which ships"):
        real._import("lstm_jax_no_such_module", "no-such-package", "digits")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lstm_jax\[data\]' \(or pip install statsmodels\)"):
        real._import("lstm_jax_no_such_module", "statsmodels", "sunspots")


BLOCKED = """
import sys
sys.modules["statsmodels"] = sys.modules["sklearn"] = None  # as if the data extra were not installed
from lstm_jax import cli
from lstm_jax.tasks import make_task
print(make_task("charlm", T=8).input_size > 0, make_task("adding", T=5).input_size)
for name in ("sunspots", "digits"):
    try:
        make_task(name)
    except ModuleNotFoundError as error:
        print(error)
sys.exit(cli.main(["train", sys.argv[1], "--out", sys.argv[2], "--no-progress"]))
"""


def test_without_the_data_extra_only_sunspots_and_digits_fail_with_one_line(tmp_path):
    config = tmp_path / "sunspots.yaml"
    config.write_text("task:\n  name: sunspots\ntrain:\n  steps: 2\n")
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(config), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "True 2", result.stderr
    fix = "ships its data: pip install 'lstm_jax[data]' (or pip install "
    assert lines[1] == f"task sunspots: needs the statsmodels package, which {fix}statsmodels)"
    assert lines[2] == f"task digits: needs the scikit-learn package, which {fix}scikit-learn)"
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"lstm-jax: error: {lines[1]}"]
    assert not (tmp_path / "run").exists()  # nothing half-made
