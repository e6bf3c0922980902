"""Unit tests of reference/ and tests that every checker can fail."""
