"""camloc.runtime: the CPU allocator setting the CLI applies, and the channels-last block."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from camloc.runtime import channels_last, to_layout

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.path.exists("/etc/alpine-release"),
                           reason="mallopt is glibc's (Linux with glibc)")


def _py(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "CAMLOC_ALLOCATOR"}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@glibc
def test_cli_applies_the_allocator_setting_and_the_env_switch_turns_it_off() -> None:
    code = ("import camloc.runtime as r, camloc.cli as c; rc = c.main(['methods']); "
            "print(rc, r._applied)")
    assert _py(code).splitlines()[-1] == "0 True"
    assert _py(code, CAMLOC_ALLOCATOR="system").splitlines()[-1] == "0 False"


@glibc
def test_tune_is_idempotent_and_only_on_request_in_the_library() -> None:
    code = ("import camloc, camloc.runtime as r; camloc.load_model; print(r._applied); "
            "print(r.tune_cpu_allocator(), r.tune_cpu_allocator())")
    assert _py(code).splitlines() == ["None", "True True"]


def test_channels_last_block_restores_the_layout_and_keeps_the_logits() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        ref = net(x)
        with channels_last(net) as on:
            assert on
            assert net[0].weight.is_contiguous(memory_format=torch.channels_last)
            got = net(to_layout(x, on))
        with channels_last(net, active=False) as off:
            assert not off
    assert net[0].weight.is_contiguous()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    assert to_layout(x, True).is_contiguous(memory_format=torch.channels_last)
    assert to_layout(x, False) is x
    with channels_last(torch.nn.Linear(3, 2)) as linear_only:  # nothing 4-D: left alone
        assert not linear_only
