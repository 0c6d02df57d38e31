"""Prefect blocks: credentials, connections and prompt templates editable in the UI."""
