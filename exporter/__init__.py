"""cams-exporter: a Prometheus exporter for Alibaba Cloud CAMS template metrics.

This package's own identity: its version, and what was built (revision, Python version).

The revision is decided when the package is built, not when it runs:
- an image: the Dockerfile's build argument REVISION, set in the image as the environment
  variable CAMS_EXPORTER_REVISION (`docker build --build-arg REVISION=$(git rev-parse HEAD)`);
- a wheel: setup.py writes `exporter/_build_info.py` into the wheel, with the commit of the
  checkout it was built from (or CAMS_EXPORTER_REVISION when set at build time);
- a source checkout (`python -m exporter` in the repository, an editable install): the
  checkout's HEAD, asked of git once, within a second.
Anything else, or any failure on the way, is `unknown`: the exporter never fails to start over it.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

__version__ = "0.1.0"

REVISION_ENV = "CAMS_EXPORTER_REVISION"
UNKNOWN = "unknown"
_COMMIT = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class BuildInfo:
    """The labels of cams_exporter_build_info, and what `--version` prints."""

    version: str
    revision: str
    pythonversion: str

    def version_text(self) -> str:
        """`--version`, in the shape of Prometheus' own."""
        return (
            f"cams-exporter, version {self.version} (revision: {self.revision})\n"
            f"  python version: {self.pythonversion}\n"
        )


def _clean(value: str) -> str | None:
    value = value.strip()
    return value if _COMMIT.fullmatch(value) else None


def _from_wheel() -> str | None:
    try:
        module = import_module("exporter._build_info")
    except ImportError:
        return None
    value = getattr(module, "REVISION", None)
    return _clean(value) if isinstance(value, str) else None


def _from_checkout(package_dir: Path) -> str | None:
    """HEAD of the git checkout this package is imported from, if it is one."""
    root = package_dir.parent
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None  # an installed package (site-packages): never ask git
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=1,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return _clean(proc.stdout) if proc.returncode == 0 else None


def revision(env: dict[str, str] | None = None) -> str:
    """The commit this exporter was built from, or `unknown`."""
    environ = os.environ if env is None else env
    from_env = environ.get(REVISION_ENV, "")
    if from_env.strip():
        return _clean(from_env) or UNKNOWN
    return _from_wheel() or _from_checkout(Path(__file__).resolve().parent) or UNKNOWN


def build_info(env: dict[str, str] | None = None) -> BuildInfo:
    return BuildInfo(__version__, revision(env), platform.python_version())
