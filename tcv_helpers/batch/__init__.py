"""Batch runs (`tcv run`, `tcv slurm`): the papermill runner, the notebook rules, Slurm scripts and sweeps.

``runner`` and ``nbcheck``; ``slurm`` (the modes of ``tcv slurm``) over ``slurm_site`` (presets,
resources, environment), ``slurm_scripts`` (job scripts) and ``slurm_queue`` (sbatch, squeue);
``sweep`` (sweep files and reports). Importing this package imports none of its modules: import
the one you need.
"""
