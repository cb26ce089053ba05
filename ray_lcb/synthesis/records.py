"""Row schemas between synthesis stages, and of the output files.

Every stage reads and writes rows of ``ROW_SCHEMA``; a dropped row keeps
flowing with ``drop_reason`` set (later stages pass it through) so the
writer can record it and a resumed job does not redo it.
"""

import pyarrow as pa

LONG_INPUT = "long_input"
LONG_OUTPUT = "long_output"

ROW_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("data_type", pa.string()),          # long_input | long_output
    ("instruction_type", pa.string()),
    ("seed_chunk", pa.string()),
    ("target_tokens", pa.int64()),
    ("rng_seed", pa.int64()),
    ("instruction", pa.string()),
    ("document", pa.string()),           # long_output: the target text
    ("doc_ids", pa.list_(pa.string())),
    ("doc_texts", pa.list_(pa.string())),
    ("summaries", pa.list_(pa.string())),
    ("summary_levels", pa.int64()),
    ("num_chunks", pa.int64()),
    ("response", pa.string()),
    ("drop_reason", pa.string()),
    ("drop_stage", pa.string()),
    ("llm_calls", pa.int64()),
    ("llm_completion_tokens", pa.int64()),
    ("retries", pa.int64()),
])

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

SAMPLE_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("messages", pa.list_(MESSAGE)),
    ("kind", pa.string()),               # "long": loss over all tokens when training
    ("data_type", pa.string()),
    ("instruction", pa.string()),
    ("instruction_type", pa.string()),
    ("instruction_position", pa.string()),
    ("doc_ids", pa.list_(pa.string())),
    ("num_documents", pa.int64()),
    ("num_chunks", pa.int64()),
    ("num_summaries", pa.int64()),
    ("summary_levels", pa.int64()),
    ("summaries", pa.list_(pa.string())),
    ("input_tokens", pa.int64()),
    ("output_tokens", pa.int64()),
    ("total_tokens", pa.int64()),
    ("target_tokens", pa.int64()),
    ("generator_model", pa.string()),
    ("student_model", pa.string()),
    ("prompt_version", pa.string()),
    ("seed", pa.int64()),
    ("llm_calls", pa.int64()),
    ("llm_completion_tokens", pa.int64()),
])

LEDGER_SCHEMA = pa.schema([  # one row per finished sample id, kept or dropped
    ("sample_id", pa.string()),
    ("data_type", pa.string()),
    ("drop_stage", pa.string()),
    ("drop_reason", pa.string()),
    ("llm_calls", pa.int64()),
    ("llm_completion_tokens", pa.int64()),
])


def empty_row(**values) -> dict:
    row = {name: None for name in ROW_SCHEMA.names}
    row.update(doc_ids=[], doc_texts=[], summaries=[], summary_levels=0, num_chunks=0, llm_calls=0,
               llm_completion_tokens=0, retries=0)
    row.update(values)
    return row


def to_table(rows: list[dict], schema: pa.Schema = ROW_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
