"""The CLI contract: exit codes, one-line errors on stderr, results on stdout, global options.

Everything goes through ``netiso.cli.main`` - in-process (catching SystemExit) for speed, and
in a subprocess where the real process boundary matters (stdout/stderr split, broken pipe).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netiso.cli import build, main
from netiso.errors import ExitCode

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def run_process(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from netiso.cli import main; main()", *argv],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- help and version -----------------------------------------------------------------------


def test_bare_netiso_prints_help_once_and_exits_0() -> None:
    proc = run_process()
    assert proc.returncode == 0
    assert proc.stdout.count("Usage:") == 1
    assert "render" in proc.stdout


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert out.count("Usage:") == 1


def test_version_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-o", "json", "version")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"version", "bundleVersion", "python"}
    assert data["bundleVersion"] == "v1"
    assert err == ""


def test_output_option_after_the_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "version", "-o", "json")
    assert code == 0
    assert json.loads(out)["version"]
    code, out, _ = run(capsys, "version", "--output=yaml")
    assert code == 0
    assert yaml.safe_load(out)["version"]


def test_global_options_after_the_command_are_clicks_own_parsing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Clustered short options after the command: -v (count) then -o with its value "json".
    code, out, err = run(capsys, "render", "-n", "x", "-vojson")
    assert code == 0
    assert json.loads(out)["kind"] == "List"
    assert "rendered 4 objects" in err  # the -v reached the reporter
    # Both sides at once: counts add up, the later -o wins.
    code, out, err = run(capsys, "-q", "-o", "yaml", "render", "-n", "x", "-vv", "--output=json")
    assert code == 0
    assert json.loads(out)["kind"] == "List"
    assert "rendered 4 objects" in err  # -q -vv: verbosity 1


def test_a_commands_own_option_values_are_not_taken_for_global_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `-n -v`: "-v" is the value of render's own --namespace (an invalid name), not verbosity.
    code, out, err = run(capsys, "render", "-n", "-v", "-o", "json")
    assert code == 2
    assert out == ""
    assert "-v" in err and "Traceback" not in err
    # Everything after `--` is an argument, never an option.
    code, _, err = run(capsys, "simulate", "-o", "json", "--", "-q")
    assert code == 2
    assert "-q" in err


def test_a_valued_global_option_without_its_value_names_itself(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "render", "-n", "x", "--context")
    assert (code, out) == (2, "")
    assert err == "netiso: error: Option '--context' requires an argument.\n"


def test_click_directly_and_no_typer() -> None:
    """typer >= 0.26 vendors click privately: netiso builds on click itself, never on typer."""
    root = Path(__file__).resolve().parents[2]
    importing = re.compile(r"^\s*(import|from)\s+typer\b", re.MULTILINE)
    offenders = [str(p) for p in (root / "netiso").rglob("*.py") if importing.search(p.read_text())]
    assert offenders == []
    deps = (root / "pyproject.toml").read_text().split("[project.optional-dependencies]")[0]
    assert '"click>=' in deps
    assert "typer" not in deps


# --- exit-code contract ---------------------------------------------------------------------


# The commands that have not landed. A command that lands leaves this list in the same change
# (and its README section says what it does): a crash or a silent exit 0 here is a failure.
NOT_IMPLEMENTED = ("bootstrap", "plan")


@pytest.mark.parametrize("command", NOT_IMPLEMENTED)
def test_unimplemented_commands_exit_2(capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert command in build().commands
    code, out, err = run(capsys, command)
    assert (code, out, err) == (
        ExitCode.USAGE,
        "",
        f"netiso: error: netiso {command}: not implemented yet\n",
    )


def test_readme_lists_exactly_the_unimplemented_commands() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = set(
        re.findall(r"^### netiso (\w+)\n\nNot implemented yet \(exit 2\)\.", readme, re.M)
    )
    assert documented == set(NOT_IMPLEMENTED)


def test_error_classes_map_to_exit_codes() -> None:
    from netiso import errors

    assert errors.OperationFailed("x").exit_code == 1
    assert errors.UsageError("x").exit_code == 2
    assert errors.NotImplementedYet("x").exit_code == 2
    assert errors.VerificationFailed("x").exit_code == 3
    assert errors.PreconditionFailed("x").exit_code == 4
    assert errors.UsageError("bad", hint="do this").one_line() == "bad (do this)"


def test_verbose_error_shows_a_traceback(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    quiet = run_process("render", "-n", "production", "--values", missing)
    assert quiet.returncode == 2
    assert "Traceback" not in quiet.stderr
    loud = run_process("-v", "render", "-n", "production", "--values", missing)
    assert loud.returncode == 2
    assert "Traceback" in loud.stderr
    assert loud.stderr.rstrip().splitlines()[-1] == quiet.stderr.rstrip()


def test_traceback_only_when_v_was_really_passed(tmp_path: Path) -> None:
    # `-f -v`: "-v" is the values file's name, not the global option.
    proc = run_process("render", "-n", "p", "-f", "-v")
    assert proc.returncode == 2
    assert proc.stderr == "netiso: error: --values: -v: no such file\n"
    # -v after the command is the global option (click parses it there): the traceback is wanted.
    loud = run_process("render", "-n", "p", "-f", str(tmp_path / "nope.yaml"), "-v")
    assert loud.returncode == 2
    assert "Traceback" in loud.stderr


def test_verbosity_does_not_leak_between_in_process_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "nope.yaml")
    code, _, err = run(capsys, "-v", "render", "-n", "p", "-f", missing)
    assert code == 2
    assert "Traceback" in err
    code, _, err = run(capsys, "render", "-n", "p", "-f", missing)
    assert code == 2
    assert "Traceback" not in err


@pytest.mark.parametrize("option", ["--kubeconfig", "--context", "-o", "--output"])
def test_trailing_global_option_without_its_value(
    capsys: pytest.CaptureFixture[str], option: str
) -> None:
    code, out, err = run(capsys, "render", "-n", "p", option)
    assert (code, out) == (ExitCode.USAGE, "")
    assert err == f"netiso: error: Option '{option}' requires an argument.\n"


def test_python_dash_m_netiso() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "netiso", "-o", "json", "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bundleVersion"] == "v1"
    bad = subprocess.run(
        [sys.executable, "-m", "netiso", "frobnicate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("netiso: error: No such command")


def _help_on_a_terminal(*argv: str, no_color_env: bool = False) -> str:
    """Run `netiso ... --help` with stdout on a pseudo-terminal and return what it drew."""
    import pty

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERM")
    }
    env.update(TERM="xterm-256color", COLUMNS="100")
    if no_color_env:
        env["NO_COLOR"] = "1"
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from netiso.cli import main; main()", *argv],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode()


def _has_colour(text: str) -> bool:
    """Whether ANSI SGR sequences set a colour (bold or dim alone is not colour: NO_COLOR)."""
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        codes = [int(c) for c in params.split(";") if c]
        if any(30 <= c <= 49 or 90 <= c <= 107 for c in codes):
            return True
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize(
    ("argv", "no_color_env"),
    [
        (("--no-color", "--help"), False),
        (("render", "--help", "--no-color"), False),
        (("--help",), True),
    ],
)
def test_no_color_reaches_the_help(argv: tuple[str, ...], no_color_env: bool) -> None:
    text = _help_on_a_terminal(*argv, no_color_env=no_color_env)
    assert "\r\n" in text  # the terminal's line discipline was there: a real TTY
    assert "Usage" in text
    assert not _has_colour(text), argv


def test_help_does_not_load_the_rich_help_formatter() -> None:
    """rich.markdown/markdown_it (typer's rich help) cost ~0.1 s of `netiso --help`; pydantic
    (typer >= 0.2x) more: none of them may load for help."""
    code = (
        "import sys\n"
        "from netiso.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write(' '.join(m for m in ('typer', 'rich.markdown', 'pydantic')"
        " if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Usage:" in proc.stdout
    assert proc.stderr == ""


# --- bad input: one line on stderr, exit 2, nothing on stdout -----------------------------------

BAD_VALUES = {
    "yaml-syntax": ("namespaces: [a, b\n", "invalid YAML"),
    "unknown-key": ("polices: {}\n", "polices: unknown key (did you mean 'policies'?)"),
    "unknown-nested-key": ("policies: {defaultDenyIngres: true}\n", "defaultDenyIngres"),
    "bad-cidr": ("metadata: {deny: [169.254.169.254/33]}\n", "metadata.deny[0]"),
    "cidr-host-bits": ("metadata: {deny: [169.254.169.254/24]}\n", "host bits"),
    "pod-identity": ("metadata: {deny: [169.254.0.0/16]}\n", "Pod Identity"),
    "port-0": ("appPorts: [{podSelector: {app: w}, ports: [0]}]\n", "appPorts[0].ports[0]"),
    "port-65536": (
        "appPorts: [{podSelector: {app: w}, ports: [{port: 65536}]}]\n",
        "65536 is out of range",
    ),
    "bad-protocol": (
        "appPorts: [{podSelector: {app: w}, ports: [{port: 80, protocol: ICMP}]}]\n",
        "protocol",
    ),
    "empty-pod-selector": ("appPorts: [{podSelector: {}, ports: [80]}]\n", "podSelector"),
    "empty-selector": ("namespaces: {selector: ''}\n", "empty label selector"),
    "bad-selector": ("namespaces: {selector: 'a in (b'}\n", "unbalanced"),
    "include-and-selector": (
        "namespaces: {include: [a], selector: 'x=y'}\n",
        "both include and selector",
    ),
    "not-a-bool": ("policies: {defaultDenyEgress: 'yes please'}\n", "not a boolean"),
    "duplicate-key": ("ipv6: true\nipv6: false\n", "duplicate key 'ipv6'"),
    "duplicate-allow-ns": ("allowFromNamespaces: [mon, mon]\n", "duplicate namespace"),
    "bad-namespace-name": ("allowFromNamespaces: [Mon_itoring]\n", "not a valid namespace name"),
    "root-not-mapping": ("- a\n- b\n", "expected a mapping"),
    "label-not-string": ("dns: {podSelector: {k8s-app: 1}}\n", "quote it"),
    "bad-nodelocal": ("dns: {nodeLocal: [169.254.20.300]}\n", "not a valid IP"),
    "empty-metadata": ("metadata: {deny: []}\n", "policies.denyMetadataEgress"),
    "too-deep": ("x: " + "[" * 5000 + "]" * 5000 + "\n", "nesting too deep"),
    "trailing-newline-name": ('allowFromNamespaces: ["mon\\n"]\n', "not a valid namespace name"),
    "double-hyphen-port": (
        "appPorts: [{podSelector: {app: w}, ports: [web--http]}]\n",
        "'web--http' is not a valid port",
    ),
    "scoped-node-local": ('dns: {nodeLocal: ["fe80::1%eth0"]}\n', "has a scope"),
    "empty-label-key": ("dns: {podSelector: {'': x}}\n", "dns.podSelector: empty label key"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_file(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    text, expected = BAD_VALUES[case]
    code, out, err = run(capsys, "render", "-n", "production", "--values", write(tmp_path, text))
    assert code == ExitCode.USAGE, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert err.startswith("netiso: error: ")
    assert expected in err
    assert "Traceback" not in err


BAD_FLAGS = {
    "missing-file": (["render", "-n", "p", "--values", "/nonexistent/v.yaml"], "no such file"),
    "unknown-provider": (["render", "-n", "p", "--provider", "openstack"], "unknown provider"),
    "duplicate-namespace": (["render", "-n", "p", "-n", "p"], "duplicate namespace 'p'"),
    "system-namespace": (["render", "-n", "kube-system"], "--force"),
    "provider-system-namespace": (
        ["render", "--provider", "gke", "-n", "gmp-public"],
        "gke system namespace",
    ),
    "bad-namespace": (["render", "-n", "Production"], "not a valid namespace name"),
    "no-namespace": (["render"], "render needs the target namespaces"),
    "unknown-option": (["render", "--bogus"], "No such option"),
    "unknown-command": (["frobnicate"], "No such command"),
    "bad-output": (["-o", "xml", "version"], "xml"),
    "values-is-dir": (["render", "-n", "p", "--values", "/"], "is a directory"),
    "trailing-newline-namespace": (["render", "-n", "prod\n"], "not a valid namespace name"),
    "rbac-with-namespace": (["render", "--rbac", "-n", "p"], "--rbac cannot be combined"),
    "rbac-with-values": (["render", "--rbac", "-f", "v.yaml"], "--rbac cannot be combined"),
    "rbac-with-provider": (["render", "-p", "gke", "--rbac"], "--rbac cannot be combined"),
    "rbac-with-force": (["render", "--rbac", "--force"], "--rbac cannot be combined"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_flags(capsys: pytest.CaptureFixture[str], case: str) -> None:
    argv, expected = BAD_FLAGS[case]
    code, out, err = run(capsys, *argv)
    assert code == ExitCode.USAGE, err
    assert out == ""
    assert err.count("\n") == 1, err
    assert expected in err


def test_selector_in_values_is_refused_by_render(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, "render", "--values", write(tmp_path, "namespaces: {selector: 'team=a'}\n")
    )
    assert code == 2
    assert "cannot evaluate the label selector 'team=a'" in err


def test_force_allows_a_system_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "render", "-n", "kube-system", "--force")
    assert code == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(out)} == {"kube-system"}


def test_broken_pipe_is_not_an_error() -> None:
    proc = subprocess.run(
        f"{sys.executable} -c 'from netiso.cli import main; main()' render "
        + " ".join(f"-n ns{i}" for i in range(300))
        + " | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout == "---\napiVer"
    assert "Traceback" not in proc.stderr
    assert "error" not in proc.stderr


# --- the start-up benchmark (bench/bench_startup.py) -----------------------------------------

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_startup.py"


@pytest.mark.parametrize(
    ("runs", "message"), [("0", "0 is not >= 1"), ("x", "'x' is not a number")]
)
def test_bench_startup_refuses_bad_runs(runs: str, message: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--runs", runs],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"bench_startup.py: error: argument --runs: {message}\n"


def test_bench_startup_prints_the_ratio_to_its_anchor() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^ratio \(median\): +[0-9.]+x python -c pass", proc.stdout, re.M)
    assert re.search(r"^netiso --help: .*cpu", proc.stdout, re.M)


# --- output that cannot be written, Ctrl-C ------------------------------------------------------

NETISO = [sys.executable, "-c", "from netiso.cli import main; main()"]


@pytest.mark.parametrize("argv", [("render", "-n", "x"), ("-o", "json", "version"),
                                  ("render", "-n", "x", "-o", "yaml"), ("--help",)])
def test_a_full_stdout_is_one_plain_error_line(argv: tuple[str, ...]) -> None:
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*NETISO, *argv], stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=60, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("netiso: error: cannot write")
    assert proc.stderr.endswith("No space left on device\n")
    assert len(proc.stderr.splitlines()) == 1
    assert "internal error" not in proc.stderr


def test_a_closed_stdout_is_one_plain_error_line() -> None:
    proc = subprocess.run(
        [*NETISO, "render", "-n", "x"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, timeout=60, check=False, preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 1
    assert proc.stderr == "netiso: error: cannot write the result: stdout is closed\n"


def test_ctrl_c_during_a_long_render_exits_130_and_writes_nothing(tmp_path: Path) -> None:
    """The issue's repro: a 2,000-namespace render interrupted must not look like success,
    or `netiso render > b.yaml && kubectl apply -f b.yaml` goes ahead with an empty file."""
    import resource
    import signal
    import time

    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"namespaces": {"include": [f"ns-{i}"
                                                                 for i in range(2000)]}}))
    out = tmp_path / "out.yaml"
    # A whole run first, measured in CPU seconds: the signal goes once the interrupted run has
    # used a third of that, so it lands mid-run however loaded the machine is (wall-clock
    # delays do not: a run that gets the CPU back can finish before a timed signal lands).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with out.open("w") as sink:
        full = subprocess.run([*NETISO, "render", "-f", str(values)], stdout=sink,
                              stderr=subprocess.PIPE, text=True, timeout=300, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    whole = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert full.returncode == 0, full.stderr
    assert out.read_text().count("kind: NetworkPolicy") == 8000

    tick = os.sysconf("SC_CLK_TCK")
    with out.open("w") as sink:
        proc = subprocess.Popen([*NETISO, "render", "-f", str(values)], stdout=sink,
                                stderr=subprocess.PIPE, text=True)
        while True:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            if used >= whole / 3:
                break
            assert proc.poll() is None, "the render ended before the signal"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == "netiso: interrupted"
    assert "Traceback" not in err
    # Nothing, or an incomplete stream: never the whole bundle with exit 130.
    assert out.read_text().count("kind: NetworkPolicy") < 8000
