"""The run folder's infrastructure: what makes an output folder safe to write, stop and resume.

- ``checkpoint``: the one owner of a run folder's files (model, tokenizer, run config, metrics, training
  state) with a commit point, and the loaders every command uses.
- ``names``: the file names a run folder holds (pure Python: ownership reads them without MindSpore).
- ``atomic``: files written whole or not at all (temp file, fsync, rename).
- ``run_lock``: one writer per folder.
- ``ownership``: which command's folder this is; refusing to overwrite what ms_gpt did not write.
- ``interrupt``: Ctrl-C and termination signals turned into a save and a clean stop.
"""
