"""Every usage error exits 2 with one line and no traceback; camloc errors exit 2; Ctrl-C 130;
a bug in camloc keeps its traceback."""

from __future__ import annotations

import pytest

from camloc.cli import VERBS, main


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


USAGE = [
    ([], "no command given"),
    (["explain", "--bogus"], "--bogus"),
    (["explain", "x.jpg", "-k", "abc"], "--top-k"),
    (["explain", "x.jpg", "-k", "0"], "--top-k"),
    (["explain", "x.jpg", "--batch-size", "-1"], "--batch-size"),
    (["explain", "x.jpg", "--overlay-size", "0"], "--overlay-size"),
    (["explain", "x.jpg", "--top-k"], "--top-k"),
    (["explain", "x.jpg", "--threshold", "high"], "--threshold"),
    (["explain"], "PATHS"),
    (["bogus"], "bogus"),
    (["--bogus"], "--bogus"),
    (["train"], "DATASET"),
    (["train", "d"], "--arch"),
    (["train", "d", "-a", "tiny-cnn", "--epochs", "x"], "--epochs"),
    (["probe"], "DATASET"),
    (["probe", "d", "--holdout", "x"], "--holdout"),
    (["synth"], "OUT"),
    (["synth", "o", "--classes", "many"], "--classes"),
    (["evaluate"], "DATASET"),
    (["score", "d"], "--maps"),
]


@pytest.mark.parametrize("argv,needle", USAGE, ids=[" ".join(a) or "(none)" for a, _ in USAGE])
def test_usage_errors_exit_2_with_one_line(argv, needle, capsys):
    assert main(argv) == 2  # an exception escaping main() would fail this test
    lines = _stderr_lines(capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert needle.lower() in lines[0].lower()
    assert "Traceback" not in lines[0]


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


def test_each_verb_help_exits_0(capsys):
    for verb in VERBS:
        assert main([verb, "--help"]) == 0, verb
    assert "Usage" in capsys.readouterr().out


class _FakeUsageError(Exception):
    """What click (typer < 0.26) and typer's vendored copy both raise: exit_code, show(),
    format_message(), ctx."""

    exit_code = 2
    ctx = None

    def show(self) -> None:  # pragma: no cover - camloc prints its own line
        raise AssertionError("not used")

    def format_message(self) -> str:
        return "Invalid value for '--x': nope."


def _patch_run(monkeypatch, exc: BaseException) -> None:
    import camloc.explain.run

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(camloc.explain.run, "run_explain", boom)


def test_usage_error_found_by_duck_typing(monkeypatch, tiny_model, small_images, tmp_path, capsys):
    _patch_run(monkeypatch, _FakeUsageError())
    assert main(["explain", str(small_images), "-m", str(tiny_model), "-o",
                 str(tmp_path / "o")]) == 2
    assert _stderr_lines(capsys) == ["error: Invalid value for '--x': nope; see 'camloc --help'"]


def test_click_usage_error_is_handled_too(monkeypatch, tiny_model, small_images, tmp_path, capsys):
    click = pytest.importorskip("click")
    _patch_run(monkeypatch, click.BadParameter("bad value", param_hint="'--x'"))
    assert main(["explain", str(small_images), "-m", str(tiny_model), "-o",
                 str(tmp_path / "o")]) == 2
    [line] = _stderr_lines(capsys)
    assert line.startswith("error: Invalid value for '--x': bad value")


def test_keyboard_interrupt_exits_130(monkeypatch, tiny_model, small_images, tmp_path, capsys):
    _patch_run(monkeypatch, KeyboardInterrupt())
    assert main(["explain", str(small_images), "-m", str(tiny_model), "-o",
                 str(tmp_path / "o")]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_os_error_on_a_named_file_is_one_line(monkeypatch, tiny_model, small_images, tmp_path,
                                               capsys):
    _patch_run(monkeypatch, PermissionError(13, "Permission denied", "/somewhere/out"))
    assert main(["explain", str(small_images), "-m", str(tiny_model), "-o",
                 str(tmp_path / "o")]) == 2
    assert _stderr_lines(capsys) == ["error: /somewhere/out: Permission denied"]


def test_a_bug_keeps_its_traceback(monkeypatch, tiny_model, small_images, tmp_path):
    _patch_run(monkeypatch, ZeroDivisionError("camloc bug"))
    with pytest.raises(ZeroDivisionError, match="camloc bug"):
        main(["explain", str(small_images), "-m", str(tiny_model), "-o", str(tmp_path / "o")])


def test_camloc_error_exits_2(tiny_model, small_images, tmp_path, capsys):
    assert main(["explain", str(small_images), "-m", str(tiny_model), "-o", str(tmp_path / "o"),
                 "--classes", "no-such-class"]) == 2
    [line] = _stderr_lines(capsys)
    assert line == "error: --classes: unknown class 'no-such-class' (give ids or names)"
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_debug_env_shows_the_traceback(monkeypatch, tiny_model, small_images, tmp_path):
    from camloc.errors import ConfigError

    monkeypatch.setenv("CAMLOC_DEBUG", "1")
    with pytest.raises(ConfigError):
        main(["explain", str(small_images), "-m", str(tiny_model), "-o", str(tmp_path / "o"),
              "--classes", "no-such-class"])
