"""Flags generated from the config dataclasses, --config files, and the resolved record (pure Python)."""
import argparse
import json

import pytest

from ms_gpt.config import add_flags, build, from_args, to_dict
from ms_gpt.flows import configs


def parse(cls, argv):
    parser = argparse.ArgumentParser(prog="t")
    add_flags(parser, cls, renames=cls.FLAGS, hidden=cls.DERIVED)
    return from_args(cls, parser.parse_args(argv))


def test_every_field_is_a_flag_with_its_type_default_and_the_flows_names():
    cfg = parse(configs.PretrainConfig, ["--out", "o", "--block-size", "32", "--steps", "7", "--amp", "on",
                                         "--static-shapes", "off", "--no-progress", "--learning-rate", "0.01"])
    assert (cfg.data.max_len, cfg.train.steps, cfg.train.amp, cfg.data.static_shapes) == (32, 7, True, False)
    assert cfg.progress is False and cfg.train.learning_rate == 0.01
    untouched = parse(configs.PretrainConfig, ["--out", "o"])
    assert untouched == configs.PretrainConfig(out="o")  # nothing given: the flow's defaults
    assert untouched.train.warmup_steps is None and untouched.train.amp is None  # "auto": the flow decides
    gen = parse(configs.GenerateConfig, ["--ckpt", "c", "--prompt", "p", "--no-cache", "--num-beams", "3"])
    assert gen.generation.use_cache is False and gen.generation.num_beams == 3


def test_bad_values_and_missing_required_fields_are_clear_errors(capsys):
    with pytest.raises(SystemExit):
        parse(configs.PretrainConfig, ["--out", "o", "--steps", "0"])
    assert "expected a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(configs.FinetuneConfig, ["--task", "summarise"])
    assert "invalid choice: 'summarise'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--init is required \(give it as a flag or in --config\)"):
        parse(configs.FinetuneConfig, ["--task", "classification", "--data", "d", "--out", "o"])
    with pytest.raises(SystemExit):  # finetune derives its steps from --epochs: no --steps flag
        parse(configs.FinetuneConfig, ["--steps", "3"])


def test_config_file_then_flags(tmp_path):
    run = configs.PretrainConfig(out="a", corpus="builtin:reviews-zh")
    run.train.steps, run.data.buckets = 9, (8, 16)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(to_dict(run)))
    loaded = parse(configs.PretrainConfig, ["--config", str(path)])
    assert loaded == run and loaded.data.buckets == (8, 16)  # JSON lists come back as tuples
    changed = parse(configs.PretrainConfig, ["--config", str(path), "--steps", "4", "--out", "b"])
    assert (changed.train.steps, changed.out, changed.corpus) == (4, "b", "builtin:reviews-zh")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"out": "p", "train": {"learning_rate": 0.5}}))
    cfg = parse(configs.PretrainConfig, ["--config", str(partial)])
    assert cfg.train.learning_rate == 0.5 and cfg.train.steps == 200  # the rest: the flow's defaults
    path.write_text(json.dumps({"out": "a", "trian": {}}))
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['trian'\]; known: \["):
        parse(configs.PretrainConfig, ["--config", str(path)])
    path.write_text("{oops")
    with pytest.raises(ValueError, match=r"not valid JSON"):
        parse(configs.PretrainConfig, ["--config", str(path)])
    with pytest.raises(ValueError, match=r"file not found"):
        parse(configs.PretrainConfig, ["--config", str(tmp_path / "none.json")])


def test_buckets_none_means_no_buckets_and_build_rejects_bad_nesting():
    cfg = parse(configs.FinetuneConfig, ["--init", "i", "--task", "classification", "--data", "d", "--out", "o",
                                         "--buckets", "none"])
    assert cfg.batching.buckets == ()
    with pytest.raises(ValueError, match=r"train must be an object of TrainConfig fields"):
        build(configs.PretrainConfig, {"train": 3})
