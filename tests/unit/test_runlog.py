import io
import logging
import os
import warnings
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.progress import Progress
from pipelines.runlog import library_output_to, terminal


def test_library_output_goes_to_the_log_and_the_commands_own_lines_to_the_terminal(tmp_path: Path, capsys) -> None:
    log = tmp_path / "logs" / "driftpilot.log"
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    with library_output_to(log):
        assert os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"
        warnings.warn("Overriding the parameters from Reference Dataset.", UserWarning, stacklevel=1)
        library = logging.getLogger("a_library")
        library.addHandler(logging.StreamHandler())  # made while the command runs, as MLflow's is
        library.warning("Downloading artifacts")
        print("the command's own line")
        print("the command's own error", file=terminal())
    captured = capsys.readouterr()
    assert captured.out == "the command's own line\n" and captured.err == "the command's own error\n"
    text = log.read_text()
    assert "Overriding the parameters" in text and "Downloading artifacts" in text
    assert os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR") == before
    # After the command, the handler made during it writes to stderr again, not to a closed file.
    library.warning("after the command")
    assert "after the command" in capsys.readouterr().err and "after the command" not in log.read_text()
    library.handlers.clear()


def test_a_quiet_command_leaves_no_log_file(tmp_path: Path) -> None:
    log = tmp_path / "driftpilot.log"
    with library_output_to(log):
        print("nothing from the libraries")
    assert not log.exists()


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        (["--log", "given.log", "audit", "verify"], {"DRIFTPILOT_LOG": "env.log"}, "given.log"),
        (["audit", "verify"], {"DRIFTPILOT_LOG": "env.log", "DRIFTPILOT_HOME": "home"}, "env.log"),
        (["audit", "verify"], {"DRIFTPILOT_HOME": "home"}, "home/logs/driftpilot.log"),
        (["demo", "--home", "demo-home"], {"DRIFTPILOT_HOME": "home"}, "demo-home/logs/driftpilot.log"),
        (["audit", "verify"], {}, ".driftpilot/logs/driftpilot.log"),
    ],
)
def test_the_log_is_where_the_option_the_environment_or_the_home_says(argv, environment, expected, monkeypatch) -> None:
    from pipelines.cli import _log_path, _parser

    for name in ("DRIFTPILOT_LOG", "DRIFTPILOT_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert _log_path(_parser().parse_args(argv)) == Path(expected)


def test_a_failing_command_says_why_on_stderr(tmp_path: Path, capsys) -> None:
    argv = ["--log", str(tmp_path / "cli.log"), "drift", "--reference", str(tmp_path / "absent.csv")]
    assert main([*argv, "--current", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("driftpilot: ") and "absent.csv" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_work_draws_one_bar_on_the_terminal_and_none_in_the_log(tmp_path: Path, monkeypatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    log = tmp_path / "driftpilot.log"
    with library_output_to(log):
        progress = Progress("policies replayed", phases=2)
        for _stream in range(2):
            for done in range(1, 4):
                progress(done, 3)
        assert progress.bar is None  # closed after the last phase's total
    drawn = screen.getvalue()
    assert "policies replayed" in drawn and "3/6" in drawn and "5/6" in drawn
    assert not log.exists()
