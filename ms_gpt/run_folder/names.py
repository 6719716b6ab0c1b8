"""The names of the files and folders ms_gpt writes at the top of a run folder: one home that
:mod:`~ms_gpt.run_folder.checkpoint` (which writes them) and :mod:`~ms_gpt.run_folder.ownership` (which may
remove them, and needs no MindSpore) both import. Pure Python."""

FORMAT, GPT_CONFIG, MODEL, TOKENIZER = "format.json", "gpt_config.json", "model.ckpt", "tokenizer"
RUN_CONFIG, OPTIMIZER, TRAIN_STATE, METRICS, LOSS_PLOT = (
    "run_config.json", "optimizer.ckpt", "train_state.json", "metrics.json", "loss.png")
CLASSIFIER = "classifier.json"
SFT = "sft.json"  # written by ms-gpt sft: the prompt template; generate then answers in that format
VALUE_HEAD, PPO, PPO_PLOT = "value_head.ckpt", "ppo.json", "ppo.png"  # written by ms-gpt ppo
BEST = "best"  # a fine-tune's best classifier (a folder)
PROMPTING = "prompting.json"  # how the model is prompted: {"form": "documents" | "lines" | "dialogue"}
# Everything a job writes into its run folder (what --overwrite removes; other files are left alone).
RUN_ENTRIES = (TRAIN_STATE, OPTIMIZER, MODEL, VALUE_HEAD, GPT_CONFIG, FORMAT, RUN_CONFIG, METRICS, LOSS_PLOT,
               CLASSIFIER, SFT, PPO, PPO_PLOT, TOKENIZER, BEST, PROMPTING)
# What the other writers put there: ms-gpt convert --to-hf's export (Hugging Face's file names); finetune-imdb's
# Trainer checkpoints and its export of an ms_gpt --model; smoke's saved model.
HF_EXPORT = ("config.json", "model.safetensors")
HF_CHECKPOINTS, HF_INIT, SMOKE_MODEL = "checkpoints", "init_hf", "model"
MINDNLP_ENTRIES = (HF_CHECKPOINTS, SMOKE_MODEL, HF_INIT)
