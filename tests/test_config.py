"""Flags generated from the config dataclasses, --config files, and the resolved record (pure Python)."""
import argparse
import json

import pytest

from ms_gpt.config import add_flags, build, from_args, to_dict
from ms_gpt import recipes
from ms_gpt.flows import configs, jobs


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


JOB_CONFIGS = (configs.PretrainConfig, configs.FinetuneConfig, configs.RewardConfig, configs.SFTConfig,
               configs.PPOConfig, configs.GenerateConfig, configs.ChatConfig, configs.SmokeConfig, configs.ImdbConfig)


GRAPH_JOBS = (configs.PretrainConfig, configs.FinetuneConfig, configs.RewardConfig, configs.SFTConfig)


def test_field_metadata_is_the_one_validator():
    """No config writes its own validate(): each inherits Validated's (the fields' metadata, then the rules that
    relate fields), and every job's config holds the run-control fields of RunConfig once."""
    from ms_gpt.config import GenerationConfig, GPTConfig, TrainConfig, Validated

    for cls in JOB_CONFIGS + (GPTConfig, GenerationConfig):
        assert "validate" not in vars(cls), cls.__name__
        assert issubclass(cls, Validated) and issubclass(cls, configs.RunConfig) or cls in (GPTConfig,
                                                                                            GenerationConfig)
    assert set(vars(TrainConfig)) & {"validate"}  # TrainConfig adds only the "auto must be resolved" check
    # no job restates a run-control field, but for these defaults: finetune-imdb's resume, and the mode of the jobs
    # measured faster in graph mode (recipes.GRAPH_MODE; ppo keeps jit)
    allowed = {(configs.ImdbConfig, "resume"), *((c, "mode") for c in GRAPH_JOBS)}
    assert {jobs.command_of(c()) for c, name in allowed if name == "mode"} == set(recipes.GRAPH_MODE)
    for cls in JOB_CONFIGS:
        for name in ("device", "seed", "mode", "overwrite", "progress", "until", "resume"):
            assert name not in cls.__dict__.get("__annotations__", {}) or (cls, name) in allowed, (cls, name)
    for cls in GRAPH_JOBS:  # the same choices, another default
        assert cls.__dataclass_fields__["mode"].metadata["choices"] == \
            configs.RunConfig.__dataclass_fields__["mode"].metadata["choices"]
        assert cls().mode == "graph"


@pytest.mark.parametrize("cls, changes, message", [
    (configs.PretrainConfig, {"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    (configs.PretrainConfig, {"boundaries": "lines"}, r"boundaries must be one of auto, eos, newline, got 'lines'"),
    (configs.PPOConfig, {"gamma": 1.5}, r"gamma must be in \[0, 1\], got 1.5"),
    (configs.PPOConfig, {"clip_range": 0}, r"clip_range must be > 0, got 0"),
    (configs.PPOConfig, {"kl_target": -1.0}, r"kl_target must be > 0, got -1.0"),
    (configs.PPOConfig, {"batch_size": 1}, r"batch_size must be >= 2"),
    (configs.SmokeConfig, {"learning_rate": 0}, r"learning_rate must be > 0, got 0"),
    (configs.SmokeConfig, {"n_embd": 30}, r"n_embd \(30\) must be divisible by n_head \(4\)"),
    (configs.ImdbConfig, {"subset": 0}, r"subset must be in \(0, 1\], got 0"),
    (configs.ImdbConfig, {"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\), got 1.0"),
    (configs.ImdbConfig, {"until_epoch": 4}, r"until_epoch \(4\) is after the last epoch \(3\)"),
    (configs.ImdbConfig, {"eval_batch_size": 0}, r"eval_batch_size must be a positive integer, got 0"),
    (configs.GenerateConfig, {"ckpt": "c"}, None),
])
def test_each_job_config_is_checked_by_its_field_metadata(cls, changes, message):
    cfg = cls(**changes)
    if message is None:
        cfg.validate()
        return
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_nested_configs_are_checked_through_the_job():
    from ms_gpt.config import GenerationConfig, TrainConfig

    with pytest.raises(ValueError, match=r"top_k must be an integer >= 0, got -1"):
        configs.ChatConfig(generation=GenerationConfig(top_k=-1)).validate()
    with pytest.raises(ValueError, match=r"warmup_steps must be an integer in \[0, steps=10\), got 10"):
        configs.PretrainConfig(train=TrainConfig(steps=10, warmup_steps=10)).validate()
    with pytest.raises(ValueError, match=r"train settings \{'warmup_steps': 5\}: PPO starts at its full learning rate"):
        configs.PPOConfig(train=TrainConfig(warmup_steps=5, schedule="linear")).validate()
    configs.PPOConfig(policy="P", reward="R", prompts="builtin:reviews-zh-prompts", out="O",
                      train=TrainConfig(warmup_steps=0, schedule="cosine")).validate()  # any decay from the start


def test_run_folders_from_before_a_field_moved_still_load(tmp_path):
    """PPO's steps/learning_rate/grad_clip/ckpt_every moved into its TrainConfig, and max_grad_norm became
    grad_clip: a run_config.json written before (top-level names) loads with --config and compares equal on
    --resume."""
    from ms_gpt.config import config_diff, upgrade

    old = to_dict(configs.PPOConfig(policy="p", reward="r", prompts="x", out="o"))
    del old["train"]  # the record as 3995857 wrote it: these four at the top, the optimiser hard-coded
    old.update(steps=7, learning_rate=1e-4, grad_clip=0.5, ckpt_every=2)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    cfg = parse(configs.PPOConfig, ["--config", str(path)])
    assert (cfg.train.steps, cfg.train.learning_rate, cfg.train.grad_clip, cfg.train.ckpt_every) == (7, 1e-4, 0.5, 2)
    assert parse(configs.PPOConfig, ["--config", str(path), "--steps", "9"]).train.steps == 9  # the flag wins
    assert config_diff(upgrade(configs.PPOConfig, old), to_dict(cfg)) == {}
    path.write_text(json.dumps({"out": "o", "max_grad_norm": 0.25}))
    assert parse(configs.ImdbConfig, ["--config", str(path)]).grad_clip == 0.25
    assert parse(configs.SmokeConfig, ["--config", str(path)]).grad_clip == 0.25
