"""Prompt templates stored in Prefect, editable in the UI; flows take them as `block:NAME`.

    prefect block register -m blocks.templates            # idempotent
    python -m blocks.templates save examples/templates/company-profile.yaml
    augment-pipeline ... template="block:company-profile"

The block holds the same YAML a template file does, so a template moves between a file and
the UI unchanged, and its version (the content hash) is the same either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect.blocks.core import Block
from pydantic import Field

from augment_it.templates import PromptTemplate, TemplateError, load_template, parse_template

BLOCK_PREFIX = "block:"


class PromptTemplateBlock(Block):
    """One prompt template: name, provider, model, prompt and output fields, as YAML."""

    _block_type_name = "Augment Prompt Template"
    _block_type_slug = "augment-prompt-template"
    _description = ("A prompt template for Augment-It (the YAML of a template file). "
                    "Use it in a run as template `block:<block name>`.")

    template: str = Field(description="The template YAML: name, provider, model, system, prompt, "
                                      "input, output, temperature, max_tokens.")

    def parse(self, origin: str = "template block") -> PromptTemplate:
        return parse_template(self.template, origin=origin)

    @classmethod
    def from_file(cls, path: str | Path) -> PromptTemplateBlock:
        text = Path(path).read_text(encoding="utf-8")
        parse_template(text, origin=str(path))  # refuse to store a template that cannot be used
        return cls(template=text)


def load_prompt_template(ref: str) -> PromptTemplate:
    """A template from `block:NAME` (a stored block) or from a path or URL."""
    if not ref.startswith(BLOCK_PREFIX):
        return load_template(ref)
    name = ref.removeprefix(BLOCK_PREFIX)
    try:
        block = PromptTemplateBlock.load(name, _sync=True)  # a value, not a coroutine, in async tasks too
    except ValueError as exc:
        raise TemplateError(f"no prompt template block named {name!r}: create one in the UI "
                            f"(Augment Prompt Template) or with "
                            f"`python -m blocks.templates save FILE --name {name}`") from exc
    return block.parse(origin=f"template block {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blocks.templates",
                                     description="Store a template file as a prompt template block.")
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="save (or replace) a template block from a YAML file")
    save.add_argument("file")
    save.add_argument("--name", help="block name (default: the template's own name)")
    args = parser.parse_args(argv)
    try:
        block = PromptTemplateBlock.from_file(args.file)
    except (OSError, TemplateError) as exc:
        print(exc, file=sys.stderr)
        return 2
    name = args.name or block.parse().name
    block.save(name, overwrite=True)
    print(f"saved template block {name!r}: use template 'block:{name}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
