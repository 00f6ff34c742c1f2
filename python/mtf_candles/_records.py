"""MT5's result records as the MetaTrader5 package returns them: named tuples with its
fields, in its order (MQL5 reference, "symbol_info_tick", "symbol_info", "terminal_info")."""

import collections

Tick = collections.namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
"""MT5's tick, all eight fields, as the feed delivered it."""

SymbolInfo = collections.namedtuple("SymbolInfo", (
    "custom chart_mode select visible session_deals session_buy_orders session_sell_orders "
    "volume volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode "
    "trade_mode start_time expiration_time trade_stops_level trade_freeze_level trade_exemode "
    "swap_mode swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode "
    "order_gtc_mode option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh "
    "lastlow volume_real volumehigh_real volumelow_real option_strike point trade_tick_value "
    "trade_tick_value_profit trade_tick_value_loss trade_tick_size trade_contract_size "
    "trade_accrued_interest trade_face_value trade_liquidity_rate volume_min volume_max "
    "volume_step volume_limit swap_long swap_short margin_initial margin_maintenance "
    "session_volume session_turnover session_interest session_buy_orders_volume "
    "session_sell_orders_volume session_open session_close session_aw session_price_settlement "
    "session_price_limit_min session_price_limit_max margin_hedged price_change price_volatility "
    "price_theoretical price_greeks_delta price_greeks_theta price_greeks_gamma price_greeks_vega "
    "price_greeks_rho price_greeks_omega price_sensitivity basis category currency_base "
    "currency_profit currency_margin bank description exchange formula isin name page path"))
"""MT5's SymbolInfo: the MetaTrader5 package's 96 fields in its order. From the terminal's
record where a terminal feeds the segment; for synthetic and CSV feeds, what their prices
show (name, digits, point, currencies of an FX name) and MT5's value for a missing property
elsewhere (see DESIGN.md). `bid`, `ask`, `last`, `time`, `volume`, `volume_real` and a
floating `spread` come from the newest tick."""

TerminalInfo = collections.namedtuple("TerminalInfo", (
    "community_account community_connection connected dlls_allowed trade_allowed "
    "tradeapi_disabled email_enabled ftp_enabled notifications_enabled mqid build maxbars "
    "codepage ping_last community_balance retransmission company name language path data_path "
    "commondata_path"))
"""MT5's TerminalInfo, in its order. From the segment: `name`, `company`, `build` and
`connected` as the terminal last reported them, `path` as given to `initialize`; the rest is
the terminal's own and reads as MT5's missing value (False, 0, empty)."""
