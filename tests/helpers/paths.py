"""The repository's folders, for tests that read docs, run scripts or start subprocesses."""
import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)
