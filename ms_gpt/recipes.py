"""Defaults that depend on the model at hand (pure Python, no MindSpore).

GPT-1's fine-tuning recipe (learning rate 6.25e-5, λ = 0.5, 3 epochs, warmup over 0.2 % of the steps)
was tuned for a 117M-parameter model pretrained for a month. On the small models a CPU pretrains in
minutes it barely moves the weights, so small models get their own values (measured in tests/test_finetune.py and docs/finetuning.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GPT1_SIZE = 50_000_000  # parameters from which a model counts as GPT-1-size
MAX_LEN_CAP = 512  # the longest default fine-tuning length (GPT-1's context)


@dataclass(frozen=True)
class FinetuneRecipe:
    size: str  # "gpt1" or "small"
    learning_rate: float
    lm_weight: float
    epochs: int  # passes over the training split, at least
    warmup_fraction: float
    pool: str  # what the head reads (ms_gpt.config.POOLS)
    min_steps: int = 0  # a short training split gets more passes: up to this many optimizer steps in all
    patience_steps: int = 0  # early stopping waits at least this many steps' worth of epochs

    def to_dict(self) -> dict:
        return asdict(self)


PATIENCE = 3  # epochs without a better validation accuracy or loss before a run stops (the least it waits)
GPT1_RECIPE = FinetuneRecipe("gpt1", learning_rate=6.25e-5, lm_weight=0.5, epochs=3, warmup_fraction=0.002,
                             pool="last")
# Small models: a 10x-20x larger step, more passes (early stopping ends them), GPT-1's auxiliary LM term, the mean
# of the states for the head, and at least SMALL_RECIPE.min_steps steps with a patience of patience_steps' worth of
# epochs on a short training split. Measured on the keyword task a bag of characters solves
# (ms_gpt.testing.keyword_rows: 300 training rows, 10 steps an epoch at batch 32; a 0.02M-parameter `tiny` character
# model pretrained 60 steps on builtin:demo-en; test accuracy, task seeds 0 / 1 / 2, docs/finetuning.md):
#   the earlier defaults (max, λ 0 under 1M parameters, 10 epochs, patience 3)   0.840 / 0.825 / 0.790
#   mean, 60 epochs, patience 10, λ 0                                             0.925 / 0.945 / 0.905
#   max,  60 epochs, patience 10, λ 0.5                                           1.0   / 0.94  / 0.995
#   mean, 60 epochs, patience 10, λ 0.5 (these defaults)                          0.95  / 0.975 / 0.99
#     (task seeds 3 / 4 / 5: 1.0 / 0.97 / 1.0)
#   mean, 10 epochs, patience 3, λ 0.5                                            0.71  / 0.67  / 0.78
# The LM term needs the steps: in ~100 steps it swamps a tiny model's task loss (0.71-0.78 above; earlier, a
# 0.05M-parameter model pretrained 30 steps on 300 easy English rows stayed at 0.43 at λ 0.5 in 10 epochs, 1.0 at λ 0),
# over 600 it is the better regulariser. On builtin:reviews-zh (long: the floor of 600 steps changes nothing) the
# 1.5M-parameter character model gains about 2 points from λ 0.5 (0.822 ± 0.008 over 3 seeds against 0.80 at λ 0),
# and mean and max pooling tie: 0.8358 against 0.8376 on one trunk (docs/results.md, seed 0; the last token 0.8145
# against mean 0.8278 on another).
SMALL_RECIPE = FinetuneRecipe("small", learning_rate=1e-3, lm_weight=0.5, epochs=10, warmup_fraction=0.05,
                              pool="mean", min_steps=600, patience_steps=100)


def finetune_recipe(n_params: int) -> FinetuneRecipe:
    """GPT-1's recipe for a model of at least :data:`GPT1_SIZE` parameters, the small-model one below."""
    if not isinstance(n_params, int) or n_params <= 0:
        raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
    return GPT1_RECIPE if n_params >= GPT1_SIZE else SMALL_RECIPE


def epoch_plan(recipe: FinetuneRecipe, steps_per_epoch: int) -> tuple[int, int]:
    """``(epochs, patience)`` for a training split of ``steps_per_epoch`` batches: the recipe's epochs, or as many
    as reach its ``min_steps``; :data:`PATIENCE` epochs, or as many as ``patience_steps`` take."""
    if not isinstance(steps_per_epoch, int) or steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be a positive integer, got {steps_per_epoch!r}")
    return (max(recipe.epochs, -(-recipe.min_steps // steps_per_epoch)),
            max(PATIENCE, -(-recipe.patience_steps // steps_per_epoch)))


def default_max_len(n_positions: int) -> int:
    """Fine-tuning length when none is given: the model's whole position table, at most 512."""
    return min(int(n_positions), MAX_LEN_CAP)


# Pretraining's peak learning rate by model size: 3e-3 measured here for the small presets (about 1-2M
# parameters; scripts/studies/compare_nanogpt.py), 1e-3 as nanoGPT's ~10M-parameter character model uses, and GPT-1's
# 2.5e-4 for GPT-1-size models (larger models need smaller steps). A small model whose token embedding is a
# large share of its weights (a big vocabulary: Chinese characters, jieba words) gets 1e-3 as well: on People's
# Daily as characters (4,623 of them, 42 % of a 1.4M-parameter model) 3e-3 ended 0.295 nats/char above nanoGPT
# at 2,000 steps and 1e-3 0.009 above; on chitchat's 98 characters (2 %) 3e-3 ended 0.15 below it.
# The training commands that run in MindSpore's GRAPH_MODE by default: the same losses as a jit step under PyNative,
# and faster on CPU (2 cores). Pretraining, 200 steps on builtin:demo-en (2026-12-07): the small preset 6,438 against
# 4,488 tokens/s, 72 s against 100 s wall; tiny 15.3 s against 15.8 s, compile included (docs/benchmarks.md). SFT, the
# chat recipe's (docs/chat.md: 2,001 steps from the small chitchat model, 2026-12-07): 255 s against 290 s wall, the
# same response losses and sample replies to the last digit. Fine-tuning and reward models, from the sentiment demo's
# small character trunk, one pass over 4,000 training rows (2026-12-07): finetune on builtin:reviews-zh 63 s against
# 74 s wall (7,539 against 5,988 tokens/s), reward on builtin:reviews-zh-pairs 109 s against 139 s; the same test
# accuracy (0.7840; 0.8715) and validation loss to the last digit; finetune on the tiny keyword task 18.6 s against
# 19.4 s, the same 0.975. (With --dropout, reward training in graph mode was seen not to repeat bit for bit:
# docs/rlhf.md.)
GRAPH_MODE = {"pretrain": "graph", "finetune": "graph", "reward": "graph", "sft": "graph"}
PRETRAIN_LR = ((5_000_000, 3e-3), (GPT1_SIZE, 1e-3))
PRETRAIN_LR_LARGE = 2.5e-4
EMBEDDING_SHARE_MAX = 0.25  # above this share of token-embedding weights a small model trains at 1e-3


def pretrain_learning_rate(n_params: int, embedding_params: int = 0) -> float:
    """Pretraining's default peak learning rate for a model of ``n_params`` parameters, of which
    ``embedding_params`` are the token embedding (vocabulary x width)."""
    if not isinstance(n_params, int) or n_params <= 0:
        raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
    if not isinstance(embedding_params, int) or not 0 <= embedding_params <= n_params:
        raise ValueError(f"embedding_params must be an integer in [0, n_params={n_params}], got {embedding_params!r}")
    lr = next((lr for below, lr in PRETRAIN_LR if n_params < below), PRETRAIN_LR_LARGE)
    if lr == PRETRAIN_LR[0][1] and embedding_params > EMBEDDING_SHARE_MAX * n_params:
        return PRETRAIN_LR[1][1]
    return lr


def unk_share(sequences, unk_id: int, special_ids=()) -> float:
    """Share of ``<unk>`` among the text tokens of ``sequences`` (token id lists; specials not counted)."""
    special = set(special_ids) - {unk_id}
    total = unk = 0
    for seq in sequences:
        for t in seq:
            if t in special:
                continue
            total += 1
            unk += t == unk_id
    return unk / total if total else 0.0


# Supervised tuning (ms-gpt sft) by data size: about this many steps by default, in 1 to SFT_MAX_EPOCHS passes
# (a few hundred pairs: 20 passes; a dialogue corpus of 130k exchanges: one pass over a 2,000-step sample), and
# at most SFT_VALID_LIMIT held-out exchanges scored before and after.
SFT_STEP_BUDGET = 2000
# A reward model on a preference set longer than REWARD_PASS_STEPS batches (builtin:chitchat-pairs: 126,035 pairs,
# 3,939 steps a pass, 10 passes = 39,400 steps, 2 h 20 min for a 0.27M-parameter model here) trains one pass over
# its first REWARD_PASS_STEPS batches: the mini-ChatGPT recipe's reward model (1.8M parameters, docs/chat.md) scored
# 0.650 held-out pairwise accuracy on 16,000 pairs x 1 pass at lr 3e-4 (13.5 min) against 0.636 on 8,000 x 2 at
# 1e-3 (7.7 min); neither reached the 0.85 the chat model would need (it does not read its context, docs/chat.md).
# builtin:reviews-zh-pairs (6,666 pairs, 209 steps a pass) is shorter, and keeps every pair and up to 10 passes.
REWARD_PASS_STEPS = 500
SFT_MAX_EPOCHS = 20
SFT_VALID_LIMIT = 512
# Its learning rate by model size: 1e-4 for GPT-1-size models (the value it always had); 3e-4 from 1M parameters
# (the small preset) — the mini-ChatGPT recipe's `small` word model (1.8M parameters, pretrained 1,500 steps on
# builtin:chitchat, tuned for 2,000 steps on the 16,000-exchange sample; docs/chat.md): held-out response loss
# 4.853 -> 4.882 at 1e-3, 4.773 at 3e-4, 4.727 at 1e-4; replies judged on topic on 100 test lines 0.42 / 0.52 /
# 0.44 (the real replies: 0.52); 3e-4 is better than 1e-3 on both, and the reviews' small models tune at 3e-4
# too. Below 1M parameters, 1e-3 (a 0.3M-parameter model tuned on 800 chitchat exchanges for one pass:
# held-out response loss 5.361 -> 5.324 at 1e-4, -> 5.265 at 1e-3).
SFT_LR_TINY, SFT_LR_SMALL, SFT_LR_LARGE = 1e-3, 3e-4, 1e-4
SFT_LR_SMALL_FROM = 1_000_000


def sft_learning_rate(n_params: int) -> float:
    """Supervised tuning's default learning rate for a model of ``n_params`` parameters."""
    if not isinstance(n_params, int) or n_params <= 0:
        raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
    if n_params >= GPT1_SIZE:
        return SFT_LR_LARGE
    return SFT_LR_SMALL if n_params >= SFT_LR_SMALL_FROM else SFT_LR_TINY


# PPO's defaults are the sentiment demo's recipe (docs/rlhf.md, "The sentiment demo"): each of 4 prompts a step
# continued 4 times and scored against the mean of the other 3 (a leave-one-out baseline, as RLOO; GAE λ 1 and no
# value loss, so the value head stays out of it), the exact per-position KL as a loss term at a fixed β 0.3, one
# optimisation pass a step, 400 steps, Adam from 1e-4 falling linearly to 0 at the last step for small policies.
# Judged positive after PPO at the KL after (nats), seeds 0 / 1 / 2, on the demo's 1.4M character policy:
#   constant 5e-5 (the same sum of step sizes), 2026-12-05 models: 0.945 / 0.914 / 0.906 at 5.38 / 5.32 / 4.30;
#     2026-12-06 models: 0.961 / 0.945 / 0.930 at 5.55 / 4.88 / 4.98; the same models with the shared sampler's
#     draws (2026-12-07): 0.953 / 0.906 / 0.961 at 4.47 / 4.57 / 6.19 (seed 2 over the 6-nat budget);
#   on those last models and draws, falling linearly (Schulman et al. anneal PPO's step size; Hugging Face's
#   Trainer decays linearly by default): from 5e-5 (half the sum) 0.953 / 0.898 / 0.914 at 5.31 / 5.29 / 4.74;
#   from 1e-4, the recipe: 0.953 / 0.938 / 0.938 at 5.45 / 5.05 / 4.97, every seed within both targets and the
#   narrowest spread of the three.
# The earlier value-head defaults (trl's shape: GAE λ 0.95, value loss 0.1, the KL in the per-token reward with an
# adaptive β, 4 passes, 1e-4), run for 100 steps at β 0.3 -> target 6, gave 0.891 / 0.961 / 0.875 at
# 6.56 / 7.21 / 6.05 nats: over the 6-nat budget in every seed.
# GPT-1-size policies start at 2e-5 (the constant 1e-5 they had, doubled as the small policies' rate was, for the
# same sum of step sizes; trl's first PPO trainer held 1.41e-5); they were not measured here.
PPO_STEPS = 400
PPO_GROUP_SIZE = 4
PPO_LAM = 1.0
PPO_VF_COEF = 0.0
PPO_KL_PENALTY = "loss"
PPO_INIT_KL_COEF = 0.3
PPO_KL_TARGET = None  # β fixed
PPO_EPOCHS = 1
PPO_LR_SMALL, PPO_LR_LARGE = 1e-4, 2e-5  # at the first step
PPO_SCHEDULE = "linear"  # down to 0 at the last step


# PPO's longest response: 32 tokens (the sentiment demo's), at most half the policy's position table so that a
# prompt has the other half.
PPO_NEW_TOKENS = 32


def ppo_new_tokens(n_positions: int) -> int:
    """PPO's default ``max_new_tokens`` for a policy with ``n_positions`` positions."""
    return max(1, min(PPO_NEW_TOKENS, n_positions // 2))


# The most <unk> a reward model may read in the starting policy's prompts and samples before ms-gpt ppo refuses
# it (--allow-unk: a warning): "mostly" unknown. Measured: an English chat policy's text through the Chinese
# reviews' reward tokenizer is almost all <unk>; a policy and reward model built on one corpus read none.
PPO_UNK_MAX = 0.5
PPO_UNK_SAMPLES = 16  # prompts continued by the starting policy for that check


def ppo_learning_rate(n_params: int) -> float:
    """PPO's default learning rate for a policy of ``n_params`` parameters."""
    if not isinstance(n_params, int) or n_params <= 0:
        raise ValueError(f"n_params must be a positive integer, got {n_params!r}")
    return PPO_LR_LARGE if n_params >= GPT1_SIZE else PPO_LR_SMALL


# How long a generated text or chat reply may grow by default, in the tokenizer's own units: longer than 95 % of
# builtin:chitchat's replies (their 95th percentile: 244 characters, 48 words; 99th: 449 and 88), so a default reply
# ends at its <eos> rather than at the limit. A reply that does reach it is cut after its last full sentence or
# word and marked (ms_gpt.prompting). Model-level calls that do not know the tokenizer take the word figure.
NEW_TOKENS_CHARS, NEW_TOKENS_WORDS = 256, 64


def default_new_tokens(tokenizer_kind: str | None) -> int:
    """The default ``max_new_tokens`` for a tokenizer of this kind (``char``: characters; others: words or
    subword pieces; None: unknown)."""
    return NEW_TOKENS_CHARS if tokenizer_kind == "char" else NEW_TOKENS_WORDS


# ms-gpt chat's decoding (and sft's sample replies, chat-eval's): sampling at temperature 0.8 from the 40 likeliest
# tokens with a repetition penalty of 1.1, never repeating a 3-gram; --strategy beam keeps 5 beams under the same
# n-gram rule. The tutorial's beam search (5 beams, penalty 1.2) looped on the small chat models. Measured on 60
# held-out chitchat contexts (scripts/studies/chat_decoding.py; on topic by ms_gpt.reply_quality's judge, whose
# ceiling/floor there are 0.67/0.32), small preset pretrained 1,500 steps on builtin:chitchat then ms-gpt sft:
#   words (whitespace):  beam 5 + penalty 1.2: on topic 0.40, ended 0.62, repeated 3-gram 0.45, distinct-2 0.11
#                        sample 0.8 / k 40 / 1.1 (+ no 3-gram repeat): 0.52, 0.95, 0.00, 0.63
#                        beam 5 + penalty 1.1 + no 3-gram repeat: 0.47, 0.75, 0.00, 0.14
#   BPE:                 beam 5 + penalty 1.2: 0.42, 0.33, 0.67, 0.04; sample 0.8 / k 40 / 1.1: 0.47, 0.98, 0.02, 0.65
#   characters:          beam 5 + penalty 1.2: 0.35, 0.98, 0.53, 0.15; sample 0.7 / p 0.9: 0.40, 1.0, 0.02, 0.39
CHAT_DECODING = dict(strategy="sample", temperature=0.8, top_k=40, repetition_penalty=1.1, no_repeat_ngram_size=3,
                     num_beams=5)


# --- the help text of the defaults above (``ms-gpt COMMAND --help``): written from the numbers, never restated

def _rate(x: float) -> str:
    """3e-3, 2.5e-4, 6.25e-5: a learning rate as the help text writes it."""
    mantissa, exponent = f"{x:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _millions(n: int) -> str:
    return f"{n / 1e6:g}M"


PRETRAIN_LR_HELP = (f"by model size: {_rate(PRETRAIN_LR[0][1])} below {_millions(PRETRAIN_LR[0][0])} parameters "
                    f"({_rate(PRETRAIN_LR[1][1])} when the token embedding is over {EMBEDDING_SHARE_MAX * 100:g} % of "
                    f"them: a large vocabulary), {_rate(PRETRAIN_LR[1][1])} below {_millions(GPT1_SIZE)}, "
                    f"{_rate(PRETRAIN_LR_LARGE)} (GPT-1's) from {_millions(GPT1_SIZE)}")
FINETUNE_LR_HELP = (f"by model size: {_rate(GPT1_RECIPE.learning_rate)} (GPT-1) for GPT-1-size models, "
                    f"{_rate(SMALL_RECIPE.learning_rate)} for small ones")
FINETUNE_EPOCHS_HELP = (f"by model size: {GPT1_RECIPE.epochs} for GPT-1-size models; {SMALL_RECIPE.epochs} for "
                        f"small ones, or as many as reach {SMALL_RECIPE.min_steps} steps on a short training split")
FINETUNE_PATIENCE_HELP = (f"{PATIENCE}; for a small model on a short training split, as many epochs as "
                          f"{SMALL_RECIPE.patience_steps} steps take")
FINETUNE_LM_WEIGHT_HELP = f"{GPT1_RECIPE.lm_weight:g} (GPT-1's) for every model size"
FINETUNE_POOL_HELP = (f"by model size: {GPT1_RECIPE.pool} (GPT-1's extract token) for GPT-1-size models, "
                      f"{SMALL_RECIPE.pool} for small ones")
FINETUNE_WARMUP_HELP = (f"by model size: {GPT1_RECIPE.warmup_fraction:g} (GPT-1), {SMALL_RECIPE.warmup_fraction:g} "
                        "for small models")
SFT_LR_HELP = (f"by model size: {_rate(SFT_LR_LARGE)} for GPT-1-size models ({_millions(GPT1_SIZE)} parameters "
               f"and up), {_rate(SFT_LR_SMALL)} from {_millions(SFT_LR_SMALL_FROM)} (the small preset), "
               f"{_rate(SFT_LR_TINY)} below")
SFT_EPOCHS_HELP = f"by data size: as many as fit in {SFT_STEP_BUDGET:,} steps, 1 to {SFT_MAX_EPOCHS}"
REWARD_LIMIT_HELP = (f"all, or the first {REWARD_PASS_STEPS} batches' worth (one pass) when the training pairs are more "
                     "(a dialogue corpus)")
REWARD_EPOCHS_HELP = f"1 when the training pairs are cut to {REWARD_PASS_STEPS} batches, else by model size as finetune"
SFT_LIMIT_HELP = f"all, or {SFT_STEP_BUDGET:,} steps' worth when one pass is longer (a dialogue corpus)"
PPO_NEW_TOKENS_HELP = f"{PPO_NEW_TOKENS}, at most half the policy's position table (a prompt has the rest)"
NEW_TOKENS_HELP = (f"by the tokenizer: {NEW_TOKENS_CHARS} characters, {NEW_TOKENS_WORDS} words or subword pieces "
                   "(longer than 95 % of builtin:chitchat's replies)")
PPO_LR_HELP = (f"by model size: {_rate(PPO_LR_LARGE)} for GPT-1-size models ({_millions(GPT1_SIZE)} parameters "
               f"and up), {_rate(PPO_LR_SMALL)} for smaller ones")
