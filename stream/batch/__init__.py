"""Batch mode: the provider's Batch API (or a local runner of its JSONL format) instead of streamed answers.

```
submit   the run's planner ─▶ lines.BatchRoute ─▶ JSONL files (lines.Chunker) ─▶ send.py: upload, create
         the embed pass ─▶ embed_lines.EmbedRoute ─▶ /v1/embeddings lines of many inputs, files of their own
status   api.py: each batch's state and request counts, stored; priced at the batch rate (report.py)
collect  api.py: output and error files ─▶ ingest.py ─▶ the run's writer (commit, write, mark)
cancel   api.py: cancel what is still running; what was done is collected as usual
```
Every file and batch id is in the checkpoint (`sinks.batches`) before the step that needs it, so a crash at
any point resumes by id: no line is uploaded twice, no answer written twice.
"""
