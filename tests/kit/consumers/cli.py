"""``parley …`` through the real command line, as a child process, against a test's broker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from parley.settings import KafkaSettings
from tests.kit.consumers.process import REPO


async def parley(tmp_path: Path, k: KafkaSettings, *args: str) -> tuple[int, str]:
    """Run ``parley ARGS`` with a config naming ``k``'s broker; (exit status, stdout+stderr)."""
    config = tmp_path / "cli.toml"
    config.write_text(f'data_dir = "{tmp_path}"\n[kafka]\nbootstrap = "{k.bootstrap}"\n'
                      f'topic_prefix = "{k.topic_prefix}"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "parley.cli", "--config", str(config), *args, cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()
