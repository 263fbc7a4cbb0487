"""The progress display: a rich live view on a terminal, plain lines when stderr is a file or pipe."""

from matrix_core._private.progress import Counters, Progress


def run_progress(mode):
    counters = Counters(total=4)
    progress = Progress(counters, mode)
    for _ in range(4):
        counters.done += 1
        counters.tokens += 10
        progress.update(force=True)
    progress.close()


def test_plain_lines_when_not_a_terminal(capsys):
    run_progress("auto")  # pytest captures stderr: not a TTY
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.splitlines()[-1].startswith("tasks 4/4 (done 4, failed 0")


def test_a_live_view_on_a_terminal(capsys):
    run_progress("bar")
    err = capsys.readouterr().err
    assert "\x1b[" in err and "tasks 4/4 | done 4 | failed 0" in err


def test_off_prints_nothing(capsys):
    run_progress("off")
    assert capsys.readouterr().err == ""
