"""Write each image's pip requirements from the names in deployments/requirements/*.txt.

The name files say which packages an image needs; pyproject.toml stays the one place for
version ranges and extras (e.g. `openai[aiohttp]`), constraints.txt for exact versions. Fails
when a pyproject dependency is in no file, so a new dependency cannot silently miss an image.

    python3 deployments/docker/requirements.py build/requirements
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = ROOT / "deployments" / "requirements"


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_requirements() -> dict[str, str]:
    """pyproject's dependencies by normalized name, each as written there."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {normalize(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]): spec for spec in deps}


def main(dest: Path) -> int:
    specs = project_requirements()
    used: set[str] = set()
    dest.mkdir(parents=True, exist_ok=True)
    for names in sorted(NAMES.glob("*.txt")):
        lines = []
        for raw in names.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line or line.startswith("-r "):
                lines.append(line)
                continue
            key = normalize(line)
            if key not in specs:
                print(f"{names.name}: {line!r} is not a dependency in pyproject.toml", file=sys.stderr)
                return 1
            used.add(key)
            lines.append(specs[key])
        if names.stem != "not-in-images":
            (dest / names.name).write_text("\n".join(line for line in lines if line) + "\n")
    missing = sorted(set(specs) - used)
    if missing:
        print(f"pyproject dependencies in no image: {', '.join(missing)}; add each to the "
              f"image that needs it in {NAMES.relative_to(ROOT)}/ (or to not-in-images.txt)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "requirements"))
