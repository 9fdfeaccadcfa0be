"""The ``ser`` command line: contract names, clear errors, ``python -m ser``."""
from __future__ import annotations

import subprocess
import sys

import pytest

from ser.cli import build_parser, main
from test_corpora import make_emodb


def test_help_lists_data_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "synth" in out and "download" in out and "manifest" in out


def test_synth_defaults_shown():
    p = build_parser()
    args = p.parse_args(["data", "synth", "--out", "x"])
    assert (args.speakers, args.per_emotion, args.seed) == (8, 4, 0)


def test_manifest_command_prints_summary_and_writes_csv(tmp_path, capsys):
    root = make_emodb(tmp_path / "emodb")
    assert main(["data", "manifest", "emodb", str(root), "--out", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "files:    21" in out and "speakers: 3" in out and "boredom" in out
    assert (tmp_path / "m.csv").read_text().startswith("path,corpus,speaker,emotion,duration")
    assert main(["data", "manifest", "manifest", str(tmp_path / "m.csv")]) == 0


def test_manifest_command_clear_error_on_empty_folder(tmp_path, capsys):
    (tmp_path / "e").mkdir()
    assert main(["data", "manifest", "ravdess", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no clips found" in err and "Actor_XX" in err and "Traceback" not in err


def test_unknown_corpus_is_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "manifest", "iemocap", "."])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m(tmp_path):
    root = make_emodb(tmp_path / "emodb", flat=True)
    r = subprocess.run([sys.executable, "-m", "ser", "data", "manifest", "emodb", str(root)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "files:    21" in r.stdout


def test_synth_then_manifest(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["-q", "data", "synth", "--out", str(out), "--speakers", "2", "--per-emotion", "1"]) == 0
    text = capsys.readouterr().out
    assert "files:    16" in text and "speakers: 2" in text and "emotions: 8" in text
    assert main(["data", "manifest", "ravdess", str(out)]) == 0  # RAVDESS naming, RAVDESS reader


def test_features_command_computes_then_reuses(tmp_path, capsys):
    data, cache = tmp_path / "syn", tmp_path / "fc"
    assert main(["-q", "data", "synth", "--out", str(data), "--speakers", "1", "--per-emotion", "1"]) == 0
    capsys.readouterr()
    args = ["-q", "features", "--corpus", "synthetic", "--data", str(data), "--features", "mel,rms",
            "--cache", str(cache), "--jobs", "1"]
    assert main(args) == 0
    assert "8 clips x 2 features: computed 16, reused 0" in capsys.readouterr().out
    assert main(args) == 0
    assert "computed 0, reused 16" in capsys.readouterr().out


def test_features_command_unknown_feature(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    code = main(["features", "--corpus", "synthetic", "--data", str(tmp_path / "d"), "--features", "wavelet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "wavelet" in err and "mel" in err and "Traceback" not in err


def test_features_command_with_augmented_copies(tmp_path, capsys):
    data, cache = tmp_path / "syn", tmp_path / "fc"
    assert main(["-q", "data", "synth", "--out", str(data), "--speakers", "1", "--per-emotion", "1"]) == 0
    capsys.readouterr()
    args = ["-q", "features", "--corpus", "synthetic", "--data", str(data), "--features", "rms",
            "--cache", str(cache), "--jobs", "1", "--aug-copies", "2"]
    assert main(args) == 0
    assert "8 clips x 1 features (+2 augmented copies each): computed 24, reused 0" in capsys.readouterr().out
    # copies live beside the clean entries (as their own group), here moved into one pack
    from ser.cache import PackSet

    assert not list(cache.rglob("*.ser"))
    assert sorted(g for _, g in PackSet(cache / "packs").index) == [""] * 8 + ["aug"] * 8


@pytest.mark.parametrize("argv,flag", [
    (["train", "--corpus", "synthetic", "--data", "x", "--feature", "mel", "--test", "0"], "--test"),
    (["train", "--corpus", "synthetic", "--data", "x", "--feature", "mel", "--val", "0"], "--val"),
    (["compare", "--corpus", "synthetic", "--data", "x", "--out", "o", "--test", "1.5"], "--test"),
    (["compare", "--corpus", "synthetic", "--data", "x", "--out", "o", "--epochs", "0"], "--epochs"),
    (["compare", "--corpus", "synthetic", "--data", "x", "--out", "o", "--parallel", "-1"], "--parallel"),
    (["train", "--corpus", "synthetic", "--data", "x", "--feature", "mel", "--lr", "nan"], "--lr"),
    (["train", "--corpus", "synthetic", "--data", "x", "--feature", "mel", "--dropout", "1"], "--dropout"),
    (["ensemble", "--runs", "r", "--out", "o", "--trials", "0"], "--trials"),
    (["predict", "--model", "m.onnx", "a.wav", "--window", "-1"], "--window"),
    (["predict", "--model", "m.onnx", "a.wav", "--hop", "inf"], "--hop"),
    (["serve", "--model", "m.onnx", "--max-mb", "-1"], "--max-mb"),
    (["serve", "--model", "m.onnx", "--port", "70000"], "--port"),
    (["features", "--corpus", "synthetic", "--data", "x", "--jobs", "0"], "--jobs"),
])
def test_impossible_flag_values_are_usage_errors_before_any_work(argv, flag, capsys):
    # the data folder "x" does not exist: reaching it would be a different error
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err


def test_a_user_error_is_one_line_whatever_its_class(monkeypatch, capsys):
    # the CLI recognises user errors by their common base, not by a list of class names
    from ser.errors import SerError

    class SomeNewError(SerError):
        pass

    def boom(args):
        raise SomeNewError("something the user can fix")

    monkeypatch.setattr("ser.cli._cmd_data_manifest", boom)
    assert main(["data", "manifest", "ravdess", "nowhere"]) == 2
    assert capsys.readouterr().err == "ser: error: something the user can fix\n"
