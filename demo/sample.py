"""The demo's sample folder: a small sales table, the goal about it, and the plan and code a good model
would answer with (the scripted server of :mod:`demo.server` hands them out; they run in the sandbox like
any generated code)."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

GOAL = "Summarise sales.csv into report.md with the totals per region"
DATA_FILE = "sales.csv"
REPORT_FILE = "report.md"
FOLDER_NAME = "sales-demo"

REGIONS = ("North", "South", "East", "West")
PRICES = {"Widget": "12.50", "Gadget": "24.00", "Gizmo": "7.25", "Doohickey": "99.90"}
ROWS = 60

INSPECT = "Read sales.csv and print its columns, number of rows, date range and regions"
TOTALS = "Compute units sold and revenue (units × unit_price) per region from sales.csv and print them"
REPORT = "Write report.md with a table of the totals per region, largest revenue first, and the grand total"
TASKS = (INSPECT, TOTALS, REPORT)

INSPECT_CODE = '''\
import csv

with open("sales.csv", newline="") as f:
    rows = list(csv.DictReader(f))
if not rows:
    raise SystemExit("sales.csv has no rows")
dates = sorted(row["date"] for row in rows)
print("columns:", ", ".join(rows[0]))
print("rows:", len(rows))
print("dates:", dates[0], "to", dates[-1])
print("regions:", ", ".join(sorted({row["region"] for row in rows})))
'''

TOTALS_CODE = '''\
import csv
from collections import defaultdict
from decimal import Decimal

units, revenue = defaultdict(int), defaultdict(Decimal)
with open("sales.csv", newline="") as f:
    for row in csv.DictReader(f):
        units[row["region"]] += int(row["units"])
        revenue[row["region"]] += int(row["units"]) * Decimal(row["unit_price"])
for region in sorted(revenue, key=revenue.__getitem__, reverse=True):
    print(f"{region}: {units[region]} units, revenue {revenue[region]:,.2f}")
print(f"all regions: {sum(units.values())} units, revenue {sum(revenue.values()):,.2f}")
'''

REPORT_CODE = '''\
import csv
from collections import defaultdict
from decimal import Decimal

orders, units, revenue = defaultdict(int), defaultdict(int), defaultdict(Decimal)
with open("sales.csv", newline="") as f:
    for row in csv.DictReader(f):
        region = row["region"]
        orders[region] += 1
        units[region] += int(row["units"])
        revenue[region] += int(row["units"]) * Decimal(row["unit_price"])

lines = ["# Sales per region", "", f"From sales.csv ({sum(orders.values())} sales).", "",
         "| Region | Sales | Units | Revenue |", "|---|---:|---:|---:|"]
for region in sorted(revenue, key=revenue.__getitem__, reverse=True):
    lines.append(f"| {region} | {orders[region]} | {units[region]} | {revenue[region]:,.2f} |")
lines.append(f"| **Total** | {sum(orders.values())} | {sum(units.values())} | {sum(revenue.values()):,.2f} |")
with open("report.md", "w") as f:
    f.write("\\n".join(lines) + "\\n")
print(open("report.md").read())
print("wrote report.md")
'''

CODE = {INSPECT: INSPECT_CODE, TOTALS: TOTALS_CODE, REPORT: REPORT_CODE}


def code_for(description: str) -> str:
    """The code for a task: the planned one, else the closest by what the description asks for (a model
    asked again, or for a task it reworded)."""
    if description.strip() in CODE:
        return CODE[description.strip()]
    low = description.lower()
    if "report" in low or ".md" in low:
        return REPORT_CODE
    if any(word in low for word in ("total", "revenue", "sum", "per region")):
        return TOTALS_CODE
    return INSPECT_CODE


def csv_text(seed: int = 2024) -> str:
    """The sample table: one sale a line (date, region, product, units, unit price), the same every time."""
    rng = random.Random(seed)
    start = date(2024, 1, 2)
    lines = ["date,region,product,units,unit_price"]
    for i in range(ROWS):
        day = start + timedelta(days=3 * i + rng.randrange(3))
        product = rng.choice(list(PRICES))
        lines.append(f"{day.isoformat()},{rng.choice(REGIONS)},{product},{rng.randint(1, 40)},{PRICES[product]}")
    return "\n".join(lines) + "\n"


def write_sample(folder: Path) -> Path:
    """``sales.csv`` in ``folder`` (created if missing); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DATA_FILE
    path.write_text(csv_text(), encoding="utf-8")
    return path


def in_the_way(folder: Path) -> list[str]:
    """The files of ``folder`` the demo would overwrite (a ``sales.csv`` of other content, a ``report.md``)."""
    found = []
    data = folder / DATA_FILE
    if data.exists() and (not data.is_file() or data.read_bytes() != csv_text().encode()):
        found.append(DATA_FILE)
    if (folder / REPORT_FILE).exists():
        found.append(REPORT_FILE)
    return found
