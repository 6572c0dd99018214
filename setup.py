"""Records the revision in the wheel: build_py writes exporter/_build_info.py into the build.

The commit is CAMS_EXPORTER_REVISION when set (the Dockerfile sets it from its REVISION build
argument: the build context has no .git), else HEAD of the git checkout being built, else the
one an sdist recorded (sdist writes the same file into its tree), else `unknown`. The checkout
itself is never written to. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
RECORDED = HERE / "exporter" / "_build_info.py"


def _revision() -> str:
    value = os.environ.get("CAMS_EXPORTER_REVISION", "").strip()
    if not value:
        try:
            proc = subprocess.run(
                ["git", "-C", str(HERE), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            value = proc.stdout.strip() if proc.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            value = ""
    if not value and RECORDED.is_file():  # an unpacked sdist
        found = re.search(r"REVISION = '([0-9a-f]+)'", RECORDED.read_text())
        value = found.group(1) if found else ""
    return value if re.fullmatch(r"[0-9a-f]{7,64}", value) else "unknown"


def _write(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f'"""Written by setup.py when this package was built."""\n\nREVISION = {_revision()!r}\n'
    )


class BuildPyWithRevision(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install reads the checkout's HEAD at run time
        _write(Path(self.build_lib) / "exporter" / "_build_info.py")


class SdistWithRevision(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write(Path(base_dir) / "exporter" / "_build_info.py")


setup(cmdclass={"build_py": BuildPyWithRevision, "sdist": SdistWithRevision})
