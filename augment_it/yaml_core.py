"""A YAML loader with YAML 1.2's core-schema scalars, for the YAML users write (records, templates).

YAML 1.1 (PyYAML's default) reads `NO`, `on` and `yes` as booleans, `01234` as octal, `1:30` as
sexagesimal and dates as timestamps. In records these are country codes, zip codes and text; in a
template, the labels `[yes, no]`. Only `true`/`false`, decimal ints without leading zeros, `0o`
octal and decimal floats are resolved, and everything else stays the string it was written as.
"""

from __future__ import annotations

import re

import yaml


class CoreLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] in ("null", "merge")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+)$"), list("-+0123456789"))
CoreLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*(?:[eE][-+]?[0-9]+)?
                    |(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+
                    |\.[0-9]+(?:[eE][-+]?[0-9]+)?
                    |\.(?:inf|Inf|INF))
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))
