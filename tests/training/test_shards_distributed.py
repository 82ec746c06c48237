"""torchrun over a prepared directory: two CPU processes read disjoint windows whose union is the one-process
order, through a checkpoint and a resume, and train to the same weights."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from fmblocks.data.prepare import prepare
from fmblocks.files import read_tensors
from fmblocks.tokenizers import TOKENIZERS

WORKER = Path(__file__).with_name("shards_worker.py")
TEXT = "the quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. "


def test_two_ranks_read_disjoint_windows_whose_union_is_the_one_process_order(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    for i in range(6):
        (tmp_path / "corpus" / f"{i}.txt").write_text(TEXT * (3 + i))
    prepare([tmp_path / "corpus"], TOKENIZERS.get("char")(sorted(set(TEXT))), tmp_path / "data", eval_fraction=0,
            shard_bytes=400, workers=1, progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), str(tmp_path / "data"), str(tmp_path / "two")]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as two:
        spec = importlib.util.spec_from_file_location("shards_worker", WORKER)
        worker = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(worker)
        history = worker.run(str(tmp_path / "data"), str(tmp_path / "one"))  # while torchrun starts up
        output, _ = two.communicate(timeout=120)
    assert two.returncode == 0, output[-3000:]

    one = json.loads((tmp_path / "one" / "read-0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"read-{r}.json").read_text()) for r in range(2)]
    assert len(one) == 4 * 2 * 4 and len(set(one)) == len(one)  # 4 steps x 2 micro-batches x 4 windows, no repeat
    assert not set(ranks[0]) & set(ranks[1])
    for m in range(8):  # each micro-batch of 4: rank 0 reads its first half, rank 1 its second
        assert one[4 * m : 4 * m + 4] == ranks[0][2 * m : 2 * m + 2] + ranks[1][2 * m : 2 * m + 2]
    assert [row["step"] for row in history] == [1, 2, 3, 4]
    a = read_tensors(tmp_path / "one" / "checkpoint" / "model.safetensors")
    b = read_tensors(tmp_path / "two" / "checkpoint" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0)
