"""Representation names: features and encoder layers share one namespace."""
from __future__ import annotations

import pytest

from ser.encoders import EncoderError
from ser.features import FeatureError, available_features
from ser.representations import (encoder_config, is_encoder, representation_rows, resolve_representations,
                                 split_kinds)
from ser.train import TrainConfig, model_name


def test_all_means_the_eleven_features():
    assert resolve_representations("all") == available_features()


def test_bare_encoder_names_take_their_default_layer_and_are_written_out():
    names = resolve_representations(["mel", "whisper_base", "whisper_base@4", "whisper_tiny_en@0"])
    assert names == ["mel", "whisper_base@4", "whisper_tiny_en@0"]  # duplicates collapse once canonical
    assert split_kinds(names) == (["mel"], ["whisper_base@4", "whisper_tiny_en@0"])
    assert encoder_config("whisper_tiny_en@4").layer == 4


@pytest.mark.parametrize("bad,match", [("whisper_base@9", "layers 0-6"), ("whisper_base@x", "must be a number"),
                                       ("whisper_base@-1", "layers 0-6")])
def test_bad_layers_are_clear_errors(bad, match):
    with pytest.raises(EncoderError, match=match):
        resolve_representations(bad)


def test_unknown_names_list_features_and_encoders():
    with pytest.raises(FeatureError, match="encoders: whisper_tiny_en, whisper_base"):
        resolve_representations("mel,wav2vec")
    assert not is_encoder("mel") and is_encoder("whisper_base@1")


def test_rows_and_default_heads_follow_the_kind():
    assert representation_rows("whisper_base@2") == 512 and representation_rows("whisper_tiny_en") == 384
    assert representation_rows("mfcc") == 40
    assert model_name(TrainConfig(feature="mel")) == "resnet18"
    assert model_name(TrainConfig(feature="whisper_base@5")) == "asp"
    assert model_name(TrainConfig(feature="whisper_base@5", model="resnet18")) == "resnet18"


def test_the_cli_refuses_an_unknown_representation_before_reading_data(capsys):
    from ser.cli import main

    assert main(["train", "--corpus", "synthetic", "--data", "nowhere", "--feature", "whisper_large"]) == 2
    assert "unknown representation 'whisper_large'" in capsys.readouterr().err
