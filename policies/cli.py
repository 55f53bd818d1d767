"""``python -m policies``: regions, categories, quote and lint from the command line.

The JSON shapes are a contract other tools depend on (see README). Bad input exits with
status 2 and one line on stderr saying what is wrong and what is accepted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from policies.engine import quote
from policies.lint import lint_all, report
from policies.loader import NOTICES_DIR, Library, default_library, load_library, notice_files
from policies.quote import EARLIEST_BIRTH, Applicant, ApplicantError, Quote


class UsageError(Exception):
    pass


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, in Chinese first, with the usage hint instead of argparse's multi-line usage.
        raise UsageError(f"参数有误：{message}；用法见 {self.prog} --help")


# Only what the help names: date.fromisoformat also takes week dates ("2023-W45-7").
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_date(value: str) -> dt.date:
    if not _ISO_DATE.fullmatch(value):
        _bad_date(value)
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        _bad_date(value)


def birth_date(value: str) -> dt.date:
    """An ISO date in the bot's birth range: from EARLIEST_BIRTH up to today."""
    born = iso_date(value)
    if not EARLIEST_BIRTH <= born <= dt.date.today():
        raise argparse.ArgumentTypeError(
            f"出生日期 {value} 不在 {EARLIEST_BIRTH.isoformat()} 至今天之间"
        )
    return born


def _bad_date(value: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"不是有效日期：{value!r}（格式 YYYY-MM-DD，如 2023-11-05）")


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m policies", description="居民医保通知数据与缴费计算")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    r = sub.add_parser("regions", help="已载入的地区")
    r.add_argument("--json", action="store_true")
    c = sub.add_parser("categories", help="某地区通知列明的身份类别")
    c.add_argument("--region", required=True)
    c.add_argument("--json", action="store_true")
    q = sub.add_parser("quote", help="计算应缴金额、资助和待遇期")
    q.add_argument("--region", required=True)
    q.add_argument("--birth-date", required=True, type=birth_date, help="YYYY-MM-DD")
    q.add_argument("--date", required=True, type=iso_date, help="缴费日期")
    q.add_argument("--category", action="append", default=[])
    q.add_argument("--tier", type=int)
    q.add_argument("--years-without-cover", type=int, help="断保年数（通知按断保设等待期时）")
    q.add_argument("--continuous-years", type=int, help="连续参保年数（含本年度）")
    q.add_argument("--claim-free-years", type=int, help="连续未发生报销的年数")
    q.add_argument("--json", action="store_true")
    for command in (r, c, q):  # a notice directory under tests/data/, before it is shipped
        command.add_argument("--notices", type=Path, help="通知目录（默认 policies/notices）")
    f = sub.add_parser("faq", help="用日常说法提问，按通知条款回答")
    f.add_argument("question")
    f.add_argument("--region")
    f.add_argument("--limit", type=int, default=3)
    f.add_argument("--json", action="store_true")
    lint = sub.add_parser("lint", help="校验全部通知数据文件")
    lint.add_argument("directories", nargs="*", type=Path, help="通知目录（默认 policies/notices）")
    return p


def _emit(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _regions(lib: Library, as_json: bool) -> int:
    rows = [
        {"id": n.region.id, "name": n.region.name, "benefit_year": n.benefit_year}
        for n in lib.notices
    ]
    if as_json:
        _emit(rows)
    else:
        for row in rows:
            print(f"{row['id']}\t{row['name']}\t{row['benefit_year']}年度")
    return 0


def _require_region(lib: Library, region: str) -> None:
    if not lib.for_region(region):
        accepted = "、".join(n.region.id for n in lib.regions())
        raise UsageError(f"未知地区 {region!r}；可选：{accepted}")


def _categories(lib: Library, region: str, as_json: bool) -> int:
    _require_region(lib, region)
    notices = lib.for_region(region)
    seen: dict[str, str] = {}
    for notice in notices:
        for cat in notice.categories:
            seen.setdefault(cat.id, cat.name)
    rows = [{"id": k, "name": v} for k, v in seen.items()]
    if as_json:
        _emit(rows)
    else:
        for row in rows:
            print(f"{row['id']}\t{row['name']}")
    return 0


def _money(value: int | None) -> str:
    return "通知未载明" if value is None else f"{value}元"


def render_text(q: Quote) -> str:
    """The quote as readable Chinese, for the terminal."""
    lines = [f"地区：{q.region_name}" + (f"（{q.benefit_year}年度）" if q.benefit_year else "")]
    if q.window_name:
        lines.append(f"缴费时段：{q.window_name}")
    if q.notice is None:
        lines.extend(f"· {n.text}" for n in q.notes)
        return "\n".join(lines)
    if q.eligible is None:  # undecided is never "不能参保"
        status = f"通知没有写明能否参保缴费，请向{q.office or '当地医保经办机构'}咨询"
    else:
        status = "可以参保缴费" if q.eligible else "不能参保"
    lines.append(f"结论：{status}")
    lines.append(f"个人缴费标准：{_money(q.fee)}" + (f"（{q.age_group}）" if q.age_group else ""))
    payers = "、".join(p.name + (f"{p.amount}元" if p.amount is not None else "") for p in q.payers)
    lines.append(f"参保资助：{_money(q.subsidy)}" + (f"（{payers}）" if payers else ""))
    if q.eligible:
        lines.append(f"缴费时支付：{_money(q.pay_now)}；最终负担：{_money(q.net_cost)}")
        lines.append(f"待遇期：{q.benefit_start or '通知未写明起始日'} 至 {q.benefit_end}")
    for alt in q.alternatives:
        lines.append(
            f"另可选择：{alt.label}，缴费{_money(alt.fee)}，"
            f"待遇 {alt.benefit_start} 至 {alt.benefit_end}"
        )
    if q.eligible and q.channels:
        lines.append("缴费渠道：")
        for ch in q.channels:
            how = f"：{ch.how}" if ch.how else ""
            lines.append(f"  - [{'线上' if ch.kind == 'online' else '线下'}] {ch.name}{how}")
    for b in q.benefits:
        figures = [
            f"起付线{b.deductible}元" if b.deductible is not None else "",
            f"年度最高支付限额{b.cap}元" if b.cap is not None else "",
        ]
        lines.append(f"待遇水平：{b.name}：{b.summary}；" + "，".join(f for f in figures if f))
    for reg in q.registration:
        lines.append(f"登记：{reg.text}")
    if q.notes:
        lines.append("说明：")
        lines.extend(f"  - {n.text}" for n in q.notes)
    lines.append("依据：")
    for step in q.trace:
        src = f"（{step.source.clause}：“{step.source.quote}”）" if step.source else ""
        lines.append(f"  - {step.text}{src}")
    return "\n".join(lines)


def _quote(lib: Library, args: argparse.Namespace) -> int:
    applicant = Applicant(
        region=args.region,
        birth_date=args.birth_date,
        payment_date=args.date,
        categories=frozenset(args.category),
        tier=args.tier,
        years_without_cover=args.years_without_cover,
        continuous_years=args.continuous_years,
        claim_free_years=args.claim_free_years,
    )
    result = quote(lib, applicant)
    if args.json:
        _emit(result.to_json())
    else:
        print(render_text(result))
    return 0


def _faq(lib: Library, args: argparse.Namespace) -> int:
    from policies.faq import default_index  # jieba loads its dictionary: only when asked

    if args.region is not None:
        _require_region(lib, args.region)
    answers = default_index().search(args.question, args.region, args.limit)
    if args.json:
        _emit([a.to_json() for a in answers])
        return 0
    for a in answers:
        where = f"〔{a.source} {a.clause}〕" if a.clause else ""
        print(f"{a.answer}{where}")
        if a.quote and a.kind == "entry":
            print(f"  原文：“{a.quote}”")
    return 0


def _lint(directories: list[Path]) -> int:
    problems = []
    for directory in directories or [NOTICES_DIR]:
        problems += lint_all(directory)
        for path in notice_files(directory):
            if not any(p.file == path.name and p.where == "load" for p in problems):
                print(report(path))
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("all notices pass")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "lint":
            return _lint(args.directories)
        notices = getattr(args, "notices", None)
        lib = load_library(notices) if notices is not None else default_library()
        if args.command == "regions":
            return _regions(lib, args.json)
        if args.command == "categories":
            return _categories(lib, args.region, args.json)
        if args.command == "faq":
            return _faq(lib, args)
        return _quote(lib, args)
    except (UsageError, ApplicantError) as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
