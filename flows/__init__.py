"""Prefect flows: the four stages and the pipeline that composes them. Flows only orchestrate."""
