"""Distributed data parallel on the CPU (gloo), through torchrun: the settings checked, a toy
script on hangar_pipe.training.distributed trained by 2 processes twice (same bytes, close to one
process), two "nodes" on localhost meeting at a c10d rendezvous, a failing rank failing the
launch with its message; and the built-in train stage with `distributed:`."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import conftest
import ddp_toy
import numpy as np
import pytest
import torch
import yaml
from conftest import ENV, Project

from hangar_pipe.core.yamlfile import load_yaml
from hangar_pipe.errors import UserError
from hangar_pipe.training import distributed
from hangar_pipe.training.shapes import Where

TESTS = Path(__file__).resolve().parent
TOY_ENV = {**ENV, "OMP_NUM_THREADS": "1",  # every process on this 2-core machine: one thread each
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS), ENV.get("PYTHONPATH", "")])}


def where(tmp_path: Path, text: str) -> Where:
    (tmp_path / "params.yaml").write_text(text)
    return Where("params.yaml", ("train", "distributed"), load_yaml(tmp_path / "params.yaml", "params.yaml"))


@pytest.mark.parametrize(("value", "message"), [
    ("{nproc_per_node: 0}", "params.yaml:3: train.distributed.nproc_per_node is 0; expected a whole number >= 1"),
    ("{nproc_per_node: 2, nodes: 2}", "params.yaml:3: train.distributed.nodes is not a distributed setting"
                                      " (known: nproc_per_node, nnodes, backend, rdzv_endpoint, rdzv_id)"),
    ("{nnodes: 2}", "params.yaml:3: train.distributed.rdzv_endpoint is missing: 2 nodes meet at a rendezvous"),
    ("{nnodes: 2, rdzv_endpoint: node0}", "train.distributed.rdzv_endpoint is 'node0'; expected host:port"),
    ("{backend: mpi}", "train.distributed.backend is 'mpi'; expected auto, gloo, nccl"),
    ("[2]", "params.yaml:3: train.distributed is [2]; expected a mapping"),
])
def test_bad_settings_are_one_line_naming_the_key(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        distributed.settings(load_yaml_value(tmp_path, value), where(tmp_path, f"train:\n  lr: 1\n  distributed: {value}\n"))
    assert str(caught.value).startswith(message) or f"params.yaml:3: {message}" in str(caught.value), caught.value


def load_yaml_value(tmp_path: Path, value: str) -> object:
    return load_yaml(write(tmp_path / "v.yaml", f"v: {value}\n"), "v.yaml").data["v"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_backend_and_the_torchrun_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = where(tmp_path, "train:\n  distributed: {nproc_per_node: 2}\n")
    one = distributed.settings({"nproc_per_node": 2}, w)
    assert one is not None and one.world_size == 2
    assert distributed.backend_for(one, "cpu", w) == "gloo"
    if not torch.cuda.is_available():  # a CPU machine: nccl is refused, naming the key
        nccl = distributed.settings({"backend": "nccl"}, w)
        assert nccl is not None
        with pytest.raises(UserError, match=r"train.distributed.backend is nccl, which needs CUDA"):
            distributed.backend_for(nccl, "cpu", w)
    monkeypatch.setenv("HPIPE_STATE_DIR", str(tmp_path / ".hpipe/state/train/0123456789abcdef0123"))
    monkeypatch.setenv("HPIPE_STAGE", "train")
    args = distributed.torchrun_args(one, "m:run", {"a": 1})
    assert args == ["--standalone", "--nproc_per_node", "2", "--log_dir",
                    str(tmp_path / ".hpipe/state/train/0123456789abcdef0123/torchrun"),
                    "-m", "hangar_pipe.core.call", "m:run", '{"a": 1}']
    two = distributed.settings({"nnodes": 2, "rdzv_endpoint": "node0:29400"}, w)
    assert two is not None
    assert distributed.torchrun_args(two, "m:run", {})[:8] == [
        "--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "node0:29400", "--rdzv_id",
        "hpipe-train-0123456789abcdef"]


def toy(cwd: Path, **kwargs: object) -> subprocess.Popen[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**TOY_ENV, "HPIPE_STATE_DIR": str(cwd / "state")}  # torchrun's files stay in the folder
    return subprocess.Popen([sys.executable, str(TESTS / "ddp_toy.py"), json.dumps({"out": "model.pt", **kwargs})],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out + err


def test_two_processes_twice_give_the_same_bytes_close_to_one_process(tmp_path: Path) -> None:
    for run in ("a", "b"):
        code, output = finished(toy(tmp_path / run, nproc=2))
        assert code == 0, output
    a, b = (tmp_path / "a/model.pt").read_bytes(), (tmp_path / "b/model.pt").read_bytes()
    assert a == b
    assert json.loads((tmp_path / "a/model.json").read_text()) == {
        "rank": 0, "local_rank": 0, "size": 2, "local_size": 2, "backend": "gloo", "device": "cpu", "threads": 1}
    two = torch.load(io.BytesIO(a), weights_only=True)
    one = ddp_toy.train(1, 0).state_dict()
    assert two.keys() == one.keys()
    assert all(torch.allclose(two[k], one[k], atol=1e-5) for k in one)
    assert not any(torch.equal(two[k], ddp_toy.train(1, 0, epochs=1).state_dict()[k]) for k in one)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_nodes_meet_at_a_localhost_rendezvous_and_agree(tmp_path: Path) -> None:
    endpoint = f"localhost:{free_port()}"
    nodes = [toy(tmp_path / f"node{i}", nproc=1, nnodes=2, endpoint=endpoint) for i in range(2)]
    for proc in nodes:
        code, output = finished(proc)
        assert code == 0, output
    records = [json.loads((tmp_path / f"node{i}/model.json").read_text()) for i in range(2)]
    assert sorted(r["rank"] for r in records) == [0, 1] and {r["size"] for r in records} == {2}
    assert all(r["local_rank"] == 0 for r in records), "each node's local rank 0 writes its copy"
    assert (tmp_path / "node0/model.pt").read_bytes() == (tmp_path / "node1/model.pt").read_bytes()


def test_a_failing_rank_fails_the_launch_and_the_next_launch_resumes(tmp_path: Path) -> None:
    """Rank 1 fails as epoch 3 begins: the launch fails with its message (exit 2, its bad input);
    the next launch resumes from the state saved after epoch 2, each rank with its own random
    generators (dropout), to the bytes of a run that never failed."""
    code, output = finished(toy(tmp_path / "straight", dropout=0.3, resume="resume"))
    assert code == 0, output
    code, output = finished(toy(tmp_path / "failed", dropout=0.3, resume="resume", fail_rank=1, fail_epoch=3))
    assert code == 2, output
    assert "hpipe: error: rank 1 refuses to train epoch 3" in output
    assert output.strip().endswith("hpipe: error: rank 1 of 2 failed first (exit code 2): rank 1 refuses to train epoch 3")
    assert "[rank1]: Traceback" not in output and not (tmp_path / "failed/model.pt").exists()
    code, output = finished(toy(tmp_path / "failed", dropout=0.3, resume="resume"))
    assert code == 0 and output.count("resuming training from epoch 3/4") == 1, output
    assert (tmp_path / "failed/model.pt").read_bytes() == (tmp_path / "straight/model.pt").read_bytes()


PIPELINE = """
    data: {repo: .}
    stages:
      ingest:
        uses: ingest
        with: {source: raw.npz, splits: {training: 0.6, validation: 0.2, test: 0.2}, seed: 0}
        deps: [raw.npz]
        outs:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels, mnist_test_images, mnist_test_labels]
      train:
        uses: train
        deps:
          - hangar: [mnist_training_images, mnist_training_labels, mnist_validation_images,
                     mnist_validation_labels]
        params: [train]
        outs: [models/model.pt]
        metrics: [metrics/train.json]
"""
PARAMS = """
    train:
      model: {kind: mlp, layers: [64, 32, 10]}
      optimizer: sgd
      lr: 0.05
      epochs: 2
      batch_size: 16
      seed: 0
      device: cpu
"""


def test_the_train_stage_in_two_processes(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conftest.ENV, "OMP_NUM_THREADS", "1")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    x = np.clip(rng.integers(0, 200, size=(10, 64))[y] + rng.integers(0, 40, size=(200, 64)), 0, 255)
    np.savez(project.root / "raw.npz", x=x.astype(np.uint8).reshape(200, 8, 8), y=y)
    project.pipeline(PIPELINE)
    project.write("params.yaml", PARAMS + "      distributed: {nproc_per_node: 0}\n")
    done = project.hpipe("repro", check=1)
    assert "✗ train: failed" in done.out and "exited with code 2" in done.out and "Traceback" not in done.err
    assert done.err.strip() == ("hpipe: error: params.yaml:9: train.distributed.nproc_per_node is 0;"
                                " expected a whole number >= 1")
    assert "train" not in yaml.safe_load(project.read("pipeline.lock"))["stages"], "nothing recorded"
    project.write("params.yaml", PARAMS)
    project.hpipe("repro")
    one = torch.load(project.root / "models/model.pt", weights_only=False)
    project.write("params.yaml", PARAMS + "      distributed: {nproc_per_node: 2}\n")
    done = project.hpipe("repro")
    assert project.ran(done) == ["train"] and done.out.count("epoch 2/2:") == 1  # rank 0 prints
    two = torch.load(project.root / "models/model.pt", weights_only=False)
    assert two["training"]["distributed"] == {"rank": 0, "local_rank": 0, "size": 2, "local_size": 2,
                                  "backend": "gloo", "device": "cpu", "threads": 1}
    assert two["params"]["distributed"] == {"nproc_per_node": 2} and one["training"]["distributed"] is None
    assert all(torch.allclose(two["state_dict"][k], v, atol=1e-5) for k, v in one["state_dict"].items())
    left = [p for p in (project.root / ".hpipe/state").rglob("*") if not p.is_dir()]
    assert left == [], "the recorded run's resume folder (and torchrun's files in it) is deleted"
