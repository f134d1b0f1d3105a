"""What each stage of dvc.yaml runs on, read from its code without running it: the project
code it imports (``deps``), the software that code needs (``env``, built on ``deps``), and
``jaxpipe-deps``, which checks both against dvc.yaml and environment.yaml (``declared``).
Imports run one way: deps <- env <- declared. No stage imports this package."""
