"""``python -m bot``: the Telegram bot, or the console when no token is configured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

from pydantic import SecretStr

from bot import migrate as migrations
from bot import redaction
from bot.config import Settings
from bot.console import plain, run_console
from bot.service import ConversationService
from bot.storage import Store
from conversations import announcements
from conversations.i18n import DEFAULT, LANGUAGE_NAMES, LOCALES
from conversations.state import QueueBroadcast
from policies.cli import OneLineParser, UsageError, iso_date
from policies.loader import default_library
from policies.models import Notice


async def _console(settings: Settings, language: str | None, staff: bool) -> None:
    store = Store(settings.database_url)
    await store.init(migrate=settings.migrates_at_start)
    try:
        service = ConversationService(store, default_library(), clock=settings.now)
        await run_console(service, language=language, staff=staff)
    finally:
        await store.close()


def broadcast(argv: list[str]) -> int:
    """``python -m bot broadcast --template T --region R --dry-run``: the announcement per
    language; without ``--dry-run`` it is queued for the running bot to send."""
    parser = OneLineParser(prog="python -m bot broadcast", description="按模板向地区居民发送公告")
    parser.add_argument("--template", required=True, help="、".join(announcements.TEMPLATES))
    parser.add_argument("--region", required=True, help="地区 id，如 shangluo")
    parser.add_argument("--dry-run", action="store_true", help="只显示各语言的公告文本，不发送")
    parser.add_argument("--date", type=iso_date, help="发送日期（deadline 按它倒数），YYYY-MM-DD")
    parser.add_argument("--days", type=int, help="deadline：距截止的天数（默认按 --date 计算或 7）")
    parser.add_argument(
        "--staff-id",
        type=int,
        help="排队发送时必填：发送人的 Telegram 用户 id（须在 STAFF_IDS 中）",
    )
    parser.add_argument("--key", help="请求键：同一个键只排队一次，脚本可放心重跑")

    def fail(message: object) -> int:
        print(f"错误：{message}", file=sys.stderr)
        return 2

    try:
        args = parser.parse_args(argv)
    except UsageError as err:  # one line on stderr, as `python -m policies` does
        return fail(err)
    library = default_library()

    if args.template not in announcements.TEMPLATES:
        accepted = "、".join(announcements.TEMPLATES)
        return fail(f"未知模板 {args.template!r}；可选：{accepted}")
    notice = library.latest(args.region)
    if notice is None:
        return fail(f"未知地区 {args.region!r}；可选：{'、'.join(library.by_region)}")
    reason = announcements.available(notice)[args.template]
    if reason is not None:
        ok = "、".join(announcements.supported(notice))
        return fail(f"{reason.zh()}；{notice.region.id} 可用的模板：{ok}")
    if not args.dry_run:
        settings = Settings()
        if args.staff_id is None or args.staff_id not in settings.staff_ids:
            return fail("排队发送需要 --staff-id，且该 id 须在 STAFF_IDS 中；只预览请加 --dry-run")
        if args.days is not None:
            return fail("--days 只用于 --dry-run 预览；排队发送时按 --date（默认今天）计算剩余天数")
        # As the bot does: the day it goes out (today unless --date) must not be past
        # every date the announcement gives.
        day = args.date or settings.now().date()
        try:
            announcements.context(args.template, notice, day)
        except announcements.Unavailable as exc:
            return fail(exc.reason.zh())
        return asyncio.run(_queue(settings, args.template, notice, day, args.staff_id, args.key))
    try:
        texts = {
            locale: announcements.render(args.template, notice, locale, args.date, args.days)
            for locale in LOCALES
        }
    except announcements.Unavailable as exc:
        return fail(exc.reason.zh())
    for locale, text in texts.items():
        print(f"===== {locale} ({LANGUAGE_NAMES[locale]}) =====")
        print(plain(text))
        print()
    return 0


async def _queue(
    settings: Settings,
    template: str,
    notice: Notice,
    day: dt.date,
    staff_id: int,
    key: str | None,
) -> int:
    store = Store(settings.database_url)
    await store.init(migrate=settings.migrates_at_start)
    try:
        service = ConversationService(store, default_library(), clock=settings.now)
        action = QueueBroadcast(
            template=template,
            region=notice.region.id,
            day=day,
            key=f"cli:{key}" if key else f"cli:{service.clock().isoformat()}",
        )
        # Progress goes to the staff member's private chat (its id is the user id).
        progress = await service.queue(action, staff_id, staff_id, DEFAULT, notice)
    finally:
        await store.close()
    if progress is None:
        print(f"错误：{notice.region.id} 在 {day} 没有可提醒的截止日期", file=sys.stderr)
        return 2
    print(
        f"已排队公告 #{progress.broadcast_id}（{template}，{notice.region.id}）："
        f"{progress.total} 位订阅者；运行中的机器人会按速率发送，"
        "用 /broadcast_status 查看进度。"
    )
    return 0


async def _migrate(settings: Settings) -> None:
    store = Store(settings.database_url)
    try:
        await store.init(migrate=True)
    finally:
        await store.close()


def migrate(argv: list[str]) -> int:
    """``python -m bot migrate``: the database at ``DATABASE_URL`` to the newest schema."""
    parser = OneLineParser(prog="python -m bot migrate", description="把数据库升级到最新结构")
    try:
        parser.parse_args(argv)
    except UsageError as err:
        print(f"错误：{err}", file=sys.stderr)
        return 2
    asyncio.run(_migrate(Settings()))
    print(f"数据库已是最新结构（迁移 {migrations.head()}）。")
    return 0


def _logging(
    fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s", level: int = logging.INFO
) -> None:
    logging.basicConfig(level=level, format=fmt)
    redaction.install()
    # httpx logs every request URL, and the URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def serve(argv: list[str]) -> int:
    """``python -m bot serve --workers N``: the webhook bot as N processes on one port."""
    parser = OneLineParser(
        prog="python -m bot serve", description="以多个进程运行 webhook 机器人（共用一个端口）"
    )
    parser.add_argument("--workers", type=int, default=2, help="进程数（默认 2）")

    def fail(message: str) -> int:
        print(f"错误：{message}", file=sys.stderr)
        return 2

    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        return fail(str(err))
    settings = Settings()
    if settings.bot_token is None or not settings.webhook_url:
        return fail("serve 需要 BOT_TOKEN 和 WEBHOOK_URL（多个进程共用一个 webhook 地址）")
    if args.workers < 1:
        return fail("--workers 至少为 1")
    if args.workers > 1 and not settings.database_url.startswith("postgresql"):
        return fail(
            "多个进程需要 PostgreSQL（DATABASE_URL=postgresql+asyncpg://…）；SQLite 只供一个进程"
        )
    if settings.webhook_secret is None:
        # One secret for every process: each registering its own would lock out the others.
        settings.webhook_secret = SecretStr(secrets.token_urlsafe(32))
    _logging("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    # /metrics sums every worker's figures: prometheus-client reads this at import.
    metrics_dir = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp()))
    for old in metrics_dir.glob("*.db"):  # figures of an earlier run
        old.unlink()
    from bot.telegram_app import run
    from bot.workers import supervise

    def child(_index: int, sockets: list[socket.socket]) -> int:
        try:
            run(settings, sockets)
        except migrations.SchemaBehind as exc:
            print(f"错误：{exc}", file=sys.stderr)
            return 2
        return 0

    return supervise(args.workers, settings.webhook_port, settings.webhook_listen, child)


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["broadcast"]:
        return broadcast(args_in[1:])
    if args_in[:1] == ["migrate"]:
        return migrate(args_in[1:])
    if args_in[:1] == ["serve"]:
        return serve(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bot", description="居民医保缴费助手")
    parser.add_argument("--console", action="store_true", help="在终端中运行（不连接 Telegram）")
    parser.add_argument(
        "--lang", choices=LOCALES, help="界面语言 / language (zh_Hans, zh_Hant, en)"
    )
    parser.add_argument(
        "--staff",
        action="store_true",
        help="终端模式下以工作人员身份使用（/broadcast 等；公告排队后由联网的机器人发送）",
    )
    args = parser.parse_args(args_in)
    settings = Settings()
    console = args.console or settings.bot_token is None
    # The console is a conversation on the terminal: Alembic's "Running upgrade …" at the
    # first start, and the like, would come between the resident and the answers.
    _logging(level=logging.WARNING if console else logging.INFO)
    if console:
        if not args.console:
            print("未配置 BOT_TOKEN，以终端模式运行。(No BOT_TOKEN: console mode.)\n")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_console(settings, args.lang, args.staff))
        return 0
    from bot.telegram_app import run

    try:
        run(settings)
    except migrations.SchemaBehind as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
