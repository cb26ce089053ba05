"""Prompt texts of the synthesis workflow. Change PROMPT_VERSION with any edit:
it is stored with every sample, so datasets made with different prompts can be told apart."""

PROMPT_VERSION = "v1"

INSTRUCTION = """Here is a random passage, only for inspiration:
---
{seed_chunk}
---
Write one instruction that a curious reader might give to a research assistant about a topic related to the passage. The instruction {type_description}. It must require reading and combining several different documents, not just this passage, and must not mention "the passage".
Reply with one line that starts with "Instruction:"."""

QUERY_FOCUSED_SUMMARY = """Instruction: {instruction}

Text:
---
{text}
---
Write notes of at most {max_words} words with only the facts and ideas from the text above that help to carry out the instruction. Leave out everything unrelated. If nothing in the text is relevant, reply exactly: NOTHING RELEVANT"""

RESPONSE = """Notes taken from several documents:
{summaries}

Instruction: {instruction}

Using the notes, write a complete, well-organised answer to the instruction."""

BACK_TRANSLATION = """Here is a text{truncation_note}:
---
{document}
---
Write the instruction that a user could have given to a writer to produce exactly this text: its topic, form, style and length (about {num_words} words).
Reply with one line that starts with "Instruction:"."""

NOTHING_RELEVANT = "NOTHING RELEVANT"
