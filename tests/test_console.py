"""``python -m bot`` with no token runs the conversation in the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_console(tmp_path: Path, lines: list[str], *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "WEBHOOK_URL")}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/console.db"
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,  # no .env of the developer's
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_console_without_token_gives_a_quote(tmp_path: Path) -> None:
    # Buttons are numbered: regions in notice order (3 = 商洛市); categories in notice
    # order (3 = 低保对象).
    out = run_console(tmp_path, ["3", "1980年5月1日", "3", "完成", "2023-11-05", "/quit"])
    assert "未配置 BOT_TOKEN，以终端模式运行" in out
    assert "[3] 商洛市" in out
    # 商洛市 一（三） 380 元; 二（二） 低保对象 190 元; 四（一） benefits 2024.
    assert "现在需缴：190元" in out and "已减去资助 190元" in out
    assert "2024年1月1日起，至 2024年12月31日" in out
    assert "<b>" not in out  # HTML is turned into plain text for the terminal


def test_console_flag_and_bad_input(tmp_path: Path) -> None:
    out = run_console(tmp_path, ["北京", "1", "2023-02-30", "1990-01-01", "/quit"], "--console")
    assert "未配置 BOT_TOKEN" not in out
    assert "没有找到“北京”" in out and "这一天不存在" in out
    assert "您属于下列哪些人群" in out  # went on after the corrected date


def test_console_understands_a_resident_typing_freely(tmp_path: Path) -> None:
    # The console drives the same understanding: one message → the quote; a question at
    # the birth step → its answer, then the birth question again; Traditional input.
    out = run_console(
        tmp_path,
        ["商落", "在哪交？", "五六年三月五号", "低保戶", "2023年11月20號", "/quit"],
    )
    # 商洛市 五（一）1 (where to pay); 一（三） 380 元, 二（二） 低保对象 190 元; 四（一） 2024.
    assert "按“商洛市”理解" in out and "〔五（一）1〕" in out
    assert "✅ 1956年3月5日出生" in out and "✅ 低保对象" in out
    assert "现在需缴：190元" in out and "2024年1月1日起" in out
    out = run_console(tmp_path, ["商洛 低保户 1956年3月5日出生 2023年11月20日交", "/quit"])
    assert "✅ 商洛市 · 1956年3月5日出生 · 低保对象 · 2023年11月20日缴费" in out
    assert "现在需缴：190元" in out
