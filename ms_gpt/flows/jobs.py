"""Every job ms_gpt runs: its ``ms-gpt`` command, its config class (:mod:`ms_gpt.flows.configs`), the flow that
runs it and a line of help. ``ms-gpt COMMAND`` (:mod:`ms_gpt.cli`) and ``ms_gpt.api.run(config)`` both dispatch
from :data:`JOBS`, so a command and its Python call are the same run. Pure Python: no MindSpore import."""

from __future__ import annotations

import importlib
from typing import NamedTuple


class Job(NamedTuple):
    config: str  # the config class's name in ms_gpt.flows.configs
    flow: str  # "module:function" in ms_gpt.flows
    help: str


JOBS = {
    "smoke": Job("SmokeConfig", "smoke:run", "a short real run of the MindNLP stack: train, evaluate, save, reload"),
    "pretrain": Job("PretrainConfig", "pretrain:pretrain",
                    "pretrain a GPT from scratch on a corpus (builtin:NAME or a path)"),
    "generate": Job("GenerateConfig", "generate:generate_text",
                    "generate text from a checkpoint folder (pretrain, sft or ppo)"),
    "chat": Job("ChatConfig", "chat:chat",
                "talk to a checkpoint (sft or pretrain): one --prompt, or a conversation on stdin"),
    "chat-eval": Job("ChatEvalConfig", "chat_eval:chat_eval",
                     "judge a dialogue model's replies to held-out lines (on topic, ending, loops, KL to its "
                     "reference)"),
    "finetune": Job("FinetuneConfig", "finetune:finetune",
                    "GPT-1 fine-tuning (head on the extract token + auxiliary LM loss)"),
    "sft": Job("SFTConfig", "sft:sft", "supervised tuning on prompt/response pairs (loss on the response only)"),
    "reward": Job("RewardConfig", "finetune:reward",
                  "a reward model from preference pairs (-log σ(r_chosen - r_rejected))"),
    "ppo": Job("PPOConfig", "ppo:ppo",
               "tune a policy against a reward model with PPO (KL penalty to the starting policy)"),
    "finetune-imdb": Job("ImdbConfig", "mindnlp_imdb:command",
                         "the MindNLP course flow: openai-gpt fine-tuned for IMDb sentiment "
                         "(transformers.Trainer on MindSpore)"),
}


def config_class(command: str):
    """The config class of ``command``."""
    from ms_gpt.flows import configs

    return getattr(configs, JOBS[command].config)


def command_of(config) -> str:
    """The command whose config ``config`` is (an instance of exactly that class); a clear error otherwise."""
    name = type(config).__name__
    for command, job in JOBS.items():
        if job.config == name:
            return command
    raise TypeError(f"{name} is not a job's config; give one of "
                    + ", ".join(f"{j.config} ({c})" for c, j in JOBS.items()) + " (ms_gpt.flows.configs)")


def flow_of(command: str):
    """The function that runs ``command``'s job (imports its flow, and with it MindSpore)."""
    module, function = JOBS[command].flow.split(":")
    return getattr(importlib.import_module(f"ms_gpt.flows.{module}"), function)
