"""Small double-entry style ledger for household bookkeeping.

Transactions are read from CSV exports (one row per movement), grouped into
accounts and categories, and summarised per month.  Amounts are kept as
``Decimal`` so that sums of cents never drift the way floats do.

The module has no dependencies outside the standard library.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterable, Iterator

__all__ = [
    "Account",
    "Ledger",
    "LedgerError",
    "Transaction",
    "load_csv",
    "monthly_totals",
]

DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y")
UNCATEGORISED = "uncategorised"


class LedgerError(ValueError):
    """Raised for rows that cannot be turned into a transaction."""

    def __init__(self, message: str, line: int | None = None) -> None:
        # keystroke-replay: jump
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message)
        self.line = line


@dataclass(frozen=True, order=True)
class Transaction:
    """One movement of money on one account.

    Positive amounts are income, negative amounts are spending.
    """

    date: dt.date
    amount: Decimal
    account: str
    payee: str = ""
    category: str = UNCATEGORISED
    memo: str = ""

    @property
    def month(self) -> str:
        """The month of the transaction as ``YYYY-MM``."""
        return f"{self.date.year:04d}-{self.date.month:02d}"

    def is_transfer(self) -> bool:
        """Whether this movement is a transfer between own accounts."""
        return self.category.startswith("transfer:")


@dataclass
class Account:
    """An account with its opening balance and its transactions."""

    name: str
    opening_balance: Decimal = Decimal("0")
    transactions: list[Transaction] = field(default_factory=list)

    def add(self, transaction: Transaction) -> None:
        if transaction.account != self.name:
            raise LedgerError(
                f"transaction for {transaction.account!r} added to {self.name!r}"
            )
        self.transactions.append(transaction)

    def balance(self, on: dt.date | None = None) -> Decimal:
        """The balance at the end of a day (default: after everything)."""
        total = self.opening_balance
        for tx in self.transactions:
            if on is None or tx.date <= on:
                total += tx.amount
        return total


def parse_date(text: str) -> dt.date:
    """Parse a date in any of the formats banks commonly export."""
    text = text.strip()
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise LedgerError(f"unrecognised date {text!r}")


def parse_amount(text: str) -> Decimal:
    """Parse an amount such as ``-1,234.50`` or ``1.234,50``."""
    cleaned = text.strip().replace(" ", "").replace("\u00a0", "")
    if "," in cleaned and "." in cleaned:
        if cleaned.rfind(",") > cleaned.rfind("."):
            cleaned = cleaned.replace(".", "").replace(",", ".")
        else:
            cleaned = cleaned.replace(",", "")
    elif "," in cleaned:
        cleaned = cleaned.replace(",", ".")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        raise LedgerError(f"unrecognised amount {text!r}") from None


def load_csv(path: Path, account: str) -> Iterator[Transaction]:
    """Read the transactions of one account from a bank's CSV export."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for line, row in enumerate(reader, start=2):
            try:
                yield Transaction(
                    date=parse_date(row["date"]),
                    amount=parse_amount(row["amount"]),
                    account=account,
                    payee=row.get("payee", "").strip(),
                    category=row.get("category", "").strip() or UNCATEGORISED,
                    memo=row.get("memo", "").strip(),
                )
            except KeyError as missing:
                raise LedgerError(f"missing column {missing}", line) from None
            except LedgerError as error:
                raise LedgerError(str(error), line) from None


class Ledger:
    """All accounts, with queries across them."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}

    def open(self, name: str, opening_balance: Decimal = Decimal("0")) -> Account:
        if name in self.accounts:
            raise LedgerError(f"account {name!r} is already open")
        account = Account(name, opening_balance)
        self.accounts[name] = account
        return account

    def record(self, transactions: Iterable[Transaction]) -> int:
        """Add transactions to their accounts; returns how many were added."""
        count = 0
        for tx in transactions:
            account = self.accounts.get(tx.account)
            if account is None:
                account = self.open(tx.account)
            account.add(tx)
            count += 1
        return count

    def transactions(self) -> list[Transaction]:
        """Every transaction of every account, oldest first."""
        return sorted(tx for a in self.accounts.values() for tx in a.transactions)

    def net_worth(self, on: dt.date | None = None) -> Decimal:
        return sum((a.balance(on) for a in self.accounts.values()), Decimal("0"))

    def spending_by_category(
        self, since: dt.date | None = None
    ) -> dict[str, Decimal]:
        """Total spending per category, transfers excluded."""
        # keystroke-replay: cursor


def monthly_totals(transactions: Iterable[Transaction]) -> dict[str, Decimal]:
    """Net amount per month, ignoring transfers between own accounts."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for tx in transactions:
        if not tx.is_transfer():
            totals[tx.month] += tx.amount
    return dict(sorted(totals.items()))


def format_report(totals: dict[str, Decimal], width: int = 12) -> str:
    """Render ``{label: amount}`` as aligned text lines."""
    lines = []
    for label, amount in totals.items():
        lines.append(f"{label:<{width}}{amount:>12,.2f}")
    return "\n".join(lines)
