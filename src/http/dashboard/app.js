// The sinkhole dashboard: one page over the JSON API (/api/v1, see docs/config.md "HTTP API"). No build
// step, no framework: every value from the server goes into the page as text (textContent),
// never as HTML. The API token, when the server asks for one, is kept in localStorage.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const TOKEN_KEY = 'sinkhole.token';
const LOG_ROWS = 500;

// ---- small helpers ----------------------------------------------------------------------

/** An element with attributes (`text` sets textContent, `on*` adds a listener) and children. */
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}

const fmt = new Intl.NumberFormat();
const num = (n) => fmt.format(n ?? 0);
const pct = (x) => ((x ?? 0) * 100).toFixed(1) + ' %';
const time = (ts) => { const d = new Date(ts); return isNaN(d) ? ts : d.toLocaleTimeString(); };
const dateTime = (ts) => { const d = new Date(ts); return isNaN(d) ? ts : d.toLocaleString(); };

function toast(text, { error = false, action = null } = {}) {
  const t = el('div', { class: 'toast' + (error ? ' error' : ''), role: error ? 'alert' : 'status' },
    el('span', { text }));
  if (action) t.append(el('button', { class: 'small quiet', type: 'button', text: action.label,
    onclick: () => { t.remove(); action.run(); } }));
  $('#toasts').append(t);
  setTimeout(() => t.remove(), error ? 8000 : 6000);
}

// ---- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function authHeaders() {
  const t = localStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: 'Bearer ' + t } : {};
}

/** Calls `/api/v1/<path>`; a JSON body for `body`. Throws ApiError with the server's message. */
async function api(path, { method = 'GET', body } = {}) {
  const sent = localStorage.getItem(TOKEN_KEY);
  const headers = authHeaders();
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch('api/v1/' + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    const msg = (data && data.error) || r.statusText;
    // A call sent before a token was entered does not ask again.
    if (r.status === 401 && sent === localStorage.getItem(TOKEN_KEY)) askToken(msg);
    throw new ApiError(r.status, msg);
  }
  return data;
}

function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  return p.toString();
}

// ---- token dialog -----------------------------------------------------------------------

function askToken(why) {
  const d = $('#token-dialog');
  $('#token-why').textContent = why ? why + '. ' : '';
  $('#token-why').append("Enter the server's http.token; it is kept in this browser only.");
  if (!d.open) d.showModal();
}
$('#token-open').addEventListener('click', () => askToken(''));
$('#token-cancel').addEventListener('click', () => $('#token-dialog').close());
$('#token-form').addEventListener('submit', () => {
  const v = $('#token-input').value.trim();
  if (v) localStorage.setItem(TOKEN_KEY, v); else localStorage.removeItem(TOKEN_KEY);
  $('#token-input').value = '';
  refreshView();
});

// ---- block / allow: one click, with an undo -------------------------------------------------

/** Adds `name` to the first local block (`kind` = 'block') or allow list; offers to undo. */
async function addTo(kind, name, button) {
  if (button) button.disabled = true;
  try {
    const r = await api('lists/' + kind, { method: 'POST', body: { names: [name] } });
    toast(`${kind === 'block' ? 'Blocked' : 'Allowed'} ${name} (${r.list || 'local list'})`, {
      action: { label: 'Undo', run: () => removeFrom(kind, name) },
    });
    document.dispatchEvent(new CustomEvent('listschanged'));
  } catch (e) {
    toast(`Could not ${kind} ${name}: ${e.message}`, { error: true });
    if (button) button.disabled = false;
  }
}

async function removeFrom(kind, name) {
  try {
    await api('lists/' + kind, { method: 'DELETE', body: { names: [name] } });
    toast(`Removed ${name} from the ${kind} list`);
  } catch (e) {
    toast(`Could not remove ${name}: ${e.message}`, { error: true });
  }
}

function blockButton(name, label) {
  const b = el('button', { class: 'small block', type: 'button', 'data-block': name,
    text: label || 'Block', title: `Block ${name} and every name under it` });
  b.addEventListener('click', () => addTo('block', name, b));
  return b;
}

function allowButton(name) {
  const b = el('button', { class: 'small allow', type: 'button', 'data-allow': name,
    text: 'Allow', title: `Allow ${name} and every name under it` });
  b.addEventListener('click', () => addTo('allow', name, b));
  return b;
}

// ---- blocking state and pause -----------------------------------------------------------

async function refreshStatus() {
  try {
    const s = await api('status');
    const pill = $('#blocking-state');
    if (s.paused) {
      const until = s.paused_until ? time(s.paused_until) : '';
      pill.textContent = 'Blocking paused' + (until ? ' until ' + until : '');
      pill.className = 'pill paused';
    } else {
      pill.textContent = 'Blocking on';
      pill.className = 'pill on';
    }
    $('#pause').hidden = s.paused;
    $('#pause-for').hidden = s.paused;
    $('#resume').hidden = !s.paused;
  } catch (_) { /* shown by the call that failed */ }
}

$('#pause').addEventListener('click', async () => {
  try {
    await api('pause', { method: 'POST', body: { duration: $('#pause-for').value } });
    toast('Blocking paused for ' + $('#pause-for').selectedOptions[0].textContent);
  } catch (e) { toast('Pause failed: ' + e.message, { error: true }); }
  refreshStatus();
});
$('#resume').addEventListener('click', async () => {
  try { await api('resume', { method: 'POST' }); toast('Blocking resumed'); }
  catch (e) { toast('Resume failed: ' + e.message, { error: true }); }
  refreshStatus();
});

// ---- overview ---------------------------------------------------------------------------

let chart = null;

function chartWidth() { return Math.max(280, $('#chart').clientWidth); }

function drawChart(series) {
  const n = series.queries.length;
  const xs = new Array(n), qs_ = new Array(n), bs = new Array(n), share = new Array(n);
  for (let i = 0; i < n; i++) {
    xs[i] = series.start + i * series.step;
    qs_[i] = series.queries[i];
    bs[i] = series.blocked[i];
  }
  // The blocked share over the last 30 minutes: per minute it jumps too much to read.
  let sq = 0, sb = 0;
  for (let i = 0; i < n; i++) {
    sq += qs_[i]; sb += bs[i];
    if (i >= 30) { sq -= qs_[i - 30]; sb -= bs[i - 30]; }
    share[i] = sq ? (100 * sb) / sq : null;
  }
  const data = [xs, qs_, bs, share];
  if (chart) { chart.setData(data); return; }
  const css = getComputedStyle(document.documentElement);
  const color = (v) => css.getPropertyValue(v).trim();
  chart = new uPlot({
    width: chartWidth(), height: 240,
    scales: { x: { time: true }, share: { range: [0, 100] } },
    axes: [
      { stroke: color('--muted'), grid: { stroke: color('--line') } },
      { label: 'queries / min', stroke: color('--muted'), grid: { stroke: color('--line') } },
      { scale: 'share', side: 1, label: 'blocked %', stroke: color('--muted'), grid: { show: false } },
    ],
    series: [
      {},
      { label: 'queries', stroke: color('--accent'), fill: color('--accent') + '22', width: 1.5 },
      { label: 'blocked', stroke: color('--blocked'), fill: color('--blocked') + '22', width: 1 },
      { label: 'blocked % (30 min)', scale: 'share', stroke: color('--warn'), width: 1.5,
        value: (u, v) => (v == null ? '–' : v.toFixed(1) + ' %') },
    ],
  }, data, $('#chart'));
}
window.addEventListener('resize', () => { if (chart) chart.setSize({ width: chartWidth(), height: 240 }); });

function topTable(table, rows, { link, block, allow, blocked } = {}) {
  table.replaceChildren();
  if (!rows.length) { table.append(el('tr', {}, el('td', { class: 'note', text: 'nothing yet' }))); return; }
  for (const r of rows) {
    const key = link ? el('a', { href: link(r.key), text: r.key }) : r.key || '.';
    const act = !r.key ? null : allow || (blocked && blocked.has(r.key)) ? allowButton(r.key)
      : block ? blockButton(r.key) : null;
    table.append(el('tr', {},
      el('td', { class: 'name' }, key),
      el('td', { class: 'n', text: num(r.count) }),
      el('td', { class: 'n' }, act)));
  }
}

async function refreshOverview() {
  try {
    const s = await api('stats');
    $('#c-total').textContent = num(s.queries.total);
    $('#c-blocked').textContent = num(s.queries.by_action.blocked);
    $('#c-share').textContent = pct(s.blocked_share);
    $('#c-cache').textContent = pct(s.cache.hit_ratio);
    const ups = s.upstreams.filter((u) => u.answered > 0);
    $('#c-latency').textContent = ups.length
      ? (ups.reduce((a, u) => a + u.mean_latency_ms * u.answered, 0) /
         ups.reduce((a, u) => a + u.answered, 0)).toFixed(1) + ' ms'
      : '–';
  } catch (_) { /* shown */ }
  try {
    const series = await api('stats/series');
    drawChart(series);
    $('#chart-note').textContent = '';
  } catch (e) { $('#chart-note').textContent = e.message; }
  // Blocked names first: a top name that is one of them gets "Allow" rather than "Block".
  const blocked = new Set();
  const tops = [
    ['blocked', { allow: true }], ['name', { block: true, blocked }], ['domain', { block: true }],
    ['client', { link: (c) => '#discovery?client=' + encodeURIComponent(c) }],
    ['group', {}],
  ];
  for (const [by, opts] of tops) {
    try {
      const t = await api('stats/top?' + qs({ by, limit: 10 }));
      if (by === 'blocked') for (const r of t.top) blocked.add(r.key);
      // Shown once there is more than the default policy.
      if (by === 'group') $('#groups-panel').hidden = !t.top.some((r) => r.key !== '(default)');
      topTable($('#top-' + by), t.top, opts);
      if (by === 'client') fillClients(t.top.map((r) => r.key));
    } catch (_) { /* shown */ }
  }
}

function fillClients(clients) {
  $('#disc-clients').replaceChildren(...clients.map((c) => el('option', { value: c })));
}

// ---- the query log: a page, then the live stream ------------------------------------------

let logStream = null;   // AbortController of the live stream
let logNext = null;     // cursor of the next older page

function logFilters() {
  const f = new FormData($('#log-filters'));
  return { client: f.get('client').trim(), name: f.get('name').trim(), action: f.get('action') };
}

function logRow(r) {
  const blocked = r.action === 'blocked';
  const rule = r.rule ? r.rule + (r.list ? ' (' + r.list + ')' : '') : '';
  return el('tr', { 'data-name': r.qname, 'data-action': r.action },
    el('td', { text: time(r.ts), title: r.ts }),
    el('td', {}, el('a', { href: '#discovery?client=' + encodeURIComponent(r.client), text: r.client })),
    el('td', { class: 'name', text: r.qname || '.' }),
    el('td', { text: r.qtype }),
    el('td', {}, el('span', { class: 'badge ' + r.action + (r.dnssec ? ' dnssec-' + r.dnssec : ''),
      text: r.action + (r.dnssec === 'bogus' ? ' (DNSSEC)' : ''),
      title: r.dnssec ? 'DNSSEC: ' + r.dnssec : '' })),
    el('td', { text: rule }),
    el('td', { class: 'n', text: (r.elapsed_us / 1000).toFixed(1) }),
    el('td', {}, !r.qname ? null : blocked ? allowButton(r.qname) : blockButton(r.qname)));
}

async function loadLog(older) {
  const f = logFilters();
  try {
    const page = await api('log?' + qs({ ...f, limit: 100, before: older ? logNext : undefined }));
    const body = $('#log-body');
    if (!older) body.replaceChildren();
    body.append(...page.records.map(logRow));
    logNext = page.next;
    $('#log-older').hidden = !logNext;
    $('#log-note').textContent = body.children.length ? '' : 'No records match.';
  } catch (e) { $('#log-note').textContent = e.message; }
}

async function startStream() {
  stopStream();
  if (!$('#log-live').checked) return;
  const ctl = new AbortController();
  logStream = ctl;
  let r;
  const sent = localStorage.getItem(TOKEN_KEY);
  try {
    r = await fetch('api/v1/log/stream?' + qs(logFilters()), { headers: authHeaders(), signal: ctl.signal });
  } catch (_) { return; }
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).error; } catch (_) { /* not JSON */ }
    if (r.status === 401 && sent === localStorage.getItem(TOKEN_KEY)) askToken(msg);
    $('#log-note').textContent = 'Live log: ' + msg;
    return;
  }
  liveState('open');
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = buf.slice(0, i);
        buf = buf.slice(i + 2);
        for (const line of ev.split('\n')) {
          if (!line.startsWith('data: ')) continue;
          try { addLive(JSON.parse(line.slice(6))); } catch (_) { /* a torn record */ }
        }
      }
    }
  } catch (_) { /* aborted */ }
  if (logStream === ctl) liveState('off');
  // The server ended the stream (a slow reader, a restart): start again unless replaced.
  if (logStream === ctl) setTimeout(() => { if (logStream === ctl && currentView() === 'log') startStream(); }, 2000);
}

function addLive(r) {
  const body = $('#log-body');
  body.prepend(logRow(r));
  while (body.children.length > LOG_ROWS) body.lastChild.remove();
  $('#log-note').textContent = '';
}

function stopStream() {
  if (logStream) { logStream.abort(); logStream = null; }
  liveState('off');
}

/** Shows whether the live log is connected (`data-state` on the "live" label). */
function liveState(state) {
  const label = $('#log-live').parentElement;
  label.dataset.state = state;
  label.title = state === 'open' ? 'receiving new queries' : 'not receiving new queries';
}

$('#log-filters').addEventListener('submit', (e) => { e.preventDefault(); loadLog(false).then(startStream); });
$('#log-live').addEventListener('change', startStream);
$('#log-older').addEventListener('click', () => loadLog(true));

// ---- discovery ----------------------------------------------------------------------------

function sessionList(root, sessions, empty) {
  root.replaceChildren();
  if (!sessions.length) { root.append(el('p', { class: 'note', text: empty })); return; }
  for (const s of sessions) {
    const ol = el('ol');
    for (const n of s.names) {
      ol.append(el('li', { 'data-name': n.name },
        el('span', { class: 'name', text: n.name || '.' }), ' ',
        n.new ? el('span', { class: 'badge new', text: 'new' }) : null, ' ',
        n.action === 'blocked' ? el('span', { class: 'badge blocked', text: 'blocked' })
          : n.domain ? blockButton(n.domain, 'Block ' + n.domain) : null));
    }
    root.append(el('div', { class: 'session' },
      el('strong', { text: `Session ${s.session}` }),
      el('span', { class: 'note', text: ` started ${dateTime(s.start)} · ${num(s.queries)} queries` }), ol));
  }
}

async function loadDiscovery() {
  const f = new FormData($('#disc-form'));
  const client = f.get('client').trim();
  if (!client) return;
  history.replaceState(null, '', '#discovery?client=' + encodeURIComponent(client));
  try {
    const d = await api('discovery?' + qs({ client, since: f.get('since') }));
    $('#disc-out').hidden = false;
    const sug = $('#disc-suggest');
    sug.replaceChildren();
    if (!d.suggestions.length) sug.append(el('tr', {}, el('td', { class: 'note', text: 'none' })));
    for (const s of d.suggestions) {
      sug.append(el('tr', {}, el('td', { class: 'name', text: s.domain || '.' }),
        el('td', { class: 'n', text: `${num(s.sessions)} session${s.sessions === 1 ? '' : 's'}` }),
        el('td', { class: 'n' }, s.domain ? blockButton(s.domain) : null)));
    }
    sessionList($('#disc-sessions'), d.sessions, 'No sessions in this time.');
    sessionList($('#disc-new'), d.new, 'No new names in this time.');
    const beats = $('#disc-beats');
    beats.replaceChildren();
    if (!d.heartbeats.length) beats.append(el('tr', {}, el('td', { class: 'note', text: 'none' })));
    for (const h of d.heartbeats) {
      beats.append(el('tr', {}, el('td', { class: 'name', text: h.name }),
        el('td', { class: 'n', text: `every ${h.period_s.toFixed(0)} s ±${h.jitter_s.toFixed(0)} s` }),
        el('td', { class: 'n', text: `${num(h.times)} times` }),
        el('td', { class: 'n' }, h.domain ? blockButton(h.domain, 'Block ' + h.domain) : null)));
    }
  } catch (e) { toast('Discovery: ' + e.message, { error: true }); }
}

$('#disc-form').addEventListener('submit', (e) => { e.preventDefault(); loadDiscovery(); });

// ---- lists ----------------------------------------------------------------------------------

async function refreshLists() {
  try {
    const l = await api('lists');
    const t = $('#lists-table');
    t.replaceChildren(el('tr', {}, el('th', { text: 'list' }), el('th', { text: 'entries' }), el('th', { text: 'loaded' })));
    for (const x of l.lists) {
      t.append(el('tr', {}, el('td', { class: 'name', text: x.name }), el('td', { class: 'n', text: num(x.entries) }),
        el('td', { text: dateTime(x.loaded) })));
    }
    const r = l.last_reload;
    $('#lists-reload').textContent = `${num(l.rules)} rules. ` +
      (r ? `Last reload ${dateTime(r.at)}: ${r.ok ? 'ok' : 'failed: ' + r.error}` : 'Not reloaded since start.');
  } catch (e) { $('#lists-reload').textContent = e.message; }
}

$('#reload').addEventListener('click', async (e) => {
  e.target.disabled = true;
  try { const r = await api('reload', { method: 'POST' }); toast(`Reloaded: ${num(r.rules)} rules in ${r.elapsed_ms} ms`); }
  catch (err) { toast(err.message, { error: true }); }
  e.target.disabled = false;
  refreshLists();
});

$('#check-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  const out = $('#check-out');
  try {
    const c = await api('check?' + qs({ name: f.get('name').trim(), client: f.get('client').trim() }));
    out.replaceChildren(...c.names.map((n) => {
      const d = n.decision;
      return el('p', {}, el('strong', { text: n.name }), ' ', el('span', { class: 'badge ' + n.verdict, text: n.verdict }),
        d ? ` by ${d.rule} (${d.list}${d.line ? ':' + d.line : ''})` : '', ' ',
        n.verdict === 'blocked' ? allowButton(n.name) : blockButton(n.name));
    }));
  } catch (err) { out.replaceChildren(el('p', { class: 'note', text: err.message })); }
});

// ---- views ------------------------------------------------------------------------------------

const VIEWS = ['overview', 'log', 'discovery', 'lists'];
let timer = null;

function currentView() {
  const v = location.hash.slice(1).split('?')[0];
  return VIEWS.includes(v) ? v : 'overview';
}

function refreshView() {
  refreshStatus();
  const v = currentView();
  if (v === 'overview') refreshOverview();
  if (v === 'lists') refreshLists();
}

function showView() {
  const v = currentView();
  for (const name of VIEWS) $('#view-' + name).hidden = name !== v;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.view === v);
  if (v === 'log') { loadLog(false).then(startStream); } else { stopStream(); }
  if (v === 'discovery') {
    const client = new URLSearchParams(location.hash.split('?')[1] || '').get('client');
    if (client) { $('#disc-form').client.value = client; loadDiscovery(); }
    api('stats/top?by=client&limit=50').then((t) => fillClients(t.top.map((r) => r.key))).catch(() => {});
  }
  refreshView();
  clearInterval(timer);
  timer = setInterval(refreshView, v === 'overview' ? 10000 : 15000);
}

document.addEventListener('listschanged', () => { if (currentView() === 'lists') refreshLists(); });
window.addEventListener('hashchange', showView);
showView();
