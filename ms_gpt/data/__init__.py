"""Corpora (built-in offline sources and local files) and mindspore.dataset pipelines."""

from ms_gpt.data.corpus import BUILTINS, demo_en, load_corpus, peoples_daily, strip_pos_tags, train_val_split
from ms_gpt.data.batching import IGNORE, Shapes, batch_rows
from ms_gpt.data.pipeline import block_dataset, encode_lines, sentence_dataset

__all__ = ["BUILTINS", "load_corpus", "peoples_daily", "demo_en", "strip_pos_tags", "train_val_split",
           "IGNORE", "Shapes", "batch_rows", "block_dataset", "encode_lines", "sentence_dataset"]
