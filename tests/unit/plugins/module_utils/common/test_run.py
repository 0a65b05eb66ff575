"""Runner: the one place that runs commands - argv lists, captured output, the log, env/cwd/stdin/timeout options and
the errors a user sees when a command fails, is missing or hangs."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._errors import CommandError, NetbootError
from ansible_collections.homelab.alpine_netboot.plugins.module_utils.common._run import Runner

PY = sys.executable


def test_argv_is_passed_verbatim_without_a_shell(tmp_path: Path) -> None:
    marker = tmp_path / "not-created"
    runner = Runner()
    proc = runner.run(["printf", "%s|", "a b", "$HOME", f"; touch {marker}", "*"])
    assert proc.returncode == 0
    assert proc.stdout == f"a b|$HOME|; touch {marker}|*|"
    assert not marker.exists()


def test_log_records_each_command_as_a_shell_quoted_line(tmp_path: Path) -> None:
    runner = Runner()
    runner.run(["true"])
    runner.run(["printf", "%s", "two words", tmp_path])  # a Path is accepted as an argument
    assert runner.log == ["true", shlex.join(["printf", "%s", "two words", str(tmp_path)])]
    assert shlex.split(runner.log[1])[-1] == str(tmp_path)


def test_stdout_and_stderr_are_captured_separately() -> None:
    proc = Runner().run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert (proc.stdout, proc.stderr) == ("out\n", "err\n")


def test_undecodable_output_is_replaced_not_fatal() -> None:
    proc = Runner().run([PY, "-c", "import sys; sys.stdout.buffer.write(b'caf\\xe9\\n')"])
    assert proc.stdout == "caf\ufffd\n"


def test_input_bytes_go_to_stdin() -> None:
    proc = Runner().run(["cat"], input_bytes=b"line one\nline two\n")
    assert proc.stdout == "line one\nline two\n"


def test_cwd_option(tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("x")
    proc = Runner().run(["ls"], cwd=str(tmp_path))
    assert proc.stdout.split() == ["here.txt"]


def test_env_adds_to_the_inherited_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETBOOT_INHERITED", "from-parent")
    proc = Runner().run(["sh", "-c", 'echo "$NETBOOT_INHERITED/$NETBOOT_EXTRA/${PATH:+path}"'],
                        env={"NETBOOT_EXTRA": "given"})
    assert proc.stdout == "from-parent/given/path\n"
    assert os.environ.get("NETBOOT_EXTRA") is None  # the caller's environment is not modified


def test_locale_is_c_unless_the_caller_sets_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LC_ALL", raising=False)
    assert Runner().run(["sh", "-c", 'echo "$LC_ALL"']).stdout == "C\n"
    assert Runner().run(["sh", "-c", 'echo "$LC_ALL"'], env={"LC_ALL": "C.UTF-8"}).stdout == "C.UTF-8\n"
    monkeypatch.setenv("LC_ALL", "POSIX")
    assert Runner().run(["sh", "-c", 'echo "$LC_ALL"']).stdout == "POSIX\n"


def test_failure_raises_command_error_with_rc_output_and_the_command() -> None:
    script = "import sys; print('partial output'); print('disk on fire', file=sys.stderr); sys.exit(3)"
    runner = Runner()
    with pytest.raises(CommandError) as err:
        runner.run([PY, "-c", script], what="the frobnicator")
    e = err.value
    assert isinstance(e, NetbootError)
    assert (e.rc, e.stdout, e.stderr) == (3, "partial output\n", "disk on fire\n")
    assert e.argv == [PY, "-c", script]
    assert e.details["rc"] == 3
    msg = str(e)
    assert msg.startswith("the frobnicator failed (exit 3): ")
    assert shlex.join([PY, "-c", script]) in msg
    assert msg.endswith("disk on fire")
    assert runner.log == [shlex.join([PY, "-c", script])]  # a failed command is still reported as run


def test_failure_message_names_the_program_and_falls_back_to_stdout() -> None:
    with pytest.raises(CommandError) as err:
        Runner().run(["sh", "-c", "echo only-on-stdout; exit 1"])
    assert str(err.value).startswith("sh failed (exit 1): sh -c 'echo only-on-stdout; exit 1'\n")
    assert str(err.value).endswith("only-on-stdout")
    assert err.value.stderr == ""


def test_failure_message_keeps_only_the_last_15_lines_of_output() -> None:
    with pytest.raises(CommandError) as err:
        Runner().run(["sh", "-c", "for i in $(seq 1 40); do echo line$i >&2; done; exit 2"])
    tail = str(err.value).splitlines()[1:]
    assert tail == [f"line{i}" for i in range(26, 41)]
    assert err.value.stderr.count("\n") == 40  # the full output stays on the exception


def test_check_false_returns_the_failed_process() -> None:
    proc = Runner().run(["sh", "-c", "echo nope >&2; exit 7"], check=False)
    assert proc.returncode == 7
    assert proc.stderr == "nope\n"


def test_a_missing_program_names_it_and_says_how_to_fix() -> None:
    with pytest.raises(NetbootError) as err:
        Runner().run(["netboot-no-such-tool", "--version"])
    assert not isinstance(err.value, CommandError)
    assert str(err.value) == "cannot run 'netboot-no-such-tool': No such file or directory; install it or check the path"


def test_a_hanging_command_times_out_as_a_command_error() -> None:
    with pytest.raises(CommandError) as err:
        Runner().run(["sleep", "30"], timeout=0.5, what="the slow step")
    assert err.value.rc == -1
    assert str(err.value) == "the slow step timed out after 0.5s: sleep 30"
