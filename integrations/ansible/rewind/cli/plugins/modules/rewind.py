#!/usr/bin/python
# Copyright: rewind maintainers
# Apache License 2.0 (see the repository's LICENSE)
"""Ansible module `rewind.cli.rewind`: one rewind command on the target host.

It is a thin layer over the CLI's contract: it runs `rewind ... --json`,
parses what rewind printed, and maps rewind's exit codes to Ansible's
`changed` and `failed`. Everything else (the sandbox, the store, locks,
fallbacks) is rewind's own.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rewind
short_description: Guarded deploys, backups and rollbacks with rewind
version_added: "0.1.0"
description:
  - Runs one C(rewind) command on the target host and returns what rewind
    recorded (the run id, its status, each step) from its C(--json) output.
  - C(guard) backs up, runs the deploy command, checks health and rolls back
    by itself when the deploy is unhealthy; the task then fails with
    O(command=guard) and RV(outcome=rolled-back), so that C(serial) and
    C(max_fail_percentage) stop a rolling deploy.
  - C(rollback) returns the host to a backup, to the one a fleet-wide deploy
    took (O(deploy_id)), or to the newest.
  - C(fleet_status) reads the store the fleet shares (C(rewind fleet status),
    with C(store.fleet = true)) and returns every host's newest backup, last
    run, interrupted runs, leases and verification problems. Run it once (C(run_once)); the
    task fails when a host needs attention, naming each and why.
  - In check mode nothing changes. C(guard) and C(backup) run C(rewind check)
    (config, pins, grants, the rollback preflight); C(rollback) runs
    C(rewind rollback --dry-run) (the plan, verified artifacts, each plugin's
    dry run). C(status), C(check) and
    C(fleet_status) only read, so they run as usual.
  - Exit codes are rewind's (C(rewind --help)); C(changed) is true when
    rewind changed the host (a backup was recorded, a deploy or a rollback ran).
options:
  command:
    description: The rewind command to run.
    type: str
    required: true
    choices: [guard, backup, rollback, status, check, fleet_status]
  config:
    description: The rewind.toml to use (C(--config)); default rewind's own
      (C(./rewind.toml) or C($REWIND_CONFIG)).
    type: path
  binary:
    description: The rewind executable.
    type: path
    default: rewind
  deploy:
    description: With O(command=guard), the deploy command and its arguments,
      run after the backup (C(rewind guard -- DEPLOY...)).
    type: list
    elements: str
  deploy_id:
    description:
      - A fleet-wide deploy id (C(--deploy-id)). With C(guard) and C(backup) it
        tags the runs; with C(rollback) it selects the backup that deploy took
        on this host.
    type: str
  to:
    description: With O(command=rollback), the backup run to restore (an id or
      a unique prefix). Mutually exclusive with O(deploy_id).
    type: str
  label:
    description: With O(command=backup), a label recorded with the run.
    type: str
  chain:
    description: A named chain from C([chains.named]) for C(backup) or C(rollback).
    type: str
  only:
    description: With O(command=rollback), only these instances of the chain.
    type: list
    elements: str
  quick:
    description: With O(command=rollback), skip the safety backup.
    type: bool
    default: false
  no_rollback:
    description: With O(command=guard), never roll back automatically.
    type: bool
    default: false
  verify:
    description: With O(command=fleet_status), also download and re-hash
      every blob of every host (C(--verify)); without it each host's hash
      chain is checked and that every blob is present.
    type: bool
    default: false
  lock_wait:
    description: Wait this long for a store lock another run holds
      (C(--lock-wait), e.g. C(5m)) instead of failing at once.
    type: str
notes:
  - Supports check mode.
  - Runs C(rewind) on the target, which must have it installed with its
    plugins and rewind.toml; hosts sharing one store are namespaced by rewind.
author:
  - rewind maintainers
"""

EXAMPLES = r"""
- name: Rolling guarded deploy, two hosts at a time
  hosts: web
  serial: 2
  max_fail_percentage: 0
  tasks:
    - name: Deploy v2.4.0 under rewind's guard
      rewind.cli.rewind:
        command: guard
        config: /srv/shop/rewind.toml
        deploy_id: "{{ deploy_id }}"
        deploy: [/srv/shop/deploy.sh, v2.4.0]

- name: Fleet-wide rollback to the state before one deploy
  hosts: web
  tasks:
    - rewind.cli.rewind:
        command: rollback
        config: /srv/shop/rewind.toml
        deploy_id: "{{ deploy_id }}"

- name: One view of the fleet, from the shared store
  hosts: web
  tasks:
    - rewind.cli.rewind:
        command: fleet_status
        config: /srv/shop/rewind.toml
      run_once: true

- name: What would a rollback do? (changes nothing)
  hosts: web
  check_mode: true
  tasks:
    - rewind.cli.rewind:
        command: rollback
        config: /srv/shop/rewind.toml
"""

RETURN = r"""
rc:
  description: rewind's exit code (0 ok, 1 failed, 2 usage or config error,
    3 guard rolled back, 4 rollback failed, 5 store lock busy).
  returned: always
  type: int
outcome:
  description: With O(command=guard), how the deploy ended (C(deployed),
    C(rolled-back), C(rollback-failed), C(deploy-failed), C(backup-failed)).
  returned: when command is guard and not in check mode
  type: str
run_id:
  description: The id of the run rewind recorded (guard, backup or rollback).
  returned: when a run was recorded
  type: str
run:
  description: A summary of the recorded run's manifest.
  returned: when a run was recorded
  type: dict
  contains:
    id: {description: The run id., type: str}
    kind: {description: backup, rollback or guard., type: str}
    status: {description: succeeded, failed, interrupted., type: str}
    deploy_id: {description: The fleet-wide deploy id, if any., type: str}
    source_run: {description: Rollback, the backup restored., type: str}
    error: {description: Why it failed, if it did., type: str}
    steps:
      description: Each step as C(instance), C(hook), C(status), C(fallback_for).
      type: list
      elements: dict
attention:
  description: With O(command=fleet_status), the hosts that need attention,
    each with why (an interrupted run, an expired lease, a verification
    problem, a last run that failed); empty when none does. The whole
    report (every host) is in RV(result).
  returned: when command is fleet_status
  type: dict
result:
  description: Everything rewind printed with C(--json), parsed.
  returned: when rewind printed JSON
  type: dict
stderr:
  description: rewind's timeline and messages (the deploy command's output
    too, for C(guard)).
  returned: always
  type: str
"""

import json

from ansible.module_utils.basic import AnsibleModule

# The options, as DOCUMENTATION describes them (the collection's test checks
# that the two agree).
ARGUMENT_SPEC = dict(
    command=dict(type="str", required=True, choices=["guard", "backup", "rollback", "status", "check", "fleet_status"]),
    config=dict(type="path"),
    binary=dict(type="path", default="rewind"),
    deploy=dict(type="list", elements="str"),
    deploy_id=dict(type="str"),
    to=dict(type="str"),
    label=dict(type="str"),
    chain=dict(type="str"),
    only=dict(type="list", elements="str"),
    quick=dict(type="bool", default=False),
    no_rollback=dict(type="bool", default=False),
    verify=dict(type="bool", default=False),
    lock_wait=dict(type="str"),
)

# rewind's exit codes (docs/cli.md): the one table this module follows.
EXIT_OK = 0
EXIT_ROLLED_BACK = 3

RECORDING = ("guard", "backup", "rollback")


def command_line(params, check_mode):
    """The rewind command line for `params`; in check mode, its read-only twin."""
    argv = [params["binary"]]
    if params["config"]:
        argv += ["--config", params["config"]]
    if params["lock_wait"]:
        argv += ["--lock-wait", params["lock_wait"]]
    command = params["command"]
    if check_mode and command in ("guard", "backup"):
        return argv + ["check", "--json"]
    if command == "fleet_status":
        return argv + ["fleet", "status"] + (["--verify"] if params["verify"] else []) + ["--json"]
    argv.append(command)
    if command == "rollback":
        if params["deploy_id"]:
            argv += ["--deploy-id", params["deploy_id"]]
        if params["to"]:
            argv += ["--to", params["to"]]
        if params["chain"]:
            argv += ["--chain", params["chain"]]
        for instance in params["only"] or []:
            argv += ["--only", instance]
        if params["quick"]:
            argv.append("--quick")
        argv.append("--dry-run" if check_mode else "--yes")
    elif command == "backup":
        if params["label"]:
            argv += ["--label", params["label"]]
        if params["chain"]:
            argv += ["--chain", params["chain"]]
        if params["deploy_id"]:
            argv += ["--deploy-id", params["deploy_id"]]
    elif command == "guard":
        if params["deploy_id"]:
            argv += ["--deploy-id", params["deploy_id"]]
        if params["no_rollback"]:
            argv.append("--no-rollback")
    argv.append("--json")
    if command == "guard":
        argv += ["--"] + list(params["deploy"])
    return argv


def run_summary(run):
    """The fields of a manifest a playbook acts on."""
    if not isinstance(run, dict):
        return None
    return {
        "id": run.get("id"),
        "kind": run.get("kind"),
        "status": run.get("status"),
        "deploy_id": run.get("deploy_id"),
        "source_run": run.get("source_run"),
        "error": run.get("error"),
        "steps": [
            {
                "instance": step.get("instance"),
                "hook": step.get("hook"),
                "status": step.get("status"),
                "fallback_for": step.get("fallback_for"),
            }
            for step in run.get("steps", [])
        ],
    }


def recorded_run(command, result):
    """The run rewind recorded, from its --json output."""
    if command == "backup":
        return result
    return result.get("run")


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("to", "deploy_id")],
        required_if=[("command", "guard", ("deploy",))],
        supports_check_mode=True,
    )
    params = module.params
    command = params["command"]
    argv = command_line(params, module.check_mode)
    rc, stdout, stderr = module.run_command(argv)

    out = dict(rc=rc, stderr=stderr, cmd=argv, changed=False)
    try:
        result = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        result = None
    if isinstance(result, dict):
        out["result"] = result
        if not module.check_mode:
            run = run_summary(recorded_run(command, result))
            if run and run.get("id"):
                out["run"] = run
                out["run_id"] = run["id"]
        if command == "guard" and not module.check_mode:
            out["outcome"] = result.get("outcome")
        if command == "fleet_status":
            out["attention"] = attention(result)

    if module.check_mode:
        # Nothing ran; a guard, backup or rollback would change the host.
        out["changed"] = rc == EXIT_OK and command in RECORDING
        if rc != EXIT_OK:
            module.fail_json(msg=failure(command, rc, result, stderr, check=True), **out)
        module.exit_json(**out)

    out["changed"] = command in RECORDING and "run_id" in out
    if rc == EXIT_OK:
        module.exit_json(**out)
    module.fail_json(msg=failure(command, rc, result, stderr), **out)


def attention(report):
    """Host -> why it needs attention, from `rewind fleet status --json`."""
    return {
        host.get("host"): host.get("attention")
        for host in report.get("hosts", [])
        if isinstance(host, dict) and host.get("attention")
    }


def failure(command, rc, result, stderr, check=False):
    """One sentence for a failed task: what happened, in rewind's words."""
    detail = ""
    if command == "fleet_status" and isinstance(result, dict):
        detail = "; ".join("%s: %s" % (host, ", ".join(why)) for host, why in sorted(attention(result).items()))
        what = "hosts need attention" if rc == 1 else None
        if what and detail:
            return "rewind fleet status: %s (exit %d): %s" % (what, rc, detail)
    if isinstance(result, dict):
        run = recorded_run(command, result) or {}
        detail = (run.get("error") if isinstance(run, dict) else None) or ""
        if not detail and result.get("problems"):
            detail = "; ".join(result["problems"])
        if not detail and result.get("findings"):
            detail = "; ".join(
                "%s: %s" % (f.get("subject"), f.get("message"))
                for f in result["findings"]
                if f.get("level") == "error"
            )
    if not detail:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        detail = lines[-1] if lines else "no output"
    what = {
        1: "failed",
        2: "usage or config error",
        3: "the deploy failed and was rolled back",
        4: "the rollback failed too: manual action needed",
        5: "another run holds the store lock",
    }.get(rc, "exited with %d" % rc)
    prefix = "rewind %s (check mode)" % command if check else "rewind %s" % command
    return "%s: %s (exit %d): %s" % (prefix, what, rc, detail)


if __name__ == "__main__":
    main()
