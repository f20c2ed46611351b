"""The pipeline's plan: the stage table (what each stage reads and runs), its code deps, and dvc.yaml.

Depends on config and layout only (no domain package): `seppo plan` writes dvc.yaml without
importing torch, diffusers or any stage's code.
"""
