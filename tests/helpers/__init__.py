"""Helpers shared by the test areas: the float64 adder reference, the torchrun launcher, shared
training steps and the repository paths. tests/ is on sys.path (pytest puts the rootdir conftest's
folder there, and run_torchrun passes it on), so test modules import them as ``helpers.<name>``."""
