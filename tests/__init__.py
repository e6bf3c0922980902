"""Unit tests of reference/ (dualnet_ssl) and rejection tests of its machinery. The rejection tests of the theorem
checkers live beside them in theorems/ (test_checkers_reject.py, test_hltm_checkers_reject.py, test_tolerances.py),
so that `pytest theorems/` alone notices a weakened checker."""
