"""Helpers shared by every test folder (importable as ``helpers``: pytest's ``pythonpath`` holds tests/).

Plain functions, no fixtures: each folder's conftest wraps them in the fixtures it needs.

* `helpers.dicom`: synthetic DICOM files written from numpy arrays (imports pydicom on use).
* `helpers.checkpoints`: small seeded CRAL networks and checkpoints (imports torch on use).
* `helpers.predictions`: `FakePrediction`, a prediction record without a model.
"""
