"""Ticks, symbol information and the terminal's identity from the segment, written the way
bots use MT5's API: tick frames, pip arithmetic with `symbol_info(...).point`, a polling loop
on `symbol_info_tick`, and the failures with `last_error()`. The stand-in terminal
(gateway/standin/MetaTrader5.py) stands in for MT5, which cannot run here."""

import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import layout_reader
import mtf_candles as mt5
import pytest
from conftest import ROOT, Streamer

FIELDS = ("time", "bid", "ask", "last", "volume", "time_msc", "flags", "volume_real")


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_ticks_are_mt5s_and_agree_with_the_layout_reader(live):
    assert mt5.initialize(segment=live.segment)
    # A tick exists from the moment the segment runs: all eight fields.
    tick = mt5.symbol_info_tick("BTCUSDc")
    assert tick is not None and tick._fields == FIELDS
    # Only MT5's flag bits (a synthetic tick's say what changed: bid, ask, or both).
    assert tick.time == tick.time_msc // 1000 and tick.flags & ~0x7E == 0
    ticks = mt5.copy_ticks_from("BTCUSDc", 0, 1000, mt5.COPY_TICKS_ALL)
    assert ticks.dtype.names == FIELDS and ticks.dtype == mt5.TICKS_DTYPE
    assert 0 < len(ticks) <= 1000
    assert (ticks["time_msc"][1:] >= ticks["time_msc"][:-1]).all()
    assert (ticks["time"] == ticks["time_msc"] // 1000).all()
    # The same ticks as a reader written from LAYOUT.md alone finds, once the ring is still.
    live.kill()
    ours = mt5.copy_ticks_from("BTCUSDc", 0, 4096, mt5.COPY_TICKS_ALL)
    theirs = layout_reader.Segment(live.segment).read_ticks("BTCUSDc", 4096)
    assert len(theirs) == len(ours) > 0
    for row, d in zip(ours, theirs):
        assert tuple(row.tolist()) == tuple(d[f] for f in FIELDS)
    # The filters: bid/ask changes (a quote feed's ticks that changed either), trade ticks
    # (none: a quote feed has no deals).
    info = mt5.copy_ticks_from("BTCUSDc", 0, 4096, mt5.COPY_TICKS_INFO)
    changed = ours[(ours["flags"] & (mt5.TICK_FLAG_BID | mt5.TICK_FLAG_ASK)) != 0]
    assert len(info) == len(changed) > 0
    assert (info == changed).all()
    assert len(mt5.copy_ticks_from("BTCUSDc", 0, 4096, mt5.COPY_TICKS_TRADE)) == 0
    # A window, by aware datetimes, both ends inclusive to the second.
    mid = int(ours["time"][len(ours) // 2])
    window = mt5.copy_ticks_range("BTCUSDc", datetime.fromtimestamp(mid, timezone.utc),
                                  datetime.fromtimestamp(mid, timezone.utc), mt5.COPY_TICKS_ALL)
    assert len(window) > 0 and set(window["time"].tolist()) == {mid}
    assert mt5.copy_ticks_from("BTCUSDc", 0, 10, 7) is None and mt5.last_error()[0] == -2
    assert mt5.copy_ticks_from("NOPE", 0, 10, mt5.COPY_TICKS_ALL) is None
    assert mt5.last_error()[0] == -4
    pd = pytest.importorskip("pandas", reason="pandas is optional: the DataFrame check needs it")
    frame = pd.DataFrame(ours)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    assert list(frame.columns) == list(FIELDS)


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_symbol_info_is_mt5s_named_tuple_for_pip_arithmetic(live):
    assert mt5.initialize(segment=live.segment)
    info = mt5.symbol_info("BTCUSDc")
    assert len(info) == 96 and info._fields[0] == "custom" and info._fields[-1] == "path"
    # A synthetic feed: what its prices show (DESIGN.md), the rest MT5's missing values.
    assert (info.name, info.digits, info.point) == ("BTCUSDc", 2, 0.01)
    assert info.currency_base == "BTC" and info.currency_profit == "USD"
    # Lot sizing at the class's retail values (crypto: a contract of 1), never 0 to divide by.
    assert (info.trade_contract_size, info.volume_min, info.volume_max, info.volume_step) == (1.0, 0.01, 100.0, 0.01)
    assert info.trade_tick_value == info.trade_tick_size * info.trade_contract_size > 0
    assert info.description == ""
    tick = mt5.symbol_info_tick("BTCUSDc")
    spread_points = round((tick.ask - tick.bid) / info.point)
    assert spread_points > 0
    # The moving fields come from the newest tick.
    again = mt5.symbol_info("BTCUSDc")
    assert again.time >= tick.time and again.bid > 0 and again.spread > 0
    assert set(again._asdict()) == set(mt5.SymbolInfo._fields)
    assert mt5.symbols_get(group="*XAU*")[0].digits == 2
    stored = layout_reader.Segment(live.segment).symbol_info("XAUUSDc")
    assert stored["digits"] == mt5.symbol_info("XAUUSDc").digits and stored["name"] == "XAUUSDc"
    assert mt5.symbol_info("NOPE") is None and mt5.last_error()[0] == -4
    # No terminal behind a synthetic feed: terminal_info() still answers after initialize, as
    # MT5's does, with every field missing (issue 39); there is no account to log in to.
    terminal = mt5.terminal_info()
    assert isinstance(terminal, mt5.TerminalInfo) and mt5.last_error() == (1, "Success")
    assert (terminal.connected, terminal.name, terminal.build, terminal.data_path) == (False, "", 0, "")
    assert mt5.account_info() is None and mt5.last_error()[0] == -7
    assert mt5.login(1000) is False and mt5.last_error()[0] == -7


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes)')
def test_the_moving_fields_follow_layout_mds_rule(live):
    """A reader written from LAYOUT.md alone takes bid, ask, last, time, volume and a floating
    spread from the newest tick by the page's rule, and gets what the API gives: compared while
    no tick arrives between the two reads (the feed ticks 50 times a second)."""
    assert mt5.initialize(segment=live.segment)
    ref = layout_reader.Segment(live.segment)
    compared = 0
    deadline = time.monotonic() + 60
    while compared < 5:
        assert time.monotonic() < deadline, "never two reads without a tick between them"
        for symbol in ("BTCUSDc", "XAUUSDc"):
            before = mt5.symbol_info_tick(symbol)
            by_layout = ref.symbol_info_now(symbol)
            by_api = mt5.symbol_info(symbol)
            if before is None or by_layout is None or mt5.symbol_info_tick(symbol) != before:
                continue
            assert by_api._asdict() == by_layout, symbol
            assert by_api.spread > 0 and by_api.time == before.time, "the moving fields moved"
            compared += 1


def test_a_polling_loop_on_symbol_info_tick_sees_new_ticks(live):
    assert mt5.initialize(segment=live.segment)
    first = mt5.symbol_info_tick("XAUUSDc")
    deadline = time.monotonic() + 30
    while True:
        tick = mt5.symbol_info_tick("XAUUSDc")
        if tick.time_msc > first.time_msc:
            break
        assert time.monotonic() < deadline, "no new tick in 30 s"
        mt5.wait_for_update("XAUUSDc", 1.0)
    newest = mt5.copy_ticks_from("XAUUSDc", first.time, 10_000, mt5.COPY_TICKS_ALL)
    assert tuple(newest[-1].tolist())[5] >= tick.time_msc


@pytest.fixture
def standin(tmp_path):
    """A streamer fed by the MT5 gateway over the stand-in terminal."""
    gateway = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "gateway", "mt5_gateway.py"), "--backend", "metatrader5",
         "--bind", "127.0.0.1:0"],
        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "gateway", "standin"),
                 MT5_STANDIN_SYMBOLS="EURUSD=50", MT5_STANDIN_LOGIN="5150", MT5_STANDIN_NAME="MT5 stand-in",
                 MT5_STANDIN_COMPANY="Stand-in Broker"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = gateway.stdout.readline().decode().strip()
        assert line.startswith("listening on "), line
        s = Streamer(tmp_path, ["--source", "mt5", "--gateway", line[len("listening on "):],
                                "--symbols", "EURUSD", "--timeframes", "M1,M5"], http=False)
        try:
            yield s
        finally:
            s.stop()
    finally:
        gateway.terminate()
        gateway.wait(10)


@pytest.mark.linux_only(reason='the reference reader (layout_reader.py) is written for Linux (/dev/shm, O_NOFOLLOW, OFD locks, POSIX modes); the Windows deployment with the stand-in terminal runs end to end in test_deployment.py')
def test_a_terminal_feed_brings_its_symbol_information_identity_and_account(standin):
    assert mt5.initialize(segment=standin.segment)
    info = mt5.symbol_info("EURUSD")
    # What the stand-in terminal serves (gateway/standin/MetaTrader5.py, symbol_info).
    assert (info.digits, info.point, info.trade_contract_size, info.volume_min) == (5, 0.00001, 100000.0, 0.01)
    assert info.description == "EURUSD stand-in" and info.path == "StandIn\\EURUSD"
    assert info.trade_mode == 4 and info.swap_long == -0.5 and info.select is True
    tick = mt5.symbol_info_tick("EURUSD")
    assert tick.flags == mt5.TICK_FLAG_BID | mt5.TICK_FLAG_ASK
    terminal = mt5.terminal_info()
    assert (terminal.name, terminal.company, terminal.build, terminal.connected) == \
        ("MT5 stand-in", "Stand-in Broker", 4755, True)
    assert mt5.login(5150) is True and mt5.login(5150, server="StandIn-Demo") is True
    # The account the terminal is logged in to, from the segment's record (issue 39); what a
    # price feed cannot know is MT5's missing value.
    account = mt5.account_info()
    assert isinstance(account, mt5.AccountInfo) and mt5.last_error() == (1, "Success")
    assert (account.login, account.server, account.company) == (5150, "StandIn-Demo", "Stand-in Broker")
    assert (account.balance, account.currency, account.trade_allowed) == (0.0, "", False)
    assert mt5.login(4242) is False
    code, message = mt5.last_error()
    assert code == -6 and "5150" in message and "StandIn-Demo" in message
    assert layout_reader.Segment(standin.segment).terminal()["login"] == 5150
