"""`productgan train` as a process: SIGKILL then --resume (same step, optimisers, EMA, losses and MLflow
run as an uninterrupted run), the SIGTERM checkpoint, the NaN guard failing the run, and DDP on 2 CPU
processes (gloo) ending with identical weights on both ranks."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from nan_injection import child_env
from safetensors.torch import load_file
from train_helpers import small_prepared

from productgan.gan.checkpoint import list_checkpoints, load_checkpoint, load_latest
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer
from productgan.io import read_json
from productgan.params import load_section


@pytest.fixture()
def small_data(tmp_path, fmnist_small):
    return small_prepared(tmp_path, fmnist_small)

# precision and threads fixed: a run compared for identical weights with another must compute alike. `auto`
# precision measures fp32 against bf16 on CPUs with native bf16 (two runs may pick differently), and
# num_threads 0 keeps the process's thread count, which other tests in the pytest process may have set (a
# convolution sums in another order on 1 thread than on 2)
TINY_RECIPE = {"g_channels": 4, "d_channels": 4, "lr_schedule": "constant", "precision": "fp32", "num_threads": 1}


def write_params(root: Path, **train) -> Path:
    doc = {"train": {
        "recipe": "default", "max_minutes": None,
        "steps": 100000, "batch_size": 4, "checkpoint_every": 4, "sync_every": 1, "log_every": 2,
        "sample_every": 1000, "grid_columns": 2, **TINY_RECIPE, **train,
    }}
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture()
def env(cli_env, tmp_path):
    e = dict(cli_env)
    e["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    e["PYTHONUNBUFFERED"] = "1"
    return e


def start_train(tmp_path: Path, env: dict, data: Path, *extra: str) -> subprocess.Popen:
    out = open(tmp_path / "stdout.txt", "ab")  # noqa: SIM115 - closed by the process's end
    err = open(tmp_path / "stderr.txt", "ab")  # noqa: SIM115
    cmd = [sys.executable, "-m", "productgan", "train", "--data", str(data), "--out", "gen", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=err)


def wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 150.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"train exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_status(tmp_path: Path, run_id: str) -> str:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status


def test_sigkill_then_resume_continues_like_an_uninterrupted_run(tmp_path, monkeypatch, env, small_data):
    write_params(tmp_path)
    ckpt = tmp_path / "checkpoints" / "train"
    proc = start_train(tmp_path, env, small_data)
    wait_for(lambda: any(s >= 8 for s, _ in list_checkpoints(ckpt)), proc, "a checkpoint at step >= 8")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # every checkpoint left behind is whole (a temp file of a write in progress is not a checkpoint)
    for _step, path in list_checkpoints(ckpt):
        load_checkpoint(path)
    _, killed = load_latest(ckpt)
    k, run_id = killed["step"], killed["run_id"]

    res = subprocess.run(
        [sys.executable, "-m", "productgan", "train", "--data", str(small_data), "--out", "gen", "--resume",
         "--steps", str(k + 4)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"at step {k}" in res.stderr
    _, final = load_latest(ckpt)
    assert final["step"] == k + 4 and final["run_id"] == run_id
    assert final["opt_d"]["state"][0]["step"].item() == k + 4  # Adam's step count went on from k
    assert read_json(tmp_path / "gen" / "run.json")["run_id"] == run_id
    assert run_status(tmp_path, run_id) == "FINISHED"
    steps_logged = {m.step for m in MlflowClient(env["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, "loss_d")}
    assert min(steps_logged) <= k < max(steps_logged)  # one run holds the losses before and after the kill

    # the same run without the kill, in this process: identical weights, EMA, optimiser state and losses
    monkeypatch.chdir(tmp_path)
    params = load_section("train", TrainParams, tmp_path / "params.yaml",
                          overrides={"steps": k + 4, "checkpoint_dir": str(tmp_path / "ref")})
    ref = Trainer(params, small_data, tmp_path / "gen_ref", track=False)
    assert ref.run().status == "FINISHED"
    for key, module in (("G", ref.G), ("D", ref.D), ("G_ema", ref.ema.model)):
        assert all(torch.equal(final[key][n], v) for n, v in module.state_dict().items()), key
    assert torch.equal(final["opt_g"]["state"][0]["exp_avg"], ref.opt_g.state_dict()["state"][0]["exp_avg"])
    assert final["history"]["loss_d"] == ref.history["loss_d"]
    assert final["history"]["loss_g"] == ref.history["loss_g"]


def _newest_state(ckpt: Path) -> dict | None:
    """The newest checkpoint's state, or None (training rotates files: one may vanish while it is read)."""
    for _step, path in reversed(list_checkpoints(ckpt)):
        try:
            return load_checkpoint(path)
        except Exception:  # removed or replaced while read: try the next
            continue
    return None


def test_sigkill_in_the_last_quarter_of_a_time_budget_then_resume_equals_a_run_of_its_step_count(
        tmp_path, monkeypatch, env, small_data):
    """max_minutes becomes a step count once, at the start, from a measured warm-up (recorded in every checkpoint,
    run.json and MLflow). Killed in the last quarter of those steps, where the schedule anneals, and resumed, the
    run keeps the count and ends with exactly the weights of an uninterrupted run of that many steps without a
    budget: the schedule depends on the step only, not on the clock."""
    write_params(tmp_path, max_minutes=0.25, checkpoint_every=2, log_every=50, lr_schedule="linear",
                 lr_decay_start=0.5, g_topk=0.5, num_threads=1)
    ckpt = tmp_path / "checkpoints" / "train"
    proc = start_train(tmp_path, env, small_data)
    seen: dict = {}

    def in_last_quarter() -> bool:
        state = _newest_state(ckpt)
        if state and state.get("time_budget"):
            seen.update(state)
        return bool(seen) and seen["step"] >= 0.8 * seen["time_budget"]["steps"]

    wait_for(in_last_quarter, proc, "a checkpoint in the last quarter of the time budget's steps")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, killed = load_latest(ckpt)
    budget, k = killed["time_budget"], killed["step"]
    total = budget["steps"]
    assert 0.75 * total <= k < total, (k, total)
    assert budget["max_minutes"] == 0.25 and budget["warmup_steps"] >= 7 and budget["step_s"] > 0
    first_log = (tmp_path / "stderr.txt").read_text()
    assert f"time budget 0.25 min = {total:,} steps (measured over {budget['warmup_steps']} warm-up steps" in first_log

    resumed = start_train(tmp_path, env, small_data, "--resume")
    assert resumed.wait(timeout=300) == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    _, final = load_latest(ckpt)
    assert final["step"] == total and final["time_budget"] == budget and final["run_id"] == killed["run_id"]
    assert read_json(tmp_path / "gen" / "run.json")["time_budget"] == budget
    logged = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(killed["run_id"]).data.params
    assert logged["total_steps"] == str(total) and float(logged["time_budget_step_ms"]) > 0
    assert "resumed from" in (tmp_path / "stderr.txt").read_text()

    # the same steps without a budget, uninterrupted, in this process: identical weights, EMA and optimisers
    monkeypatch.chdir(tmp_path)
    params = load_section("train", TrainParams, tmp_path / "params.yaml")
    params = dataclasses.replace(params, max_minutes=None, steps=total, checkpoint_dir=str(tmp_path / "ref"))
    ref = Trainer(params, small_data, tmp_path / "gen_ref", track=False)
    assert ref.run().step == total and ref.time_budget is None
    for key, module in (("G", ref.G), ("D", ref.D), ("G_ema", ref.ema.model)):
        assert all(torch.equal(final[key][n], v) for n, v in module.state_dict().items()), key
    for key, opt in (("opt_g", ref.opt_g), ("opt_d", ref.opt_d)):
        assert torch.equal(final[key]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]), key


def test_sigterm_writes_a_checkpoint_and_stops_cleanly(tmp_path, env, small_data):
    write_params(tmp_path, checkpoint_every=1000)
    ckpt = tmp_path / "checkpoints" / "train"
    proc = start_train(tmp_path, env, small_data)
    wait_for(lambda: "train: step 4/" in (tmp_path / "stdout.txt").read_text(), proc, "step 4")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    stderr = (tmp_path / "stderr.txt").read_text()
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    path, state = load_latest(ckpt)
    assert state["step"] >= 4 and f"at step {state['step']}" in stderr  # the checkpoint of the stop itself
    assert not (tmp_path / "gen" / "generator.safetensors").exists()
    assert run_status(tmp_path, state["run_id"]) == "KILLED"


def test_nan_guard_restores_then_fails_the_run(tmp_path, env, small_data):
    write_params(tmp_path, steps=8, max_restarts=2, checkpoint_every=2)
    res = subprocess.run(
        [sys.executable, "-m", "productgan", "train", "--data", str(small_data), "--out", "gen"],
        cwd=tmp_path, env=child_env(env, at_step=5), capture_output=True, text=True, timeout=300,
    )  # every attempt at step 5 gives a NaN loss
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("restored") == 2 and "FAILED" in res.stderr and "diverged" in res.stderr
    run = read_json(tmp_path / "gen" / "run.json")
    assert run["status"] == "FAILED" and "diverged" in run["message"]
    assert not (tmp_path / "gen" / "generator.safetensors").exists()
    assert run_status(tmp_path, run["run_id"]) == "FAILED"


DDP_SCRIPT = """
import os, sys
from safetensors.torch import save_file
from productgan.gan.recipes import TrainParams
from productgan.gan.trainer import Trainer
from productgan.params import load_section

trainer = Trainer(load_section("train", TrainParams, "params.yaml"), sys.argv[1], "gen")
result = trainer.run()
assert result.status == "FINISHED", result
state = {}
modules = [("G", trainer.G), ("D", trainer.D)] + ([("E", trainer.ema.model)] if trainer.ema else [])
for name, module in modules:
    state.update({f"{name}.{k}": v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()})
for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
    for i, s in opt.state_dict()["state"].items():
        state[f"{name}.{i}.exp_avg"] = s["exp_avg"].contiguous().clone()
save_file(state, f"rank{os.environ['RANK']}.safetensors")
"""


@pytest.mark.parametrize(("recipe", "loss"), [("baseline", "bce"), ("default", "bce"), ("article_wgan_gp", "wgan-gp"),
                                            ("baseline", "ra-bce")])
def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path, env, small_data, recipe, loss):
    # default: lazy R1 + DiffAugment; baseline: BatchNorm D with separate passes (no_sync); article_wgan_gp:
    # n_critic D updates per step, each with the gradient penalty on the plain D; ra-bce: both of D's passes
    # in one backward, and G main runs D on real images too
    knobs = {"default": {"r1_gamma": 1.0, "r1_every": 2}, "baseline": {"loss": loss}, "article_wgan_gp": {}}[recipe]
    write_params(tmp_path, recipe=recipe, steps=6, batch_size=4, checkpoint_every=3, **knobs)
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "ddp.py",
         str(small_data)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1_ = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert r0.keys() == r1_.keys()
    different = [k for k in r0 if not torch.equal(r0[k], r1_[k])]
    assert not different, different[:5]
    _, final = load_latest(tmp_path / "checkpoints" / "train")
    assert final["step"] == 6
    assert all(torch.equal(final["G"][k[2:]], v) for k, v in r0.items() if k.startswith("G."))
    assert read_json(tmp_path / "gen" / "run.json")["status"] == "FINISHED"
