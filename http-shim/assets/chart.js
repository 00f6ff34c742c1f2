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

  // A server started with MTF_SHIM_TOKEN serves this page without it, and the data calls
  // with it: the page asks once, keeps it for this tab only (sessionStorage), and sends it in
  // the Authorization header, never in a URL (where logs and history would keep it).
  const TOKEN_KEY = 'mtf-shim-token';
  const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
  const authHeaders = () => (token() ? { Authorization: 'Bearer ' + token() } : {});

  function askForToken() {
    $('login').hidden = false;
    $('token').focus();
  }

  async function getJSON(url) {
    const r = await fetch(url, { cache: 'no-cache', headers: authHeaders() });
    if (r.status === 401) {
      askForToken();
      throw new Error('this server needs its token');
    }
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || ('HTTP ' + r.status));
    return body;
  }

  // The event stream: an EventSource without a token; with one, fetch (EventSource cannot
  // send headers), reading the same server-sent events from the body. `on` has open(),
  // error() and event(name, data); the result has close().
  function openStream(url, on) {
    if (!token()) {
      const es = new EventSource(url);
      es.onopen = on.open;
      es.onerror = on.error;
      for (const name of ['status', 'candle']) {
        es.addEventListener(name, (e) => on.event(name, e.data));
      }
      return { close: () => es.close() };
    }
    const ctrl = new AbortController();
    (async () => {
      try {
        const r = await fetch(url, { headers: authHeaders(), signal: ctrl.signal, cache: 'no-store' });
        if (r.status === 401) askForToken();
        if (!r.ok) throw new Error('HTTP ' + r.status);
        on.open();
        const reader = r.body.getReader();
        const decoder = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            let name = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event:')) name = line.slice(6).trim();
              else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            }
            if (data.length) on.event(name, data.join('\n'));
          }
        }
        throw new Error('the stream ended');
      } catch (e) {
        if (ctrl.signal.aborted) return;
        on.error();
        // EventSource reconnects by itself; this one starts the chart again.
        setTimeout(() => { if (!ctrl.signal.aborted) load(); }, 2000);
      }
    })();
    return { close: () => ctrl.abort() };
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
    source = openStream(streamUrl, {
      open: () => setText('link', 'live', 'ok'),
      error: () => {
        setText('link', 'reconnecting', 'warn');
        // The stream refuses to start while the writer is down; keep the strip truthful.
        getJSON('/streamer/status').then((s) => {
          showStatus({
            liveness: s.metrics.liveness || 'no_segment', feed_state: s.metrics.feed_state,
            feed_kind: s.feed_kind,
          });
        }).catch(() => showStatus({ liveness: 'no_segment' }));
      },
      event: (name, data) => {
        if (name === 'status') { showStatus(JSON.parse(data)); return; }
        if (name !== 'candle') return;
        const ev = JSON.parse(data);
        if (ev.symbol !== state.symbol || ev.timeframe !== state.timeframe) return;
        state.events += 1;
        state.lastUpdateMs = Date.now();
        apply(ev.candle);
      },
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

  $('login').onsubmit = (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('token').value);
    $('token').value = '';
    $('login').hidden = true;
    showError('');
  };

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
