"""heartbeat: a rewind health check written in Python.

Healthy while the application keeps touching a heartbeat file: the file's
age (now minus its modification time) is at most `max_age_s`. Built into a
WebAssembly component by componentize-py against wit/world.wit, and run by
rewind in the same sandbox, under the same grants, as a plugin in Rust: it
sees the file only when its directory is granted.
"""
import json
import os
import time

from wit_world import exports
from wit_world.imports import log, sandbox, types

PARAMS = [
    types.ParamSpec(
        "file", "The heartbeat file the application touches", True, None, types.ParamKind.STRING
    ),
    types.ParamSpec(
        "max_age_s", "Unhealthy when the file is older than this many seconds", False, "300",
        types.ParamKind.INTEGER,
    ),
]


class Describe(exports.Describe):
    def info(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="heartbeat",
            version="0.1.0",
            summary="Healthy while a heartbeat file is fresh (a plugin in Python)",
            capabilities=types.Capabilities(
                exec=[],
                paths=[
                    types.PathRequest(
                        "<directory of params.file>", False, "read the heartbeat file's age"
                    )
                ],
                env=[],
                http=[],
            ),
            params=PARAMS,
        )


class Health(exports.Health):
    def check(self, ctx: types.HookContext) -> types.HealthReport:
        started = time.monotonic()

        def report(status: types.HealthStatus, detail: str) -> types.HealthReport:
            ms = int((time.monotonic() - started) * 1000)
            return types.HealthReport([types.HealthCheck("heartbeat", status, detail, ms)])

        params = json.loads(ctx.params_json or "{}")
        path = params.get("file")
        if not isinstance(path, str):
            return report(types.HealthStatus.UNHEALTHY, "params.file is required (a path)")
        max_age = int(params.get("max_age_s", 300))
        try:
            age = time.time() - os.stat(path).st_mtime
        except OSError as err:
            # A file outside the grants does not exist for the plugin; the
            # sandbox kept the refusal, with the grant line that allows it.
            denial = sandbox.take_denial()
            if denial is not None:
                return report(
                    types.HealthStatus.UNHEALTHY, f"denied: {denial.attempted}; add {denial.grant}"
                )
            return report(types.HealthStatus.UNHEALTHY, f"{path}: {err.strerror}")
        log.write(log.Level.DEBUG, f"{path} is {age:.0f}s old", [])
        if age > max_age:
            return report(
                types.HealthStatus.UNHEALTHY, f"{path} is {age:.0f}s old (more than {max_age}s)"
            )
        return report(types.HealthStatus.HEALTHY, f"{path} is {age:.0f}s old")
