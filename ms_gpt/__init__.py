"""ms_gpt: GPT-1 from scratch and the MindNLP openai-gpt flow on MindSpore.

Importing this package is cheap: nothing here imports MindSpore. Submodules that need it import it
when they are used, so ``ms-gpt --help`` and ``ms-gpt doctor`` can answer in a broken environment.
"""

__version__ = "0.1.0"

from ms_gpt.config import GPTConfig  # noqa: E402  (pure Python: no MindSpore import)

__all__ = ["__version__", "GPTConfig"]
