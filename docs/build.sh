#!/usr/bin/env bash
# Build the documentation with warnings as errors; executes the tutorials.
#   docs/build.sh            -> docs/_build/html
#   docs/build.sh clean      -> remove the build and the generated gallery first
# Needs the docs extra: pip install -e ".[docs]". No network is needed: MathJax is
# vendored; set GRADSCOPE_DOCS_INTERSPHINX=1 (with network) for links into the torch,
# numpy and scipy docs.
set -euo pipefail
cd "$(dirname "$0")"
if [[ "${1:-}" == "clean" ]]; then
    rm -rf _build auto_tutorials sg_execution_times.rst
fi
export MPLBACKEND=Agg
start=$SECONDS
# -E: re-read every page, so that a warning fails every build, not only the first.
python -m sphinx -E -W --keep-going -b html . _build/html
echo "docs built in $((SECONDS - start)) s: $(pwd)/_build/html/index.html"
