"""Augment-It domain logic: records, sources, templates, providers, review and export.

Nothing here imports Prefect; `tasks/` and `flows/` wrap these functions for orchestration.
"""
