"""``portledger alerts evaluate``: the alert rules over a file, offline — a dry run for users.

::

    portledger alerts evaluate --events FILE.jsonl [--tariff TARIFF.json] --now ISO-TIME
                               [--settings SETTINGS.json] [--publisher NAME] [--open-only]
                               [--skip-bad]

``FILE.jsonl`` holds one JSON object per line, taken in file order as the order received:

- a canonical event in the API's JSON form (:data:`gateway.events.model.EVENT_SCHEMA`), with
  optionally ``id`` and ``publisher`` (who published it: names the source of an ETA);
- or a line of ``portledger feed parse``: ``kind`` ``event`` (the canonical event with ``kind``,
  ``id`` and ``line``), ``reading`` (a telemetry reading: reefer temperatures, AIS positions), or
  ``error`` (skipped).

An event's ``retracts`` names the line number of the event it corrects. Output: one alert per
line (:meth:`gateway.alerts.model.Alert.to_json`: ``kind``, ``subject``, ``state``, ``episode``,
times, the figures — hours of slip, peak deviation, days in yard, last free day, ``accrued`` and
``per_day`` in HK$ — and the ``sources``), open and resolved, by subject; a summary goes to
stderr. Exit 0; 1 when a line is bad (each named on stderr; ``--skip-bad`` reads on without it);
2 when the tariff or settings are bad. Without ``--tariff`` no storage alerts are evaluated.
Operators use it to check a tariff before they publish it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click

from gateway.alerts.facts import Measured, Observed, build_facts
from gateway.alerts.rules import Settings, SettingsError, as_of, evaluate
from gateway.alerts.tariff import Tariff, TariffError, describe, load_tariff
from gateway.events import model as events
from gateway.events.model import EventError, parse_time
from gateway.jsonbody import validator
from gateway.telemetry import model as telemetry

#: Most per-line messages written to stderr (the count of the rest follows).
MAX_MESSAGES = 50

#: Longest line read (bytes): a canonical event is at most a few KB.
MAX_LINE = 64 * 1024


class LineError(ValueError):
    """Why one line of the events file cannot be read."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _schema_problem(raw: dict[str, Any]) -> str | None:
    errors = sorted(validator(events.EVENT_SCHEMA).iter_errors(raw), key=lambda e: list(e.path))
    if not errors:
        return None
    first = errors[0]
    return f"/{'/'.join(str(p) for p in first.path)}: {first.message[:200]}"


def read_line(number: int, text: str, publisher: str) -> Observed | Measured | None:
    """One line of the events file as an :class:`Observed` event, a :class:`Measured` reading,
    or None (blank, or a feed-parse ``error`` line); raises :class:`LineError`."""
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise LineError(number, f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise LineError(number, "not a JSON object")
    said = raw.pop("publisher", None)
    if said is not None and not isinstance(said, str | int):
        raise LineError(number, "publisher is a name or an organisation id")
    who = str(said) if said is not None else publisher
    kind = raw.pop("kind", "event")
    if kind == "error":
        return None
    if kind == "reading":
        try:
            reading = telemetry.from_json(raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise LineError(number, f"not a reading: {exc}") from None
        return Measured(reading, order=number, publisher=who, ref=str(number))
    if kind != "event":
        raise LineError(number, f"kind is event, reading or error, not {kind!r}")
    raw.pop("id", None)
    raw.pop("line", None)
    problem = _schema_problem(raw)
    if problem is not None:
        raise LineError(number, f"not a canonical event: {problem}")
    try:
        event = events.from_json(raw)
    except EventError as exc:
        raise LineError(number, f"{exc.field or 'event'}: {exc}") from None
    return Observed(event, order=number, publisher=who, ref=str(number))


def read_events(stream: Any, publisher: str) -> tuple[list[Observed], list[Measured],
                                                       list[LineError]]:
    """Every line of a binary stream: events, readings and the lines that could not be read."""
    observed: list[Observed] = []
    measured: list[Measured] = []
    bad: list[LineError] = []
    for number, raw in enumerate(stream, start=1):
        if len(raw) > MAX_LINE:
            bad.append(LineError(number, f"longer than {MAX_LINE} bytes"))
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            item = read_line(number, text, publisher)
        except UnicodeDecodeError:
            bad.append(LineError(number, "not UTF-8"))
            continue
        except LineError as exc:
            bad.append(exc)
            continue
        if isinstance(item, Observed):
            observed.append(item)
        elif isinstance(item, Measured):
            measured.append(item)
    return observed, measured, bad


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def _load_tariff(path: Path) -> Tariff:
    try:
        return load_tariff(path.read_bytes())
    except OSError as exc:
        _fail(f"tariff {path}: cannot read it: {exc.strerror or exc}", 2)
    except TariffError as exc:
        _fail(f"tariff {path}: {exc.path or '/'}: {exc.reason} ({exc.code})", 2)


def _load_settings(path: Path | None) -> Settings:
    if path is None:
        return Settings()
    try:
        return Settings().merged(json.loads(path.read_bytes()))
    except OSError as exc:
        _fail(f"settings {path}: cannot read it: {exc.strerror or exc}", 2)
    except ValueError as exc:  # JSON and SettingsError
        where = f"{exc.path or '/'}: " if isinstance(exc, SettingsError) else ""
        _fail(f"settings {path}: {where}{exc}", 2)


def _now(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_time(value, field="--now")
    except EventError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("alerts")
def alerts() -> None:
    """Alerts: vessel delay, reefer excursion, storage meter, customs hold."""


@alerts.command("evaluate")
@click.option("--events", "events_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON Lines: canonical events and/or `portledger feed parse` output.")
@click.option("--tariff", "tariff_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Storage tariff (JSON); without it no storage alerts.")
@click.option("--now", required=True, callback=_now,
              help="The evaluation time, ISO 8601 with a zone (e.g. 2026-12-01T10:00:00+08:00).")
@click.option("--settings", "settings_file", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Rule settings overrides (JSON), e.g. {\"vessel\": {\"delay_hours\": 12}}.")
@click.option("--publisher", default="file", show_default=True,
              help="Publisher of lines that name none (the source an ETA is credited to).")
@click.option("--open-only", is_flag=True, help="Print only the alerts still open.")
@click.option("--skip-bad", is_flag=True, help="Skip unreadable lines instead of failing.")
def evaluate_command(events_file: Path, tariff_file: Path | None, now: int,
                     settings_file: Path | None, publisher: str, open_only: bool,
                     skip_bad: bool) -> None:
    """Print the alerts the events in FILE raise as of --now (JSON Lines)."""
    tariff = _load_tariff(tariff_file) if tariff_file is not None else None
    settings = _load_settings(settings_file)
    with open(events_file, "rb") as stream:
        observed, measured, bad = read_events(stream, publisher)
    for problem in bad[:MAX_MESSAGES]:
        click.echo(f"{events_file}: {'skipped ' if skip_bad else ''}{problem}", err=True)
    if len(bad) > MAX_MESSAGES:
        click.echo(f"{events_file}: ... and {len(bad) - MAX_MESSAGES} more bad lines", err=True)
    if bad and not skip_bad:
        _fail(f"{events_file}: {len(bad)} bad line(s); fix them or pass --skip-bad", 1)
    facts = build_facts(observed, measured)
    result = evaluate(facts, settings, tariff, None, now)
    shown = [a for a in result.alerts if a.is_open or not open_only]
    write(shown, sys.stdout, now)
    summary: dict[str, Any] = {"events": len(observed), "readings": len(measured),
                               "skipped": len(bad), "subjects": len(facts),
                               "alerts": len(result.alerts),
                               "open": sum(a.is_open for a in result.alerts)}
    if tariff is not None:
        summary["tariff"] = dict(describe(tariff))
    click.echo(json.dumps(summary, ensure_ascii=False), err=True)


def write(shown: list[Any], out: TextIO, now: int) -> None:
    """The alerts as JSON Lines, as read at ``now`` (:func:`as_of`: a storage meter's days and
    money as of that day, as the inbox shows them)."""
    for alert in shown:
        out.write(json.dumps(as_of(alert.to_json(), now), ensure_ascii=False,
                             separators=(",", ":")))
        out.write("\n")
    out.flush()


COMMANDS = (alerts,)
