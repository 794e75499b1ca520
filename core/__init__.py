"""Transfer Studio core: datasets, backbones, training, evaluation and export.

This package never imports streamlit; pages and ui/ sit on top of it.
"""

__version__ = "0.1.0"
