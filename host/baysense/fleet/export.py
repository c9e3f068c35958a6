"""`fleet export`: the site's bays, devices and progress as CSV, for spreadsheets.

The export never carries a key: it reads named columns of the registry, and the key column
is not among them. Cells that a spreadsheet would run as a formula (starting with = + - @,
a tab or a carriage return) are prefixed with a single quote, so a crafted bay id or board
reply cannot run in the user's spreadsheet.
"""

import csv
import io

from .progress import SITE, Progress

COLUMNS = ("bay", "device_id", "board", "gateway", "key_version", "revoked", "port", "step", "result", "detail", "updated")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """Return a cell's text, with a leading single quote when a spreadsheet would run it."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def export_rows(registry, community, manifest=None):
    """Return one dict per bay: its device's registry fields and its latest step."""
    progress = Progress(registry, community)
    latest = {}
    for row in progress.rows():
        # rows() is ordered by update time, so the last row per bay is its latest step.
        latest[row["bay"]] = row
    bays = [bay.id for bay in manifest.bays] if manifest is not None else [bay for bay in latest if bay != SITE]
    devices = {
        row["bay"]: row
        for row in registry.db.execute(
            "SELECT device_id, bay, board, gateway, key_version, revoked FROM devices WHERE bay IS NOT NULL"
        )
    }
    device_ids = {bay.id: bay.device_id for bay in manifest.bays} if manifest is not None else {}

    rows = []
    for bay in bays:
        device = devices.get(bay)
        if device is None and bay in device_ids:
            device = registry.db.execute(
                "SELECT device_id, bay, board, gateway, key_version, revoked FROM devices WHERE device_id = ?",
                (device_ids[bay],),
            ).fetchone()
        step = latest.get(bay)
        rows.append(
            {
                "bay": bay,
                "device_id": device["device_id"] if device else device_ids.get(bay, ""),
                "board": device["board"] if device else "",
                "gateway": device["gateway"] if device else "",
                "key_version": device["key_version"] if device else "",
                "revoked": _yes_no(device["revoked"]) if device else "",
                "port": step["port"] if step else "",
                "step": step["step"] if step else "",
                "result": step["result"] if step else "not started",
                "detail": step["detail"] if step else "",
                "updated": _iso(step["updated"]) if step else "",
            }
        )
    return rows


def to_csv(rows):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({column: neutralise(row.get(column)) for column in COLUMNS})
    return buffer.getvalue()


def _yes_no(flag):
    if flag:
        return "yes"
    return "no"


def _iso(timestamp):
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
