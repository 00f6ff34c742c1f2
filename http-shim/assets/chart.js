// The live chart: history from /streamer/candles, then every change from the event stream
// (/streamer/stream). `window.mtf` exposes what is drawn, for the browser test and for anyone
// curious in the console.
(function () {
  'use strict';
  const LWC = window.LightweightCharts;
  const $ = (id) => document.getElementById(id);
  const HISTORY = 500;

  const state = {
    symbol: null,
    timeframe: null,
    lastCandle: null,  // the newest candle drawn, as the API writes it
    drawn: 0,          // candles drawn
    status: null,      // the last status event
    events: 0,         // candle events applied
    lastUpdateMs: 0,   // the writer's last update (unix ms), from status and candle events
  };
  window.mtf = state;

  const chart = LWC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#0f1419' }, textColor: '#c7ccd1' },
    grid: { vertLines: { color: '#1c2430' }, horzLines: { color: '#1c2430' } },
    timeScale: { timeVisible: true, secondsVisible: false, borderColor: '#263040' },
    rightPriceScale: { borderColor: '#263040' },
  });
  const candles = chart.addSeries(LWC.CandlestickSeries, {
    upColor: '#26a69a', downColor: '#ef5350', borderVisible: false,
    wickUpColor: '#26a69a', wickDownColor: '#ef5350',
  });
  candles.priceScale().applyOptions({ scaleMargins: { top: 0.05, bottom: 0.25 } });
  const volume = chart.addSeries(LWC.HistogramSeries, {
    priceFormat: { type: 'volume' }, priceScaleId: '', lastValueVisible: false,
    priceLineVisible: false,
  });
  volume.priceScale().applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  const bar = (c) => ({ time: c.time, open: c.open, high: c.high, low: c.low, close: c.close });
  const vol = (c) => ({
    time: c.time, value: c.volume,
    color: c.close >= c.open ? 'rgba(38,166,154,0.45)' : 'rgba(239,83,80,0.45)',
  });

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-cache' });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
    return body;
  }

  function showError(text) { $('error').textContent = text || ''; }

  function setText(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    el.className = cls || '';
  }

  function showStatus(s) {
    state.status = s;
    if (s.last_update_ms) state.lastUpdateMs = s.last_update_ms;
    const live = s.liveness;
    const words = { alive: 'alive', stalled: 'stalled', stopped: 'stopped', gone: 'writer gone',
      replaced: 'segment replaced', no_segment: 'no segment' };
    setText('liveness', words[live] || live, live === 'alive' ? 'ok' : live === 'stalled' ? 'warn' : 'bad');
    setText('feed', s.feed_state || 'unknown', s.feed_state === 'live' ? 'ok' : 'warn');
    setText('source', s.feed_kind || 'unknown');
  }

  function showAge() {
    if (!state.lastUpdateMs) { setText('age', '…'); return; }
    const age = Math.max(0, (Date.now() - state.lastUpdateMs) / 1000);
    setText('age', age < 60 ? age.toFixed(1) + ' s' : Math.round(age / 60) + ' min',
      age < 5 ? 'ok' : age < 60 ? 'warn' : 'bad');
  }
  setInterval(showAge, 500);

  function apply(c) {
    candles.update(bar(c));
    volume.update(vol(c));
    if (!state.lastCandle || c.time >= state.lastCandle.time) {
      if (!state.lastCandle || c.time > state.lastCandle.time) state.drawn += 1;
      state.lastCandle = c;
    }
  }

  let source = null;

  async function load() {
    if (source) { source.close(); source = null; }
    const sym = state.symbol, tf = state.timeframe;
    if (!sym || !tf) return;
    showError('');
    try {
      const url = '/streamer/candles/' + encodeURIComponent(sym) + '/' + tf +
        '?limit=' + HISTORY + '&order=asc';
      const body = await getJSON(url);
      if (sym !== state.symbol || tf !== state.timeframe) return;
      candles.setData(body.candles.map(bar));
      volume.setData(body.candles.map(vol));
      state.drawn = body.candles.length;
      state.lastCandle = body.candles[body.candles.length - 1] || null;
      chart.timeScale().scrollToRealTime();
    } catch (e) {
      showError('candles: ' + e.message);
    }
    const streamUrl = '/streamer/stream?symbols=' + encodeURIComponent(sym) + '&timeframes=' + tf;
    source = new EventSource(streamUrl);
    source.onopen = () => setText('link', 'live', 'ok');
    source.onerror = () => {
      setText('link', 'reconnecting', 'warn');
      // The stream refuses to start while the writer is down; keep the strip truthful.
      getJSON('/streamer/status').then((s) => {
        showStatus({
          liveness: s.metrics.liveness || 'no_segment', feed_state: s.metrics.feed_state,
          feed_kind: s.feed_kind,
        });
      }).catch(() => showStatus({ liveness: 'no_segment' }));
    };
    source.addEventListener('status', (e) => showStatus(JSON.parse(e.data)));
    source.addEventListener('candle', (e) => {
      const ev = JSON.parse(e.data);
      if (ev.symbol !== state.symbol || ev.timeframe !== state.timeframe) return;
      state.events += 1;
      state.lastUpdateMs = Date.now();
      apply(ev.candle);
    });
  }

  function fill(select, values, chosen) {
    select.innerHTML = '';
    for (const v of values) {
      const o = document.createElement('option');
      o.value = v; o.textContent = v;
      select.appendChild(o);
    }
    if (values.includes(chosen)) select.value = chosen;
  }

  async function start() {
    let available;
    try {
      available = (await getJSON('/streamer/available')).symbols;
    } catch (e) {
      showError('available: ' + e.message);
      setTimeout(start, 2000);
      return;
    }
    const params = new URLSearchParams(location.search);
    const symbols = Object.keys(available);
    if (!symbols.length) { showError('the segment holds no symbols yet'); setTimeout(start, 2000); return; }
    state.symbol = symbols.includes(params.get('symbol')) ? params.get('symbol') : symbols[0];
    fill($('symbol'), symbols, state.symbol);
    const tfs = () => available[state.symbol] || [];
    state.timeframe = tfs().includes(params.get('timeframe')) ? params.get('timeframe')
      : (tfs().includes('M1') ? 'M1' : tfs()[0]);
    fill($('timeframe'), tfs(), state.timeframe);
    $('symbol').onchange = () => {
      state.symbol = $('symbol').value;
      if (!tfs().includes(state.timeframe)) state.timeframe = tfs()[0];
      fill($('timeframe'), tfs(), state.timeframe);
      load();
    };
    $('timeframe').onchange = () => { state.timeframe = $('timeframe').value; load(); };
    load();
  }
  start();
}());
