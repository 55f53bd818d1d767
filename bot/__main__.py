"""``python -m bot``: the Telegram bot, or the console when no token is configured."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from bot.config import Settings
from bot.console import run_console
from bot.service import ConversationService
from bot.storage import Store
from conversations.i18n import LOCALES
from policies.loader import default_library


async def _console(settings: Settings, language: str | None) -> None:
    store = Store(settings.database_url)
    await store.init()
    try:
        service = ConversationService(store, default_library(), settings.timezone)
        await run_console(service, language=language)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="居民医保缴费助手")
    parser.add_argument("--console", action="store_true", help="在终端中运行（不连接 Telegram）")
    parser.add_argument(
        "--lang", choices=LOCALES, help="界面语言 / language (zh_Hans, zh_Hant, en)"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request URL, and the URL contains the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.console or settings.bot_token is None:
        if not args.console:
            print("未配置 BOT_TOKEN，以终端模式运行。(No BOT_TOKEN: console mode.)\n")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_console(settings, args.lang))
        return 0
    from bot.telegram_app import run

    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
