"""The prompt playground's domain: sandboxed templates, versions and diffs, output parsing and
validation, batch-evaluation scoring. No database, no Streamlit, no Celery here."""
