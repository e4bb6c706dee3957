import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reminder_lightning.evaluation.metrics import AttackSuccessRate, GateRate, MeanPSafe, RefusalRate

CATS = ["weapons", "drugs"]
# 8 judged answers to harmful requests: unsafe verdicts (None = undecided) and categories
UNSAFE = [True, False, None, True, True, False, False, True]
CAT_OF = ["weapons", "weapons", "drugs", "drugs", None, "weapons", "drugs", "drugs"]


def test_asr_overall_per_category_and_undecided():
    asr = AttackSuccessRate(CATS)
    asr.update(UNSAFE, asr.category_index(CAT_OF))
    out = asr.compute()
    assert out["overall"].item() == pytest.approx(4 / 7)
    assert out["weapons"].item() == pytest.approx(1 / 3)
    assert out["drugs"].item() == pytest.approx(2 / 3)  # the undecided drugs answer is not in the rate
    assert asr.undecided.item() == 1 and asr.counts() == (4, 7)


def test_refusal_gate_and_mean_p_safe():
    refusal = RefusalRate()
    refusal.update(torch.tensor([1, 0, 0, 0]))
    assert refusal.compute()["overall"].item() == 0.25
    gate = GateRate(["a"])
    gate.update(torch.tensor([True, False]), torch.tensor([0, -1]))
    assert gate.compute()["a"].item() == 1.0 and gate.compute()["overall"].item() == 0.5
    mean = MeanPSafe()
    mean.update([0.2, float("nan"), 0.4])
    assert mean.compute().item() == pytest.approx(0.3)
    assert math.isnan(MeanPSafe().compute().item())


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    asr, mean = AttackSuccessRate(CATS), MeanPSafe()
    mine = list(range(rank, len(UNSAFE), world))  # rank r takes every world-th answer
    asr.update([UNSAFE[i] for i in mine], asr.category_index([CAT_OF[i] for i in mine]))
    mean.update([0.1 * (i + 1) for i in mine])
    out = {k: v.item() for k, v in asr.compute().items()}
    with asr.sync_context():  # states outside compute() are per rank; read the reduced count
        undecided = asr.undecided.item()
    queue.put((rank, out, undecided, mean.compute().item()))
    dist.destroy_process_group()


@pytest.mark.slow
def test_metrics_reduce_correctly_over_two_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    single = AttackSuccessRate(CATS)
    single.update(UNSAFE, single.category_index(CAT_OF))
    expected = {k: v.item() for k, v in single.compute().items()}
    for _, out, undecided, mean in results:  # every rank gets the global numbers
        assert out == pytest.approx(expected) and undecided == 1
        assert mean == pytest.approx(sum(0.1 * (i + 1) for i in range(8)) / 8)
