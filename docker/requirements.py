"""Print the image's pip requirements: pyproject's dependencies with TensorFlow swapped.

Usage (in the Dockerfile, before the code is copied, so this layer is cached across code
changes): python requirements.py pyproject.toml "tensorflow-cpu==2.21.0" flower > req.txt

pyproject pins `tensorflow`; the GPU image wants `tensorflow[and-cuda]` and the CPU image
`tensorflow-cpu`. Installing from this list and then the project with --no-deps keeps pip
from pulling the full `tensorflow` back in next to `tensorflow-cpu`.
"""

import re
import sys
import tomllib

pyproject, tf_variant, *extras = sys.argv[1:]
project = tomllib.load(open(pyproject, "rb"))["project"]
reqs = list(project["dependencies"])
for extra in extras:
    reqs += project.get("optional-dependencies", {}).get(extra, [])
name = lambda r: re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower()  # noqa: E731
reqs = [r for r in reqs if name(r) != "tensorflow"] + [tf_variant]
print("\n".join(reqs))
