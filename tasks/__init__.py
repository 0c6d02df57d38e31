"""Prefect tasks: thin wrappers that put the domain functions of `augment_it` under orchestration."""
