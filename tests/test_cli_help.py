"""`val-probing --help` and every subcommand's `--help` render (argparse %-formats help strings: a bare
`%` in one command's HELP once made the top-level help a traceback)."""

from __future__ import annotations

import pytest

from val_probing.cli import COMMANDS, main


def test_the_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - {"eval"}))  # eval's help is lm_eval's (its own test)
def test_each_command_help_renders(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert f"val-probing {name}" in capsys.readouterr().out
