"""The Dockerfile, checked by reading: no Docker engine is needed to run these."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from fnmatch import fnmatch

from tests.deploy.tools import ROOT, known_settings, tool

DOCKERFILE = ROOT / "Dockerfile"

# Environment a Python image legitimately sets that is not ours.
RUNTIME_ENV = {
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def logical_lines(text: str) -> list[str]:
    """Instructions with backslash continuations joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a continuation"
    return lines


def parse() -> tuple[list[tuple[str, str]], list[Stage]]:
    """(instructions before the first FROM, stages)."""
    preamble: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for line in logical_lines(DOCKERFILE.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
        else:
            preamble.append((keyword, args.strip()))
    return preamble, stages


def env_names(args: str) -> list[str]:
    return [token.split("=", 1)[0] for token in shlex.split(args)]


def test_hadolint_has_no_findings() -> None:
    hadolint = tool("hadolint")
    result = subprocess.run(
        [hadolint, "--format", "json", "--no-fail", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    errors = [f for f in findings if f["level"] in ("error", "warning")]
    assert errors == [], json.dumps(errors, indent=2)


def test_python_version_is_a_pinned_arg_shared_by_both_stages() -> None:
    preamble, stages = parse()
    assert ("ARG", "PYTHON_VERSION=3.11") in preamble
    assert len(stages) >= 2
    assert all(stage.base == "python:${PYTHON_VERSION}-slim" for stage in stages)
    builder = stages[0]
    assert builder.name == "builder"
    assert any("pip install" in args for args in builder.all("RUN"))


def test_final_stage_runs_as_non_root_with_only_the_venv() -> None:
    _, stages = parse()
    final = stages[-1]
    users = final.all("USER")
    assert users, "final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users
    assert user.isdigit() and int(user) >= 1000, "use a numeric uid so runAsNonRoot can check it"

    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"], copies
    runs = " ".join(final.all("RUN"))
    for forbidden in ("apt-get", "pip install", "gcc", "build-essential", "curl", "wget"):
        assert forbidden not in runs, forbidden


def test_final_stage_serves_and_probes_port_8000() -> None:
    _, stages = parse()
    final = stages[-1]
    assert final.all("EXPOSE") == ["8000"]
    assert json.loads(final.all("ENTRYPOINT")[-1]) == ["gateway"]
    assert json.loads(final.all("CMD")[-1]) == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert json.loads(final.all("VOLUME")[-1]) == ["/data"]
    (healthcheck,) = final.all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert "http://127.0.0.1:8000/healthz" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def test_env_and_arg_names_are_known() -> None:
    preamble, stages = parse()
    settings = known_settings()
    names: list[str] = []
    for stage in stages:
        for args in stage.all("ENV"):
            names.extend(env_names(args))
    assert "GATEWAY_DATA_DIR" in names
    for name in names:
        if name.startswith("GATEWAY_"):
            assert name in settings, f"{name} is not a setting gateway/settings.py reads"
        else:
            assert name in RUNTIME_ENV, f"unexpected ENV {name}"
    args = [a.split("=", 1)[0] for kw, a in preamble if kw == "ARG"]
    args += [a.split("=", 1)[0] for s in stages for a in s.all("ARG")]
    assert set(args) == {"PYTHON_VERSION"}


def test_data_dir_env_matches_volume_and_owner() -> None:
    _, stages = parse()
    final = stages[-1]
    env = dict(token.split("=", 1) for args in final.all("ENV") for token in shlex.split(args))
    assert env["GATEWAY_DATA_DIR"] == "/data"
    uid = final.all("USER")[-1].split(":")[0]
    assert any(f"chown {uid}:" in run and "/data" in run for run in final.all("RUN"))


def test_copy_sources_exist_and_pass_dockerignore() -> None:
    _, stages = parse()
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in ignore:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch(path, pattern) or fnmatch(path.split("/")[0], pattern):
                keep = negate
        return keep

    for stage in stages:
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} is missing"
                assert included(source), f"COPY source {source} is excluded by .dockerignore"
    for secret_like in (".env", "deploy/.env", "data/secret.key", ".venv", ".git"):
        assert not included(secret_like), f"{secret_like} would be sent to the build"


def test_build_installs_the_console_script_checked() -> None:
    _, stages = parse()
    builder_runs = " ".join(stages[0].all("RUN"))
    assert re.search(r"/opt/venv/bin/gateway --help", builder_runs)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'gateway = "gateway.cli:main"' in pyproject
