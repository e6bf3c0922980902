"""Unit tests of reference/ (dualnet_ssl), the plugin end to end, and the real peer losses. The rejection tests
("this checker can fail") live beside the checks in theorems/, so that `pytest theorems/` alone notices a weakened
checker."""
