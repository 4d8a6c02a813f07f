"""Shared test set-up: offscreen MuJoCo rendering and a quiet TensorFlow."""
import os
import sys

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
