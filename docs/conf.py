"""Sphinx configuration for the gradscope documentation.

Build (warnings are errors): ``docs/build.sh`` or
``sphinx-build -W --keep-going -b html docs docs/_build/html``.

The build needs no network: MathJax is vendored in ``_static/mathjax`` and intersphinx
(links into the torch, numpy and scipy docs) is off unless ``GRADSCOPE_DOCS_INTERSPHINX=1``
is set, because it downloads the projects' inventories at build time.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document the gradscope of this checkout, whatever is installed.
sys.path.insert(0, str(ROOT))

import gradscope  # noqa: E402

os.environ.setdefault("MPLBACKEND", "Agg")

project = "gradscope"
author = "gradscope developers"
copyright = "gradscope developers"
release = gradscope.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

INTERSPHINX = os.environ.get("GRADSCOPE_DOCS_INTERSPHINX", "0") == "1"
if INTERSPHINX:
    extensions.append("sphinx.ext.intersphinx")
    intersphinx_timeout = 10
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "scipy": ("https://docs.scipy.org/doc/scipy", None),
    }

exclude_patterns = ["_build", "tutorials/README.rst", "sg_execution_times.rst"]
templates_path: list[str] = []
root_doc = "index"

# -- autodoc -------------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_class_signature = "mixed"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, so dataclass fields are not listed twice
napoleon_use_rtype = False
# Type hints go into the parameter descriptions (Sphinx's own autodoc_typehints; the
# sphinx-autodoc-typehints extension emits RemovedInSphinx10Warning under Sphinx 9).
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
python_maximum_signature_line_length = 88

# Every cross-reference must resolve (-W makes a broken one an error). Without intersphinx
# the external targets (torch, the standard library, scipy, ...) cannot resolve, so they
# are exempt; gradscope's own type aliases appear in signatures but have no page.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(gradscope\.[a-z_]+\.)?(Matvec|LayerFn|Params|Estimator|Schedule|Extra|Linearization)",
    ),
]
if not INTERSPHINX:
    nitpick_ignore_regex.append(
        (
            r"py:.*",
            r"(torch|nn|collections|typing|pathlib|Path|logging|scipy|numpy|np|pandas"
            r"|matplotlib)(\..*)?",
        )
    )

# -- math ----------------------------------------------------------------------------
# MathJax 3 from the npm package, vendored (see _static/mathjax/README.md): no CDN.
mathjax_path = "mathjax/tex-chtml.js"

# -- HTML ----------------------------------------------------------------------------
html_theme = "furo"
html_title = f"gradscope {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
pygments_style = "friendly"
pygments_dark_style = "monokai"

# -- sphinx-gallery: tutorials executed at build time -----------------------------
sphinx_gallery_conf = {
    "examples_dirs": "tutorials",
    "gallery_dirs": "auto_tutorials",
    "filename_pattern": r"/plot_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "doc_module": ("gradscope",),
    "show_memory": False,
    "plot_gallery": "True",
    "write_computation_times": False,
}

# torch emits this on import in some builds; it is not about the docs.
warnings.filterwarnings("ignore", message=".*Matplotlib is currently using agg.*")
