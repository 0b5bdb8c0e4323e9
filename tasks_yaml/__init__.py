"""The VAL probing task YAML files for lm-eval, installed as the package ``val_probing.tasks_yaml``.

It is a package so that the ``lm_eval.tasks`` entry point can name it: lm-eval's proposed plugin hook
(PR #4015) scans the folder of the module the entry point names. ``val_probing.lm_eval_tasks`` says
where this folder is; ``val-probing register`` makes these tasks visible to lm-eval 0.4.13.
"""
