"""How a checkpoint is prompted (ms_gpt.prompting): the form recorded in the run folder, the form of folders
written before the record, and what each form makes of a prompt and an answer."""

import json

import pytest

from ms_gpt.prompting import Prompter, join_text, score_input, suppressed_ids
from ms_gpt.run_folder import checkpoint
from ms_gpt.text import WhitespaceTokenizer


def tok():
    t = WhitespaceTokenizer.build(["the cat sat on the mat", "how are you fine thanks"])
    t.add_special("<sep>")
    return t


def write(folder, name, record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(record))


@pytest.mark.parametrize("files,form", [
    ({}, "documents"),  # a Hugging Face folder, or a pretrain run on <bos> line <eos>
    ({"run_config.json": {"boundaries": "eos"}}, "documents"),
    ({"run_config.json": {"boundaries": "newline"}}, "lines"),
    ({"run_config.json": {"boundaries": "newline"}, "sft.json": {"template": "x"}}, "dialogue"),
    ({"ppo.json": {"boundaries": "newline", "chat": False}, "run_config.json": {}}, "lines"),
    ({"ppo.json": {"boundaries": "eos", "chat": True}, "sft.json": {}}, "dialogue"),
])
def test_folders_written_before_the_record_keep_their_form(tmp_path, files, form):
    for name, record in files.items():
        write(tmp_path, name, record)
    assert checkpoint.prompt_form(tmp_path) == form
    checkpoint.save_prompt_form(tmp_path, "lines")  # the record wins over the guess
    assert checkpoint.prompt_form(tmp_path) == "lines"


def test_a_bad_record_is_named(tmp_path):
    write(tmp_path, "prompting.json", {"form": "poetry"})
    with pytest.raises(checkpoint.CheckpointError, match=r"prompting.json: form 'poetry' is not one of documents, "
                                                         r"lines, dialogue"):
        checkpoint.prompt_form(tmp_path)
    with pytest.raises(ValueError, match="prompt form 'chat' is not one of"):
        checkpoint.save_prompt_form(tmp_path, "chat")


def test_each_form_encodes_a_prompt_and_reads_an_answer():
    t = tok()
    e = t.encode
    docs, dialogue = Prompter(t, "documents"), Prompter(t, "dialogue")
    assert docs.encode("the cat") == [t.bos_id] + e("the cat")
    assert dialogue.encode("how are you") == [t.bos_id] + e("how are you") + [t.sep_id]
    assert docs.stops() == (t.eos_id,) and docs.newline is None
    gen = docs.generation(checkpoint_free_config())
    assert gen.eos_id == t.eos_id and gen.stop_ids == () and set(gen.suppress_ids) == set(suppressed_ids(t))
    assert t.sep_id in gen.suppress_ids and t.eos_id not in gen.suppress_ids
    assert docs.continuation(docs.encode("the cat"), e("sat on") + [t.eos_id]) == "the cat sat on"
    assert dialogue.continuation(dialogue.encode("how are you"), e("fine thanks") + [t.eos_id]) == "fine thanks"
    assert join_text(t, "a", "", "b") == "a b"


def test_a_reward_model_reads_what_it_was_trained_on():
    assert score_input("auto", {"score_input": "text"}) == "text"
    assert score_input("auto", {}) == "pair" and score_input("text", {"score_input": "pair"}) == "text"


def checkpoint_free_config():
    from ms_gpt.config import GenerationConfig

    return GenerationConfig()
