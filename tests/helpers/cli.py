"""Running the `addernet` CLI in process, and what a user's mistake must look like."""
from addernet.cli import main


def run_cli(argv, capsys):
    """main(argv) in process, as the console script runs it: (exit status, stdout, stderr)."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors exit
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc, err, *words, status=2):
    """Exit ``status``, one line on stderr starting with the program's name, no traceback, holding ``words``."""
    assert rc == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("addernet")
    for w in words:
        assert w in lines[0], (w, lines[0])
