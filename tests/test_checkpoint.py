"""The checkpoint writer: what it writes is the state when `save` was called, whatever the training
does to its tensors afterwards; a failed write is raised, not lost."""
from __future__ import annotations

import pytest
import torch

from pipeline import checkpoint


def test_a_checkpoint_is_the_state_at_save_time_written_in_order(tmp_path):
    weights = torch.zeros(1000)
    state = {"model": {"w": weights}, "optimizer": {"state": {0: {"exp_avg": weights * 2}}}, "epoch": 1}
    with checkpoint.Writer() as writer:
        writer.save({tmp_path / "last.pt": state, tmp_path / "best.pt": {"w": weights}})
        weights += 1.0  # the next steps update the weights in place while the write goes on
        writer.wait()
        assert torch.equal(checkpoint.load_state(tmp_path / "last.pt")["model"]["w"], torch.zeros(1000))
        assert torch.equal(torch.load(tmp_path / "best.pt")["w"], torch.zeros(1000))
        writer.save({tmp_path / "last.pt": {**state, "epoch": 2}})
    assert checkpoint.load_state(tmp_path / "last.pt")["epoch"] == 2  # the writer's end waits for its writes
    assert not list(tmp_path.glob(".*partial"))


def test_a_failed_write_is_raised(tmp_path):
    (tmp_path / "taken").write_text("a file where the checkpoint's folder should be")
    writer = checkpoint.Writer()
    writer.save({tmp_path / "taken" / "last.pt": {"epoch": 1}})
    with pytest.raises(OSError):
        writer.close()
