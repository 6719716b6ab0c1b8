"""One config dataclass per flow, composed of the per-concern ones in :mod:`ms_gpt.config`.

``ms-gpt COMMAND`` flags are generated from these fields (``ms_gpt.config.add_flags``); ``--config
run.json`` loads a whole run. ``FLAGS`` renames a few flags to the names users know (``--block-size``
for pretraining's sequence length); ``DERIVED`` lists the fields a flow computes itself (no flag); ``HELP``
words a shared field's help for this flow; ``MOVED`` maps a field's name in older run folders to today's.
Checking is the fields' metadata (``ms_gpt.config.Validated``): no config here writes a ``validate``.
Pure Python: ``ms-gpt --help`` imports this without MindSpore.
"""

from __future__ import annotations

from dataclasses import dataclass

from ms_gpt import recipes
from ms_gpt.checks import check_buckets
from ms_gpt.config import FINETUNE_TASKS as TASKS
from ms_gpt.config import POOLS, PRESETS, RESUMABLE, DataConfig, GenerationConfig, TrainConfig, Validated, opt
from ms_gpt.environment.device import MODES  # device.py imports MindSpore only when a device is set up

TOKENIZERS = ("auto", "whitespace", "char", "jieba", "bpe")
BOUNDARIES = ("auto", "eos", "newline")
# Per-invocation settings: they may differ between a run and its --resume.
RUN_ONLY = ("out", "device", "mode", "progress", "resume", "overwrite")


@dataclass
class RunConfig(Validated):
    """What every command accepts. ``validate()`` (:class:`ms_gpt.config.Validated`) is a command's one check of
    its settings: every field's metadata, the nested configs' included, then the rules between fields."""

    device: str | None = opt(None, "Ascend, GPU or CPU", none="$MS_GPT_DEVICE, else auto: Ascend > GPU > CPU")
    seed: int = opt(0, "seed for Python, NumPy and MindSpore")
    mode: str = opt("jit", "jit: steps compiled with mindspore.jit; pynative: nothing compiled (debugging); "
                           "graph: MindSpore's GRAPH_MODE (fastest training on CPU: under PyNative the host thread "
                           "busy-waits on each compiled step)", choices=MODES)


# The help of a job whose default mode is graph (recipes.GRAPH_MODE: measured faster, the same results).
GRAPH_MODE_HELP = ("graph: MindSpore's GRAPH_MODE (the fastest way to train on CPU); jit: steps compiled with "
                   "mindspore.jit under PyNative; pynative: nothing compiled (debugging)")


@dataclass
class TrainingRun(RunConfig):
    """What every command that trains into ``--out`` accepts besides."""

    overwrite: bool = opt(False, "replace the run --out already holds (its files are removed first)")
    progress: bool = opt(True, "show a progress bar", off="hide the progress bar (logs, scripts)")


@dataclass
class ResumableRun(TrainingRun):
    """A training command that stops at a step and continues later."""

    until: int | None = opt(None, "stop after this step with a checkpoint (continue later with --resume)",
                            positive=True, none="the last step")
    resume: bool = opt(False, "continue the run saved in --out (the same settings)")

    # Settings that may differ between a run and its --resume (config_diff's ``free``).
    RESUME_FREE = RUN_ONLY + ("until",)


@dataclass
class PretrainConfig(ResumableRun):
    # recipes.GRAPH_MODE (with its measurement); the run hands the process back in PyNative when it ends
    mode: str = opt(recipes.GRAPH_MODE["pretrain"], GRAPH_MODE_HELP, choices=MODES)
    out: str | None = opt(None, "output folder (checkpoint, tokenizer/, metrics.json, loss.png)", required=True)
    corpus: str = opt("builtin:demo-en", "builtin:peoples-daily, builtin:reviews-zh, builtin:demo-en, or a .txt "
                                         "file/folder")
    preset: str = opt("tiny", "GPTConfig preset", choices=tuple(PRESETS))
    tokenizer: str = opt("auto", "auto: jieba for Chinese built-ins, else whitespace", choices=TOKENIZERS)
    vocab_size: int = opt(8000, "largest vocabulary", positive=True)
    vocab_corpus: str | None = opt(None, "more text to build the vocabulary over (not trained on), e.g. a task's "
                                         "training texts", none="none")
    val_corpus: str | None = opt(None, "held-out text to validate on (builtin:NAME or a .txt file/folder)",
                                 none="5 % of the corpus' lines, drawn with --seed")
    boundaries: str = opt("auto", "how the corpus' lines meet in the token stream: eos = <bos> line <eos> (GPT-1's "
                                  "documents); newline = the text itself, each line ended by a newline token "
                                  "(char tokenizer only; no <bos>/<eos> overhead)",
                          choices=BOUNDARIES, none="auto")
    dropout: float | None = opt(None, "dropout of the embeddings, attention and residual branches",
                                none="0: a short pretraining run sees each token about once, so it does not "
                                     "overfit and dropout only slows it down", bounds="in [0, 1)")
    # The block is the model's whole position table (the preset's by default), so every position a later command
    # feeds the model has been trained: a 64-token block in the `small` preset's 128 positions left half of them
    # random, and chat walked into them by its second turn.
    data: DataConfig = opt(factory=lambda: DataConfig(batch_size=16, max_len=None))
    # nanoGPT's small-model settings (weight decay 0.1, β2 0.99, warmup up to 100 steps, cosine to 10 %), with the
    # learning rate by model size (ms_gpt/recipes.py): measured by scripts/studies/compare_nanogpt.py to train the small
    # presets best in short runs.
    train: TrainConfig = opt(factory=lambda: TrainConfig(steps=200, learning_rate=None, warmup_steps=None,
                                                         weight_decay=0.1, beta2=0.99,
                                                         eval_every=None, ckpt_every=None, amp=None))
    distributed: bool = opt(False, "data-parallel over the workers msrun starts (scripts/run_distributed.sh); "
                                   "--batch-size is per worker")

    FLAGS = {"data.max_len": "--block-size"}
    RESUME_FREE = ResumableRun.RESUME_FREE + tuple(f"train.{name}" for name in RESUMABLE)
    HELP = {"data.max_len": "tokens per training block; the model's position table is this long, so every position "
                            "it has is trained"}
    NONE_HELP = {"train.learning_rate": recipes.PRETRAIN_LR_HELP,
                 "data.max_len": "the preset's position table (" + ", ".join(
                     f"{name} {p['n_positions']}" for name, p in PRESETS.items()) + ")"}
    DERIVED = ("data.buckets",)


@dataclass
class FinetuneConfig(TrainingRun):
    mode: str = opt(recipes.GRAPH_MODE["finetune"], GRAPH_MODE_HELP, choices=MODES)  # recipes.GRAPH_MODE
    init: str | None = opt(None, "an ms_gpt checkpoint folder (ms-gpt pretrain) or a Hugging Face openai-gpt "
                                 "folder", required=True)
    task: str | None = opt(None, "GPT-1 task", choices=TASKS, required=True)
    data: str | None = opt(None, "builtin:reviews-zh, or a folder with train/valid/test.jsonl", required=True)
    out: str | None = opt(None, "output folder (metrics.json, best/, loss.png)", required=True)
    epochs: int | None = opt(None, "passes over the training split (at most: early stopping may end sooner)",
                             positive=True, none=recipes.FINETUNE_EPOCHS_HELP)
    lm_weight: float | None = opt(None, "λ of the auxiliary LM loss (0 turns it off)",
                                  none=recipes.FINETUNE_LM_WEIGHT_HELP, bounds=">= 0")
    classifier_dropout: float = opt(0.1, "dropout before the task head", bounds="in [0, 1)")
    dropout: float | None = opt(None, "dropout of the trunk's embeddings, attention and residual branches while "
                                      "tuning", none="the checkpoint's own (0 after ms-gpt pretrain's short runs, "
                                                     "0.1 for openai-gpt)", bounds="in [0, 1)")
    warmup_fraction: float | None = opt(None, "share of the steps for linear warmup",
                                        none=recipes.FINETUNE_WARMUP_HELP, bounds="in [0, 1)")
    patience: int | None = opt(None, "stop after this many epochs that lower neither the validation loss nor raise "
                                     "the validation accuracy (0: run every epoch)", bounds="an integer >= 0",
                               none=recipes.FINETUNE_PATIENCE_HELP)
    max_unk: float = opt(0.05, "largest share of <unk> among a split's tokens before the run stops", bounds="in [0, 1)")
    allow_unk: bool = opt(False, "train even when a split has more <unk> tokens than --max-unk")
    train_limit: int | None = opt(None, "use only the first N training rows", positive=True, none="all")
    reinit: bool = opt(False, "keep --init's architecture and tokenizer but start from random weights (baseline)")
    pool: str | None = opt(None, "what the head reads: last = the extract token (GPT-1), mean = average of real "
                                 "tokens, max = their element-wise maximum", choices=POOLS,
                           none=recipes.FINETUNE_POOL_HELP)
    batching: DataConfig = opt(factory=lambda: DataConfig(batch_size=32, max_len=None))
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        steps=None, learning_rate=None, warmup_steps=None, schedule="linear", min_lr_ratio=0.0,
        eval_every=None, ckpt_every=None, amp=False))

    COMMAND = "finetune"  # the ms-gpt command whose output folder this job writes (ms_gpt.run_folder.ownership)
    FLAGS = {}
    NONE_HELP = {"train.learning_rate": recipes.FINETUNE_LR_HELP}
    DERIVED = ("train.steps", "train.warmup_steps", "train.eval_every", "train.ckpt_every", "train.min_lr_ratio",
               "train.amp", "train.loss_scale", "train.loss_scale_window", "batching.static_shapes")

    def check_relations(self) -> None:
        if self.task is None:
            raise ValueError(f"task is required; one of {', '.join(TASKS)}")


PAIRINGS = ("given", "all")


@dataclass
class RewardConfig(FinetuneConfig):
    """A reward model: fine-tuning's multiple-choice head with two choices, the chosen response first (see
    ms_gpt/data/preferences.py); everything else as ``ms-gpt finetune`` (defaults by model size)."""
    mode: str = opt(recipes.GRAPH_MODE["reward"], GRAPH_MODE_HELP, choices=MODES)  # recipes.GRAPH_MODE
    task: str | None = opt("multiple-choice", cli=False)
    data: str | None = opt(None, "builtin:reviews-zh-pairs (Chinese reviews: positive over negative), "
                                 "builtin:chitchat-pairs (a conversation's real reply over another conversation's "
                                 "or a looping one), or a folder with train/valid/test.jsonl of "
                                 '{"prompt": ..., "chosen": ..., "rejected": ...}', required=True)
    out: str | None = opt(None, "output folder (metrics.json, best/ = the reward model, loss.png)", required=True)
    # The auxiliary LM loss over both responses' tokens helps a small reward model (1.37M-parameter char GPT on
    # builtin:reviews-zh-pairs, --max-len 64, 2 epochs: test pairwise accuracy 0.838 at λ 0, 0.874 at 0.5).
    lm_weight: float | None = opt(0.5, "λ of the auxiliary LM loss over the responses' tokens (0 turns it off)",
                                  bounds=">= 0")
    train_limit: int | None = opt(None, "use only the first N training pairs", positive=True,
                                  none=recipes.REWARD_LIMIT_HELP)
    epochs: int | None = opt(None, "passes over the training pairs (at most: early stopping may end sooner)",
                             positive=True, none=recipes.REWARD_EPOCHS_HELP)

    pool: str = opt("last", "what the head reads: last = the last token (the usual reward model), mean = the "
                            "average of the real tokens' states, max = their element-wise maximum", choices=POOLS)
    pairs: str = opt("given", "which comparisons train the head: given = each chosen response against its own "
                              "rejected one; all = every chosen response of a batch against every rejected one "
                              "(b x b comparisons from b pairs; only where a preference does not depend on "
                              "the pairing: every pair has the same prompt and the chosen are better than "
                              "any rejected one, as builtin:reviews-zh-pairs' positive and negative reviews)",
                     choices=PAIRINGS)

    DERIVED = FinetuneConfig.DERIVED + ("task", "reinit")
    COMMAND = "reward"

    CLASSIFIER_META = {"role": "reward-model", "input": "<bos> prompt <sep> response <eos>"}
    SCORES = {"last": "the head's output at the last token",
              "mean": "the head's output on the average of the tokens' states",
              "max": "the head's output on the element-wise maximum of the tokens' states"}


@dataclass
class SFTConfig(TrainingRun):
    mode: str = opt(recipes.GRAPH_MODE["sft"], GRAPH_MODE_HELP, choices=MODES)  # recipes.GRAPH_MODE
    init: str | None = opt(None, "an ms_gpt checkpoint folder or a Hugging Face openai-gpt folder", required=True)
    data: str | None = opt(None, 'builtin:chitchat (English conversations, split by conversation), or a JSONL file of '
                                 '{"prompt": ..., "response": ...} (optionally "context": [earlier turns])',
                           required=True)
    out: str | None = opt(None, "output folder (a checkpoint ms-gpt generate and chat answer from)", required=True)
    epochs: int | None = opt(None, "passes over the exchanges", positive=True,
                             none=recipes.SFT_EPOCHS_HELP)
    train_limit: int | None = opt(None, "train on a seeded sample of this many exchanges", positive=True,
                                  none=recipes.SFT_LIMIT_HELP)
    warmup_fraction: float = opt(0.05, "share of the steps for linear warmup", bounds="in [0, 1)")
    batching: DataConfig = opt(factory=lambda: DataConfig(batch_size=8, max_len=None))
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        steps=None, learning_rate=None, warmup_steps=None, schedule="linear", min_lr_ratio=0.0,
        eval_every=None, ckpt_every=None, amp=False))

    FLAGS = {}
    NONE_HELP = {"train.learning_rate": recipes.SFT_LR_HELP}
    DERIVED = FinetuneConfig.DERIVED


SCORE_INPUTS = ("auto", "pair", "text")
SCORE_TRANSFORMS = ("raw", "logsigmoid")
VALUE_TRUNKS = ("shared", "detached")
KL_PENALTIES = ("reward", "loss")


@dataclass
class PPOConfig(ResumableRun):
    policy: str | None = opt(None, "the model to tune: a folder written by ms-gpt pretrain or sft (it is also the "
                                   "frozen reference of the KL penalty)", required=True)
    reward: str | None = opt(None, "a reward model: a folder written by ms-gpt reward", required=True)
    prompts: str | None = opt(None, "builtin:reviews-zh-prompts, builtin:chitchat-prompts, or a text file with one "
                                    "prompt a line", required=True)
    out: str | None = opt(None, "output folder (a checkpoint ms-gpt generate and chat use, metrics.json, ppo.png)",
                          required=True)
    batch_size: int = opt(16, "rollouts (prompts continued) per step", positive=True)
    max_new_tokens: int | None = opt(None, "the longest response (a response ends earlier at <eos>)", positive=True,
                                     none=recipes.PPO_NEW_TOKENS_HELP)
    group_size: int = opt(recipes.PPO_GROUP_SIZE,
                          "responses sampled per prompt: --batch-size / G prompts a step, each continued G times; "
                          "with G > 1 each response's score is taken relative to the mean of the other G - 1 "
                          "responses to its prompt (a leave-one-out baseline, as RLOO), so the advantages compare "
                          "responses, not prompts", positive=True)
    ppo_epochs: int = opt(recipes.PPO_EPOCHS, "optimisation passes over each batch of rollouts", positive=True)
    init_kl_coef: float = opt(recipes.PPO_INIT_KL_COEF, "β at the start: the weight of the KL penalty to the "
                                                        "reference", bounds=">= 0")
    kl_target: float | None = opt(recipes.PPO_KL_TARGET, "the KL (nats per response) the adaptive controller "
                                                         "steers β toward", none="none: β stays fixed", bounds="> 0")
    kl_penalty: str = opt(recipes.PPO_KL_PENALTY,
                          "where β's KL penalty enters: reward = -β (log π - log π_ref) of each sampled token in the "
                          "per-token reward (Ziegler et al.); loss = β x the exact per-position KL over the "
                          "vocabulary as a loss term beside the clipped objective (scaled by 1/std of the advantages, "
                          "which whitening divides the score's part by), the reward then the score alone",
                          choices=KL_PENALTIES)
    kl_horizon: int | None = opt(None, "rollouts over which β may change by 20 % at most (Ziegler et al.: 10000)",
                                 positive=True, none="10 steps' rollouts (10 x --batch-size): a short run's β "
                                                     "can still move")
    gamma: float = opt(1.0, "discount γ of generalised advantage estimation", bounds="in [0, 1]")
    lam: float = opt(recipes.PPO_LAM, "λ of generalised advantage estimation", bounds="in [0, 1]")
    clip_range: float = opt(0.2, "ε of PPO's clipped ratio", bounds="> 0")
    value_clip: float = opt(0.2, "how far the value estimates may move from the rollout's per update", bounds="> 0")
    vf_coef: float = opt(recipes.PPO_VF_COEF, "weight of the value loss beside the policy loss", bounds=">= 0")
    entropy_coef: float = opt(0.0, "weight of an entropy bonus: this times the policy's mean entropy per token is "
                                   "subtracted from the loss (0: none)", bounds=">= 0")
    value_trunk: str = opt("shared", "what the value loss trains: shared = the value head and, through its input, "
                                     "the policy's trunk (one network, as Ziegler et al.); detached = the head "
                                     "alone (the trunk's states reach it without a gradient, so only the policy "
                                     "loss moves the policy)", choices=VALUE_TRUNKS)
    score_input: str = opt("auto", "what the reward model reads: pair = the prompt and the response (<bos> prompt "
                                   "<sep> response <eos>); text = prompt and response as one text (a reward model "
                                   "trained on pairs with empty prompts, such as builtin:reviews-zh-pairs)",
                           choices=SCORE_INPUTS, none="auto: what the reward model was trained on")
    score_transform: str = opt("raw", "what PPO maximises of the reward model's score s: raw = s; logsigmoid = "
                                      "log σ(s - offset), the log-probability of beating a response scored "
                                      "--score-offset (bounded: past a clear win, more score earns nothing)",
                               choices=SCORE_TRANSFORMS)
    score_offset: float | None = opt(None, "the score that logsigmoid centres on",
                                     none="the mean score of the starting policy's responses to 4 x --batch-size "
                                          "prompts, measured before the first step", bounds="a finite number")
    allow_unk: bool = opt(False, "train even when the reward model's tokenizer reads most of the policy's text as "
                                 "<unk> (it would score text it cannot see): a loud warning instead of an error")
    # The optimiser: Adam with β2 0.95 (minGPT's), bias-corrected as PyTorch's AdamW, no weight decay, clipping at
    # norm 1; its rate falls linearly to 0 at the last step (recipes.PPO_SCHEDULE, measured).
    train: TrainConfig = opt(factory=lambda: TrainConfig(
        steps=recipes.PPO_STEPS, learning_rate=None, warmup_steps=0, schedule=recipes.PPO_SCHEDULE, min_lr_ratio=0.0,
        weight_decay=0.0, beta1=0.9, beta2=0.95, bias_correction=True, grad_clip=1.0, eval_every=None,
        ckpt_every=None, amp=False))

    FLAGS = {}
    HELP = {"train.steps": "PPO steps (each: one batch of rollouts, then --ppo-epochs passes over it)",
            "train.learning_rate": "Adam's learning rate at the first step (--schedule sets the rest)",
            "train.schedule": "the learning rate over the run: linear = down to 0 at the last step; cosine = down "
                              "to 0 along a half cosine; constant = --learning-rate throughout",
            "train.ckpt_every": "save a resumable checkpoint every N steps"}
    NONE_HELP = {"train.learning_rate": recipes.PPO_LR_HELP, "train.ckpt_every": "every 10 steps and at the end"}
    RESUME_FREE = ResumableRun.RESUME_FREE + ("train.learning_rate", "train.schedule")
    DERIVED = ("train.warmup_steps", "train.min_lr_ratio", "train.eval_every", "train.amp",
               "train.loss_scale", "train.loss_scale_window")
    # Fields that moved into ``train`` (run folders written before 2026-12-06 hold them at the top).
    MOVED = {"steps": "train.steps", "learning_rate": "train.learning_rate", "grad_clip": "train.grad_clip",
             "ckpt_every": "train.ckpt_every"}

    def check_relations(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (advantages are whitened over the batch), got {self.batch_size}")
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of group_size ({self.group_size}): "
                             f"each step continues batch_size / group_size prompts group_size times")
        if self.kl_target is not None and not self.init_kl_coef > 0:
            raise ValueError("an adaptive KL controller (--kl-target) needs --init-kl-coef > 0; give --kl-target none "
                             "for no penalty")
        if self.score_offset is not None and self.score_transform != "logsigmoid":
            raise ValueError(f"score_offset ({self.score_offset}) is the centre of --score-transform logsigmoid; "
                             f"with --score-transform {self.score_transform} it would be ignored")
        fixed = {"warmup_steps": 0, "amp": False}
        changed = {k: getattr(self.train, k) for k, v in fixed.items() if getattr(self.train, k) != v}
        if changed:
            raise ValueError(f"train settings {changed}: PPO starts at its full learning rate and trains in float32; "
                             f"accepted: {fixed}")


@dataclass
class GenerateConfig(RunConfig):
    ckpt: str | None = opt(None, "a folder written by ms-gpt pretrain or sft", required=True)
    prompt: str | None = opt(None, "the text to continue", required=True)
    stop_at_newline: bool = opt(False, "end the text at its first line break (models pretrained with "
                                       "--boundaries newline; others end a line with <eos> anyway)")
    generation: GenerationConfig = opt(factory=GenerationConfig)

    FLAGS = {}
    DERIVED = ("mode",)


@dataclass
class ChatConfig(RunConfig):
    ckpt: str | None = opt(None, "a folder written by ms-gpt sft (a dialogue model) or ms-gpt pretrain", required=True)
    prompt: str | None = opt(None, "answer this one message and exit", none="a conversation on standard input "
                                                                          "(/reset, /quit)")
    # Sampling that neither loops nor repeats itself on the small chat models (recipes.CHAT_DECODING, measured).
    generation: GenerationConfig = opt(factory=lambda: GenerationConfig(**recipes.CHAT_DECODING))

    FLAGS = {}
    DERIVED = ("mode",)


@dataclass
class ChatEvalConfig(RunConfig):
    ckpt: str | None = opt(None, "a dialogue model: a folder written by ms-gpt sft, or by ms-gpt ppo from one",
                           required=True)
    reference: str | None = opt(None, "the model the replies' perplexity and the KL are measured against",
                                none="for a PPO model the chat model it was tuned from (its ppo.json); an SFT "
                                     "model is its own")
    contexts: int = opt(200, "held-out lines to reply to (builtin:chitchat's test conversations: neither sft, "
                             "reward nor ppo's prompts use them)", positive=True)
    # replies decoded as ms-gpt chat decodes them by default
    generation: GenerationConfig = opt(factory=lambda: ChatConfig().generation)

    FLAGS = {}
    DERIVED = ("mode",)


@dataclass
class SmokeConfig(RunConfig):
    out: str = opt("runs/smoke", "output folder (metrics.json, model/)")
    steps: int = opt(150, "optimizer steps", positive=True)
    batch_size: int = opt(16, "reviews per batch", positive=True)
    seq_len: int = opt(48, "characters per review", positive=True)
    n_train: int = opt(2400, "training reviews", positive=True)
    n_eval: int = opt(256, "held-out reviews", positive=True)
    learning_rate: float = opt(2e-3, "peak learning rate", bounds="> 0")
    grad_clip: float = opt(1.0, "clip gradients to this global norm", bounds="> 0")
    n_layer: int = opt(2, "layers of the tiny openai-gpt", positive=True)
    n_embd: int = opt(64, "width of the tiny openai-gpt", positive=True)
    n_head: int = opt(4, "attention heads", positive=True)
    max_vocab: int = opt(3000, "largest character vocabulary", positive=True)

    FLAGS = {}
    DERIVED = ("mode",)
    MOVED = {"max_grad_norm": "grad_clip"}  # the name before 2026-12-06

    def check_relations(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


@dataclass
class ImdbConfig(RunConfig):
    model: str = opt("openai-gpt", "hub name (default openai-gpt), a local Hugging Face openai-gpt folder, or an "
                                   "ms_gpt checkpoint folder (BPE tokenizer; exported through convert)")
    data_dir: str | None = opt(None, "local IMDb: an aclImdb tree, a save_to_disk folder, or train/test parquet or "
                                     "CSV with text,label", none="load_dataset('imdb') from $HF_ENDPOINT")
    out: str | None = opt(None, "output folder (metrics.json, best/, checkpoints/)", required=True)
    epochs: int = opt(3, "the course's 3", positive=True)
    learning_rate: float = opt(2e-5, "peak learning rate", bounds="> 0")
    batch_size: int = opt(4, "reviews per batch", positive=True)
    max_seq_len: int = opt(512, "tokens per review, <bos>/<eos> included", positive=True)
    subset: float = opt(0.1, "share of train and of test used (the course's 0.1; 1 = the full set)",
                        bounds="in (0, 1]")
    val_fraction: float = opt(0.3, "validation share of the subset (the course's 0.7 / 0.3)", bounds="in (0, 1)")
    buckets: tuple | None = opt(None, "static length buckets, e.g. 128,256,512 (the last = --max-seq-len): far less "
                                      "padding", none="none")
    static_shapes: bool | None = opt(None, "pad to fixed shapes (auto: on for Ascend or $MS_GPT_STATIC_SHAPES)")
    course_tokens: bool = opt(False, "encode as the course does (no <bos>/<eos> around the text)")
    weight_decay: float = opt(0.0, "AdamW weight decay", bounds=">= 0")
    warmup_ratio: float = opt(0.0, "share of the steps for linear warmup", bounds="in [0, 1)")
    grad_clip: float = opt(1.0, "clip gradients to this global norm", bounds="> 0")
    eval_batch_size: int | None = opt(None, "reviews per evaluation batch", positive=True, none="--batch-size")
    until_epoch: int | None = opt(None, "stop after epoch N with its checkpoint (continue later with --resume)",
                                  positive=True, none="the last epoch")
    resume: bool = opt(False, "continue the run saved in --out (the same settings)")

    FLAGS = {}
    DERIVED = ("mode",)
    # Settings that may change between a run and its --resume.
    RESUME_FREE = RUN_ONLY + ("until_epoch",)
    MOVED = {"max_grad_norm": "grad_clip"}  # the name before 2026-12-06

    def check_relations(self) -> None:
        if self.until_epoch is not None and self.until_epoch > self.epochs:
            raise ValueError(f"until_epoch ({self.until_epoch}) is after the last epoch ({self.epochs})")
        if self.max_seq_len < 3 and not self.course_tokens:
            raise ValueError(f"max_seq_len must be >= 3 (<bos>, one token, <eos>), got {self.max_seq_len}")
        if self.buckets == ():  # --buckets none
            self.buckets = None
        if self.buckets is not None:
            check_buckets(self.buckets, self.max_seq_len, "max_seq_len")
            if self.static_shapes is False:
                raise ValueError("buckets are a static-shape mode; drop static_shapes=False or the buckets")
