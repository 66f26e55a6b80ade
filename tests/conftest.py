"""Test set-up shared by every test: Keras 2 before TensorFlow, the repo root on sys.path, quiet TF."""
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("PAM_TF_OFFLINE", "1")  # tests never reach the network

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
