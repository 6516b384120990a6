"""Importers: the logs real completion clients write -> contract events (JSON Lines).

    python -m echo import --from continue ~/.continue/dev_data/0.2.0 --out imported/
    python -m echo import --from tabby ~/.tabby/events --out imported/ --model-id StarCoder-1B
    python -m echo run --events imported/events.jsonl --lake lake/

``--out DIR`` receives ``events.jsonl`` (ready for ``ingest``), ``refused.jsonl`` (every
malformed client record with its file, line and reason) and ``import_report.json``; the
counts are printed as one JSON line, and ``read == converted + skipped + refused``.
Mapping choices: :mod:`echo.importers.continuedev`, :mod:`echo.importers.tabby` and
docs/importers.md. Pure Python: no Spark session.
"""
