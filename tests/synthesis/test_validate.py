import pytest

from ray_lcb.synthesis.validate import validate_instruction, validate_response, validate_summary


@pytest.mark.parametrize("text, finish, reason", [
    (None, "stop", "instruction_empty"),
    ("   \n ", "stop", "instruction_empty"),
    ("Instruction: compare " + "and again " * 40, "length", "instruction_truncated"),  # endless
    ("I'm sorry, but I can't help with that.", "stop", "instruction_refusal"),
    ("Instruction: ok", "stop", "instruction_too_short"),
    ("Instruction: " + "x" * 700, "stop", "instruction_too_long"),
    ("Instruction: 12345 67890 !!!! ???? 000", "stop", "instruction_malformed"),
    ("Here is the instruction:", "stop", "instruction_malformed"),  # only a lead-in (seen from SmolLM2)
    ("The instructions are:\nWrite an essay about why cities grow " + "and grow " * 30, "length",
     "instruction_malformed"),  # the instruction itself was cut off
])
def test_garbage_instructions_are_rejected_with_reasons(text, finish, reason):
    assert validate_instruction(text, finish) == (None, reason)


def test_instruction_is_extracted_from_its_line():
    text = 'Sure! Here it is.\nInstruction: "Compare how the essays describe startup funding and hiring."\n'
    assert validate_instruction(text, "stop") == ("Compare how the essays describe startup funding and hiring.", None)


@pytest.mark.parametrize("text", ["Here is the instruction:\nWrite an essay on how cities grow around ports.",
                                  "Instruction:\nWrite an essay on how cities grow around ports.\n"])
def test_a_lead_in_line_is_not_the_instruction(text):
    assert validate_instruction(text, "stop") == ("Write an essay on how cities grow around ports.", None)


def test_responses():
    good = "Startups in the essays raise money from angels first, then from venture funds. " * 2
    assert validate_response(good, "stop", min_chars=80)[0] == good.strip()
    assert validate_response("short", "stop", min_chars=80) == (None, "response_too_short")
    assert validate_response(good, "length", min_chars=80) == (None, "response_truncated")
    loop = "the same words over and over again in a loop " * 20
    assert validate_response(loop, "stop", min_chars=80) == (None, "response_repetitive")
    instruction = "List every piece of advice the essays give to first-time founders about raising money."
    assert validate_response(instruction + " " + instruction, "stop", min_chars=80, instruction=instruction) == \
        (None, "response_echoes_instruction")


def test_summaries_may_be_cut_but_not_empty():
    assert validate_summary("Notes: a, b", "length") == ("Notes: a, b", None)
    assert validate_summary("", "stop") == (None, "summary_empty")


def test_truncated_responses_can_be_trimmed_to_a_sentence():
    text = "The essays agree on one point. Founders should talk to users early. And then they"
    assert validate_response(text, "length", min_chars=20) == (None, "response_truncated")
    assert validate_response(text, "length", min_chars=20, trim_truncated=True)[0] == \
        "The essays agree on one point. Founders should talk to users early."
    assert validate_response("no sentence end at all", "length", min_chars=5, trim_truncated=True) == \
        (None, "response_empty")
