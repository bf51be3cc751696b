"""The test suite; its folders mirror the packages of mosel/ (plus services/ and tuning/)."""
