"""Seeing a run: the end-of-run summary, the trace, the HTML report.

Everything here reads a run directory (its store, its ``run_metadata.yaml``, the tails
of its attempts' logs) and writes nothing into the store, so it works on a finished run,
on a run an engine is still writing (SQLite readers do not block the writer) and on a
copy of a run directory with no backend at hand.

- :mod:`~gristmill.report.attempts`: one row per attempt, streamed from the store with
  the derived fields (node id, start, queue wait, requested resources, causes);
- :mod:`~gristmill.report.trace`: the trace fields and the TSV/CSV/JSON writers;
- :mod:`~gristmill.report.stats`: exact per-task aggregates from one pass over the
  attempts (quantiles, retries by cause, requested vs used) and failure clusters;
- :mod:`~gristmill.report.usage`: requested vs used per task in one SQL query
  (``gristmill status``), and ``resources --suggest``'s sizing rule;
- :mod:`~gristmill.report.summary`: the rich end-of-run table of ``run``/``resume``;
- :mod:`~gristmill.report.html`: the self-contained HTML report (plotly inlined), with
  :mod:`~gristmill.report.dag` drawing the task-level DAG as SVG.
"""
