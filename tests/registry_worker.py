"""One contender in the registry concurrency tests (run as a separate process).

``python registry_worker.py WORKDIR SEED FD_DOMAIN CLASS_ACCURACY MODEL_NAME``: makes a candidate (real
training run, tiny generator whose test scores are known), writes WORKDIR/ready, waits for ../go so that all
contenders start registering together, then registers + promotes and writes WORKDIR/result.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from registry_helpers import fake_scorer, make_candidate  # noqa: E402


def main() -> None:
    work, seed, fd, acc, name = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    from productgan.registry.config import RegisterConfig
    from productgan.registry.register import register_generator

    gen, metrics = make_candidate(work, {"fd_domain": fd, "class_accuracy": acc}, seed=seed)
    (work / "prepared").mkdir()
    (work / "ready").touch()
    while not (work.parent / "go").exists():
        time.sleep(0.05)
    cfg = RegisterConfig(model_name=name, lock_timeout_s=240)
    result = register_generator(gen, metrics, data_dir=work / "prepared", cfg=cfg, scorer=fake_scorer)
    (work / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
