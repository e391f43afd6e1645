"""Run by Python at start-up in a child process whose PYTHONPATH starts with this folder (tests/nan_injection.py
``child_env``): that child's training gets a NaN in D's loss at step $NAN_TEST_AT_STEP ($NAN_TEST_TIMES times,
else every time the step runs)."""

import importlib.util
import os
from pathlib import Path

_HELPER = Path(__file__).resolve().parents[1] / "nan_injection.py"  # loaded by path: tests/ stays off sys.path
_spec = importlib.util.spec_from_file_location("nan_injection", _HELPER)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
_times = os.environ.get(_module.TIMES_ENV)
_module.inject_nan(setattr, int(os.environ[_module.AT_STEP_ENV]), int(_times) if _times else None)
