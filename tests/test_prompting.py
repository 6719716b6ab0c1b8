"""How a checkpoint is prompted (ms_gpt.prompting): the form recorded in the run folder, the form of folders
written before the record, and what each form makes of a prompt and an answer."""

import json

import pytest

from ms_gpt.prompting import CUT_MARK, Prompter, cut_at_boundary, join_text, score_input, suppressed_ids
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


def test_the_default_length_is_in_the_tokenizers_units_and_a_reply_at_the_limit_is_cut_at_a_boundary():
    from ms_gpt import recipes
    from ms_gpt.text import CharTokenizer

    t = tok()
    chars = CharTokenizer.build(["the cat sat on the mat. how are you?"])
    assert Prompter(t, "documents").generation(checkpoint_free_config()).max_new_tokens == 64
    assert Prompter(chars, "lines").generation(checkpoint_free_config()).max_new_tokens == 256
    assert recipes.default_new_tokens("bpe") == recipes.default_new_tokens(None) == 64
    assert Prompter(t, "documents").generation(checkpoint_free_config(max_new_tokens=5)).max_new_tokens == 5
    # a sentence ends after a third of the text: cut there; none does: the last (partial) word goes
    assert cut_at_boundary("the cat sat. how are yo") == "the cat sat."
    assert cut_at_boundary("hi. the cat sat on the mat and how are yo") == "hi. the cat sat on the mat and how are"
    assert cut_at_boundary("nospaces") == "nospaces"
    lines = Prompter(chars, "lines")
    new = chars.encode("the cat sat. how are yo")
    assert lines.answer(new, limit=len(new)) == "the cat sat." + CUT_MARK  # reached the limit: cut, marked
    assert lines.answer(new, limit=len(new) + 1) == "the cat sat. how are yo"  # stopped by the caller: as is
    ended = chars.encode("the cat sat") + [chars.eos_id]
    assert lines.ended(ended) and lines.answer(ended, limit=len(ended)) == "the cat sat"  # ended: never cut


def test_a_reward_model_reads_what_it_was_trained_on():
    assert score_input("auto", {"score_input": "text"}) == "text"
    assert score_input("auto", {}) == "pair" and score_input("text", {"score_input": "pair"}) == "text"


def checkpoint_free_config(**settings):
    from ms_gpt.config import GenerationConfig

    return GenerationConfig(**settings)
