"""Child-process probe (it imports mindnlp): run ``finetune_imdb`` with the model's forward recorded, and
compare what the model received with the batches ``process_dataset`` makes for the same settings.

argv: MODEL_DIR DATA_DIR OUT_DIR MODE (dynamic | fixed | buckets); prints ``RESULT{json}``."""
import collections
import functools
import json
import sys

import numpy as np

from ms_gpt.environment import compat, device
from ms_gpt.flows import mindnlp_imdb as mi

model_dir, data_dir, out_dir, mode = sys.argv[1:5]
cfg = mi.ImdbConfig(model=model_dir, data_dir=data_dir, out=out_dir, device="CPU", epochs=1, learning_rate=1e-3,
                    batch_size=8, max_seq_len=64, subset=0.3, static_shapes=mode != "dynamic",
                    buckets=(16, 32, 64) if mode == "buckets" else None)
device.setup("CPU", mode="pynative", seed=0, static_shapes=cfg.static_shapes)
compat.import_mindnlp()
from transformers import OpenAIGPTForSequenceClassification  # noqa: E402

seen = {"train": [], "eval": []}
original = OpenAIGPTForSequenceClassification.forward


@functools.wraps(original)  # the Trainer reads the signature to decide which kwargs to pass
def recording_forward(self, input_ids=None, attention_mask=None, labels=None, **kw):
    seen["train" if self.training else "eval"].append(
        tuple(np.asarray(t.numpy()).astype(np.int64).tobytes() + str(tuple(t.shape)).encode()
              for t in (input_ids, attention_mask, labels)))
    return original(self, input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kw)


OpenAIGPTForSequenceClassification.forward = recording_forward
metrics = mi.finetune_imdb(cfg)

tok = mi.load_tokenizer(model_dir)
data = mi.load_data(data_dir, cfg)
common = dict(tokenizer=tok, max_seq_len=cfg.max_seq_len, static_shapes=cfg.static_shapes, buckets=cfg.buckets,
              seed=cfg.seed)


def keys(batched):
    return [tuple(np.asarray(b[k]).astype(np.int64).tobytes() + str(tuple(b[k].shape)).encode()
                  for k in ("input_ids", "attention_mask", "labels")) for b in batched.batches]


made_train = keys(mi.BatchedDataset(mi.process_dataset(data["train"], batch_size=8, shuffle=True, **common)))
made_val = keys(mi.BatchedDataset(mi.process_dataset(data["validation"], batch_size=8, fill_remainder=True, **common)))
made_test = keys(mi.BatchedDataset(mi.process_dataset(data["test"], batch_size=8, fill_remainder=True, **common)))
C = collections.Counter
print("RESULT" + json.dumps({
    "train_same": C(seen["train"]) == C(made_train),
    "train_order_differs": seen["train"] != made_train,  # the Trainer's sampler reorders whole batches
    "n_train": [len(seen["train"]), len(made_train)],
    # the Trainer evaluates the validation split after the epoch and again at the end, then the test split
    "eval_same": C(seen["eval"]) == C(made_val * 2 + made_test),
    "n_eval": [len(seen["eval"]), len(made_val), len(made_test)],
    "shapes": metrics["shapes"], "test_accuracy": metrics["test_accuracy"],
}))
