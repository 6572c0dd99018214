"""Release metadata: `--version` and cams_exporter_build_info carry version, revision, Python.

The revision is the checkout's HEAD when run from it, what CAMS_EXPORTER_REVISION says when set,
and `unknown` in a copy of the sources outside git. (That a built wheel carries the commit it
was built from is tested in tests/artifacts/test_docker.py, on the wheel the Dockerfile's
command builds.)
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import REVISION_ENV, __version__, build_info
from exporter.cams.instruments import Instruments

ROOT = Path(__file__).resolve().parents[2]


def head() -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return proc.stdout.strip()


def version_output(cwd: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != REVISION_ENV}
    environ.update(PYTHONPATH=str(cwd), **env)
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "--version"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_version_in_the_checkout_names_its_head_and_python() -> None:
    assert version_output(ROOT) == (
        f"cams-exporter, version {__version__} (revision: {head()})\n"
        f"  python version: {platform.python_version()}\n"
    )


def test_the_environment_names_the_revision_of_an_image() -> None:
    out = version_output(ROOT, **{REVISION_ENV: "0123456789abcdef"})
    assert "(revision: 0123456789abcdef)" in out
    # anything that is not a commit is not passed on as one
    assert "(revision: unknown)" in version_output(ROOT, **{REVISION_ENV: "v1; rm -rf /"})


def test_sources_outside_git_say_unknown(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "_build_info.py")
    shutil.copytree(ROOT / "exporter", tmp_path / "exporter", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    out = version_output(tmp_path)
    assert out.startswith(f"cams-exporter, version {__version__} (revision: unknown)\n"), out


def test_build_info_metric_has_the_prometheus_labels() -> None:
    instruments = Instruments(build_info({REVISION_ENV: "abcdef0"}))
    text = generate_latest(instruments.registry).decode()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "cams_exporter_build_info"
    ]
    (sample,) = family.samples
    assert sample.labels == {
        "version": __version__,
        "revision": "abcdef0",
        "pythonversion": platform.python_version(),
    }
    assert sample.value == 1


def test_build_info_of_a_running_exporter_is_this_checkout() -> None:
    """Without an override, the metric carries the same revision as `--version`."""
    build = build_info({})
    assert build.revision == head()
    assert build.version == __version__
