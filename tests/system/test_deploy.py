"""deploy/ is validated offline: yamllint, kubernetes-validate, hadolint, systemd-analyze,
the Redis configuration in a real redis-server, and every command the Dockerfile, the
compose file, the manifests and the units run exists in the CLI with those options.

(No container engine is needed or used: the images and compose file are checked
statically.)
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import redis
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from workers.cli.main import main as recnotify_cli
from workers.config.settings import Settings
from workers.destinations.rules import MAX_TIMEOUT_S
from workers.ops.embedded import find_redis_server, free_port
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import DELIVER_TASK

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
NOT_CORE_KINDS = {"Kustomization", "ScaledObject"}
EXTERNAL_PROGRAMS = {"redis-server", "redis-cli", "pg_isready", "python"}


def yaml_files() -> list[Path]:
    return sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


# -- commands --------------------------------------------------------------------------------
def deploy_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command deploy/ runs."""
    found: list[tuple[str, list[str]]] = []
    cmd = re.search(r"^CMD (\[.*\])$", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert cmd, "the Dockerfile has no exec-form CMD"
    found.append(("Dockerfile CMD", yaml.safe_load(cmd.group(1))))
    for name, service in compose()["services"].items():
        if "command" in service:
            found.append((f"compose {name}", list(service["command"])))
        test = service.get("healthcheck", {}).get("test")
        if test:
            assert test[0] == "CMD", f"compose {name}: healthcheck must be exec form, got {test}"
            found.append((f"compose {name} healthcheck", list(test[1:])))
    for name, spec in pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            where = f"k8s {name}/{container['name']}"
            found.append((where, [*container.get("command", []), *container.get("args", [])]))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "exec" in container.get(probe, {}):
                    found.append((f"{where} {probe}", container[probe]["exec"]["command"]))
    for unit in sorted(SYSTEMD.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart=").replace("%H", "host")
                                   .replace("%i", "1"))
                found.append((f"systemd {unit.name}", argv))
    return found


def check_click(command: click.Command, argv: list[str], where: str,
                parent: click.Context | None = None) -> None:
    """Parse ``argv`` with the real click command tree (options, types, sub-commands)."""
    ctx = command.make_context(command.name or "recnotify", list(argv), parent=parent)
    if isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"{where}: {argv} names no sub-command of {command.name}"
        _name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None, f"{where}: no sub-command {rest[0]!r}"
        check_click(sub, sub_args, where, ctx)


def check_celery(argv: list[str], where: str) -> None:
    """``celery --app MODULE flower --opt=value``: the app imports, every option exists."""
    from celery.bin.celery import celery as celery_cli
    from flower.options import options as flower_options

    assert argv[:2] == ["--app", "workers.celery_app"], f"{where}: {argv}"
    assert importlib.import_module("workers.celery_app").app.main == "recnotify"
    assert argv[2] == "flower" and "flower" in celery_cli.commands, f"{where}: {argv}"
    for option in argv[3:]:
        name = option.removeprefix("--").partition("=")[0]
        assert option.startswith("--") and name in flower_options, \
            f"{where}: Flower has no option {option!r}"


def check_argv(where: str, argv: list[str]) -> None:
    program = Path(argv[0]).name
    if program == "recnotify":
        check_click(recnotify_cli, argv[1:], where)
    elif program == "celery":
        check_celery(argv[1:], where)
    else:
        assert program in EXTERNAL_PROGRAMS, f"{where}: unexpected program {argv}"


def test_every_deploy_command_exists_in_the_cli_with_its_options() -> None:
    commands = deploy_commands()
    for where, argv in commands:
        check_argv(where, argv)
    ran = {" ".join(argv[:3]) for _w, argv in commands if Path(argv[0]).name == "recnotify"}
    assert {"recnotify worker", "recnotify admin", "recnotify check --self",
            "recnotify db upgrade"} <= {r.replace("/opt/recnotify/bin/", "") for r in ran}


@pytest.mark.parametrize("argv", [["recnotify", "worker", "--bogus"],
                                  ["recnotify", "frobnicate"],
                                  ["recnotify", "worker", "-c", "many"],
                                  ["celery", "--app", "workers.celery_app", "flower",
                                   "--no-such=1"]])
def test_command_check_refuses_what_the_cli_lacks(argv: list[str]) -> None:
    with pytest.raises((click.ClickException, AssertionError)):
        check_argv("sample", argv)


def test_flower_settings_from_the_environment_are_flower_options() -> None:
    from flower.options import options as flower_options

    texts = [p.read_text() for p in [*yaml_files(), SYSTEMD / "recnotify.env"]]
    names = {m.lower() for t in texts for m in re.findall(r"\bFLOWER_([A-Z_]+)", t)}
    assert names == {"basic_auth"}
    assert all(name in flower_options for name in names)


# -- linters and schemas ---------------------------------------------------------------------
def test_yaml_files_pass_yamllint() -> None:
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    problems = [f"{path.relative_to(DEPLOY)}:{p.line}: {p.message}"
                for path in yaml_files() for p in linter.run(path.read_text(), config)]
    assert len(yaml_files()) >= 10
    assert problems == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_pass_kubernetes_validate_strict(version: str) -> None:
    docs = [d for d in k8s_docs() if d["kind"] not in NOT_CORE_KINDS]
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Secret",
                     "Service", "StatefulSet"]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml")
                                    if p.name != "kustomization.yaml")


def test_dockerfile_passes_hadolint_and_runs_as_non_root() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    final_stage = text[text.rindex("\nFROM "):]
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim$", final_stage, re.M)
    user = re.findall(r"^USER (\S+)$", final_stage, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")


def test_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    venv_bin = str(Path(sys.executable).parent)
    for unit in [*SYSTEMD.glob("*.service"), *SYSTEMD.glob("*.target")]:
        text = unit.read_text().replace("/opt/recnotify/bin", venv_bin)
        text = text.replace("/etc/recnotify/recnotify.env", str(SYSTEMD / "recnotify.env"))
        (tmp_path / unit.name.replace("@.", "@1.")).write_text(text)
    units = [str(p) for p in sorted(tmp_path.iterdir())]
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True,
                            env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
                            check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert (tmp_path / "recnotify-worker@1.service").exists()


# -- what the manifests promise --------------------------------------------------------------
def test_every_k8s_container_has_liveness_and_readiness_probes() -> None:
    seen = {}
    for name, spec in pod_specs():
        for container in spec["containers"]:
            assert "livenessProbe" in container and "readinessProbe" in container, \
                f"{name}/{container['name']} lacks a probe"
            seen[name] = container
    worker = seen["recnotify-worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["recnotify", "check", "--self"]
    assert seen["recnotify-admin"]["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert seen["recnotify-flower"]["livenessProbe"]["httpGet"]["path"] == "/healthcheck"


def test_worker_grace_period_outlasts_the_longest_delivery() -> None:
    specs = dict(pod_specs())
    assert specs["recnotify-worker"]["terminationGracePeriodSeconds"] >= MAX_TIMEOUT_S + 30
    assert compose()["services"]["worker"]["stop_grace_period"] == "90s"
    unit = (SYSTEMD / "recnotify-worker@.service").read_text()
    assert "TimeoutStopSec=90" in unit and "KillSignal=SIGTERM" in unit


def test_keda_scales_workers_on_stream_lag_and_delivery_queue_length() -> None:
    docs = k8s_docs()
    config = next(d for d in docs if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "recnotify-config")["data"]
    keys = Settings(key_prefix=config["RECNOTIFY_KEY_PREFIX"]).keys
    scaled = next(d for d in docs if d["kind"] == "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "recnotify-worker"
    assert scaled["spec"]["minReplicaCount"] >= 2
    triggers = {t["type"]: t["metadata"] for t in scaled["spec"]["triggers"]}
    assert triggers["redis-streams"]["stream"] == keys.events == "recnotify:events"
    assert triggers["redis-streams"]["consumerGroup"] == keys.group == "recnotify:workers"
    assert int(triggers["redis-streams"]["lagCount"]) > 0
    assert triggers["redis"]["listName"] == keys.deliver_queue == "recnotify:deliver"
    for metadata in triggers.values():
        assert metadata["addressFromEnv"] in config


def test_delivery_tasks_wait_in_the_list_keda_watches(redis_url: str, key_prefix: str) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, key_prefix=key_prefix)
    app = create_app(settings)
    app.send_task(DELIVER_TASK, args=("e-1", "d-1"), queue="deliver")
    client = redis.Redis.from_url(redis_url)
    assert client.type(settings.keys.deliver_queue) == b"list"
    assert client.llen(settings.keys.deliver_queue) == 1
    app.close()


def _redis_conf_values(conf: str, tmp_path: Path) -> dict[str, str]:
    """Start redis-server with ``conf`` (own port and dir) and read its settings back."""
    path = tmp_path / "redis.conf"
    assert re.search(r"^dir /data$", conf, re.M), "the data directory is /data (the volume)"
    path.write_text(re.sub(r"^dir /data$", f"dir {tmp_path}", conf, flags=re.M))
    port = free_port()
    proc = subprocess.Popen([find_redis_server(), str(path), "--port", str(port), "--bind",
                             "127.0.0.1"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, f"redis-server refused {conf!r}"
                time.sleep(0.1)
        return {k: str(v) for name in ("appendonly", "appendfsync", "maxmemory-policy")
                for k, v in client.config_get(name).items()}
    finally:
        proc.terminate()
        proc.wait(10)


def test_redis_configs_persist_with_aof_and_never_evict(tmp_path: Path) -> None:
    expected = {"appendonly": "yes", "appendfsync": "everysec",
                "maxmemory-policy": "noeviction"}
    compose_conf = (DEPLOY / "redis" / "redis.conf").read_text()
    k8s_conf = next(d for d in k8s_docs() if d.get("metadata", {}).get("name") == "redis-config")
    for index, conf in enumerate([compose_conf, k8s_conf["data"]["redis.conf"]]):
        work = tmp_path / str(index)
        work.mkdir()
        assert _redis_conf_values(conf, work) == expected
    redis_service = compose()["services"]["redis"]
    assert "./redis/redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis_service["volumes"]


def test_compose_runs_n_workers_admin_and_flower_with_health_checks() -> None:
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] == "${RECNOTIFY_WORKERS:-3}"
    for name in ("redis", "postgres", "worker", "admin", "flower"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["admin"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"].startswith(
        "${FLOWER_BASIC_AUTH:?")
