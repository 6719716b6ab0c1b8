"""The environment a run finds: devices, versions, and the gaps between packages.

- ``device``: the target (Ascend, GPU, CPU), the execution mode, seeds and the static-shape policy; it picks
  the process's default kernel backend (``ms_gpt.backend.choose``).
- ``distributed``: data-parallel workers started by msrun.
- ``doctor``: ``ms-gpt doctor``, the installed versions against the supported sets.
- ``compat``: shims for mindnlp 0.5.x on CPU/GPU, imported only by the MindNLP flows.
"""
