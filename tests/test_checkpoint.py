"""ms_gpt.run_folder.checkpoint: the run folder's files, their format record, and clear errors for the wrong folder."""
import json

import mindspore
import numpy as np
import pytest

from ms_gpt import GPTConfig
from ms_gpt.model import GPT
from ms_gpt.run_folder import checkpoint
from ms_gpt.text import WhitespaceTokenizer


@pytest.fixture()
def saved(tmp_path):
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    tok = WhitespaceTokenizer.build(["the cat sees a ball", "a dog"])
    model = GPT(GPTConfig.preset("tiny", vocab_size=tok.vocab_size))
    checkpoint.save_model(model, tmp_path / "run", tokenizer=tok)
    return model, tok, tmp_path / "run"


def test_save_and_load_a_model_folder(saved):
    model, tok, run = saved
    assert sorted(p.name for p in run.iterdir()) == ["format.json", "gpt_config.json", "model.ckpt", "tokenizer"]
    tok_digest = checkpoint.load_tokenizer(run).digest()  # the tokenizer's content, recorded beside the weights
    assert json.loads((run / "format.json").read_text()) == {"format_version": 1, "kind": "lm", "tokenizer": tok_digest}
    again, tok2 = checkpoint.load_init(run)
    ids = mindspore.Tensor(np.array([[1, 4, 5, 2]], np.int32))
    model.set_train(False)
    np.testing.assert_array_equal(again(ids).asnumpy(), model(ids).asnumpy())
    assert tok2.encode("the cat") == tok.encode("the cat") and again.config == model.config


def test_the_wrong_folder_is_a_clear_error(saved, tmp_path):
    _, _, run = saved
    (run / "format.json").write_text(json.dumps({"format_version": 2, "kind": "lm"}))
    with pytest.raises(checkpoint.CheckpointError, match=r"format_version 2 is newer than this ms_gpt reads \(1\)"):
        checkpoint.load_model(run)
    (run / "format.json").write_text(json.dumps({"format_version": 1, "kind": "classifier"}))
    with pytest.raises(checkpoint.CheckpointError, match=r"holds a fine-tuned classifier \(load it with "
                                                          r"checkpoint.load_classifier\) \(format.json\), not a language"):
        checkpoint.load_model(run)
    (run / "format.json").write_text(json.dumps({"format_version": 1, "kind": "training"}))
    with pytest.raises(checkpoint.CheckpointError, match=r"holds the training state of a fine-tuning run \(its best/"):
        checkpoint.load_model(run)
    with pytest.raises(checkpoint.CheckpointError, match=r"gpt_config.json not found"):
        checkpoint.load_model(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"neither an ms_gpt checkpoint folder"):
        checkpoint.load_init(tmp_path)
    (run / "gpt_config.json").write_text("{oops")
    with pytest.raises(checkpoint.CheckpointError, match=r"gpt_config.json: not valid JSON"):
        checkpoint.read_gpt_config(run)
